/**
 * Federated media against a hostile peer (docs/federation.md, "Media"): the fake peer `globex` runs
 * the real link handshake (support/fake-link.ts) and plays both roles.
 *
 * - As the **origin** of media ACME fetches for alice: it declares sizes over ACME's limit, sends more
 *   bytes than it declared, bytes that do not match the declared hash, facts that change between
 *   chunks, names and types built to break headers, a room alice is not in, or no answer at all. ACME
 *   must refuse each (counting the lies as `bad_media` faults), keep nothing, and never pass a
 *   hostile name through unescaped.
 * - As a **requester** of ACME's media: it is served only while it has (or had, after the upload) a
 *   member in the media's room, and is otherwise told "not found" exactly as for media that does not
 *   exist.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { buildHeader, eventIdOf, fromBase64Url, type JsonObject } from '@parley/protocol'
import { MEDIA_CHUNK_BYTES } from '@parley/protocol/federation'
import type { ConfigInput } from '../src/config.ts'
import {
  createRoom,
  http,
  register,
  roomPath,
  startTestServer,
  type TestServer,
  type TestUser,
} from './helpers.ts'
import { FakePeer } from './support/fake-peer.ts'
import { FakeLink, fakePeersFetcher, originSig, type LinkFrame } from './support/fake-link.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
const MALLORY = `@mallory:${GLOBEX}`
const GHOST_MEDIA = 'AAAAAAAAAAAAAAAAAAAAAA'

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

interface Setup {
  readonly server: TestServer
  readonly link: FakeLink
  readonly globex: FakePeer
  readonly alice: TestUser
  /** alice's group room on ACME, globex's mallory invited. */
  readonly room: string
}

/** ACME with alice's room (mallory invited), and globex's link to it. */
async function setup(overrides: Partial<ConfigInput> = {}): Promise<Setup> {
  const globex = new FakePeer(GLOBEX, () => Date.now())
  const server = await startTestServer(
    { serverName: ACME, ...overrides, federation: { allow: [GLOBEX], ...overrides.federation } },
    { keyFetcher: fakePeersFetcher(globex) },
  )
  cleanups.push(() => server.stop())
  const link = await FakeLink.connect(server, { serverName: GLOBEX, signer: globex.current })
  cleanups.push(() => link.close())
  await link.next((f) => f.type === 'cursors')
  const alice = await register(server, 'alice')
  const room = await createRoom(server, alice, { kind: 'group', name: 'media', invite: [MALLORY] })
  return { server, link, globex, alice, room }
}

/** mallory's join (or leave), as globex submits it; resolves once ACME sequenced it. */
async function membership(s: Setup, membership: 'join' | 'leave'): Promise<void> {
  const content: JsonObject = { membership }
  const header = buildHeader({
    room: s.room,
    type: 'm.member',
    stateKey: MALLORY,
    sender: MALLORY,
    origin: GLOBEX,
    originTs: Date.now(),
    content,
  })
  const eventId = eventIdOf(header)
  s.link.send({ type: 'submit', header, content, origin_sig: originSig(s.globex.current, header) })
  const ack = await s.link.next((f) => f.type === 'submit_ack' && f.event_id === eventId)
  expect(ack).toMatchObject({ seq: expect.any(Number) })
}

async function upload(s: Setup, bytes: Uint8Array<ArrayBuffer>) {
  const q = new URLSearchParams({ room: s.room, filename: 'file.bin' })
  const res = await fetch(`${s.server.url}/api/v1/media?${q}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.alice.access_token}`, 'content-type': 'image/png' },
    body: bytes,
  })
  expect(res.status).toBe(201)
  return (await res.json()) as { media_id: string }
}

async function download(s: Setup, path: string) {
  const res = await fetch(`${s.server.url}/api/v1/media/${path}`, {
    headers: { authorization: `Bearer ${s.alice.access_token}` },
  })
  const bytes = Buffer.from(await res.arrayBuffer())
  return { status: res.status, headers: res.headers, bytes }
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url')
const badMedia = (s: TestServer) => s.services.replication.stats.faults.get('bad_media') ?? 0
const copies = (s: TestServer) =>
  (s.services.repos.db.prepare('SELECT COUNT(*) AS n FROM remote_media').get() as { n: number }).n
async function strayFiles(s: TestServer): Promise<string[]> {
  return (await readdir(join(s.dataDir, 'media'))).filter((f) => !/^[0-9a-f]{64}$/.test(f))
}

// ---- globex as the origin ----

/** The facts of a media of globex (a media_part without req_id, offset and data). */
function factsOf(bytes: Uint8Array, room: string, extra: Record<string, unknown> = {}) {
  return {
    media_id: 'GlobexMediaAAAAAAAAAAA',
    room,
    size: bytes.length,
    sha256: sha256(bytes),
    content_type: 'image/png',
    filename: 'from-globex.png',
    ...extra,
  }
}

/**
 * alice asks ACME for globex's media while `answer` plays globex for the `expected` requests ACME
 * should make: it is given each `media_get` and returns the frame to send back (null: stay silent).
 * Resolves with ACME's answer to alice, once ACME asked exactly that many times.
 */
async function fetchFromGlobex(
  s: Setup,
  expected: number,
  answer: (get: LinkFrame) => object | null,
  mediaId = 'GlobexMediaAAAAAAAAAAA',
) {
  const response = download(s, `${GLOBEX}/${mediaId}`)
  for (let i = 0; i < expected; i++) {
    const get = await s.link.next((f) => f.type === 'media_get')
    expect(get).toMatchObject({ media_id: mediaId })
    const reply = answer(get)
    // Plain JSON.stringify: canonical JSON refuses lone surrogates, and a hostile peer need not care.
    if (reply !== null) s.link.sendText(JSON.stringify(reply))
  }
  const res = await response
  // Nothing more was asked (frames of a link arrive in order, and the answer came after them).
  expect(s.link.frames.filter((f) => f.type === 'media_get')).toEqual([])
  return res
}

const part = (get: LinkFrame, facts: object, offset: number, data: Uint8Array) => ({
  type: 'media_part',
  req_id: get.req_id,
  ...facts,
  offset,
  data: b64(data),
})

describe('ACME fetching media from a hostile origin', () => {
  async function withMallory(overrides: Partial<ConfigInput> = {}) {
    const s = await setup(overrides)
    await membership(s, 'join')
    return s
  }

  it('takes a well-behaved answer in chunks, verifies it and keeps one copy (the control)', async () => {
    const s = await withMallory()
    const bytes = new Uint8Array(randomBytes(MEDIA_CHUNK_BYTES + 1000))
    const facts = factsOf(bytes, s.room)
    const offsets: unknown[] = []
    const res = await fetchFromGlobex(s, 2, (get) => {
      const offset = get.offset as number
      offsets.push(offset)
      return part(get, facts, offset, bytes.subarray(offset, offset + MEDIA_CHUNK_BYTES))
    })
    expect(res.status).toBe(200)
    expect(res.bytes.equals(Buffer.from(bytes))).toBe(true)
    expect(offsets).toEqual([0, MEDIA_CHUNK_BYTES])
    expect(copies(s.server)).toBe(1)
    // Served from the copy now: globex is not asked again.
    expect((await download(s, `${GLOBEX}/${facts.media_id}`)).status).toBe(200)
    expect(s.link.frames.filter((f) => f.type === 'media_get')).toEqual([])
  })

  it('shares one fetch between concurrent downloads of one media, and bounds fetches per peer', async () => {
    const s = await withMallory({ federation: { mediaFetchesPerPeer: 1 } })
    const bytes = new Uint8Array(randomBytes(100))
    const facts = factsOf(bytes, s.room)
    // Two downloads of one media: one request to globex, one copy, both answered.
    const both = [download(s, `${GLOBEX}/${facts.media_id}`), download(s, `${GLOBEX}/${facts.media_id}`)]
    const get = await s.link.next((f) => f.type === 'media_get')
    s.link.send(part(get, facts, 0, bytes))
    for (const res of await Promise.all(both)) expect(res.bytes.equals(Buffer.from(bytes))).toBe(true)
    expect(s.link.frames.filter((f) => f.type === 'media_get')).toEqual([])

    // Ten different media at once with one fetch allowed: one runs, eight wait, the tenth is refused.
    const ids = Array.from({ length: 10 }, (_, i) => `Media${String(i).padStart(2, '0')}AAAAAAAAAAAAAAA`)
    const answers = ids.map((id) => download(s, `${GLOBEX}/${id}`))
    const refused = await Promise.race(answers.map((a, i) => a.then((res) => ({ res, i }))))
    expect(refused.res.status).toBe(429)
    expect(JSON.parse(refused.res.bytes.toString())).toMatchObject({ errcode: 'P_LIMIT_EXCEEDED' })
    expect(refused.res.headers.get('retry-after')).toBe('1')
    for (let n = 0; n < 9; n++) {
      const next = await s.link.next((f) => f.type === 'media_get')
      // Never a second request while one is unanswered.
      expect(s.link.frames.filter((f) => f.type === 'media_get')).toEqual([])
      s.link.send({
        type: 'media_error',
        req_id: next.req_id,
        errcode: 'P_NOT_FOUND',
        error: 'media not found',
      })
    }
    const statuses = (await Promise.all(answers)).map((r) => r.status)
    expect(statuses.filter((st) => st === 404)).toHaveLength(9)
    expect(s.link.frames.filter((f) => f.type === 'media_get')).toEqual([])
  })

  it('refuses media over its own limit from the declared size, before taking a byte more', async () => {
    const s = await withMallory({ limits: { maxMediaBytes: 64 * 1024 } })
    const bytes = new Uint8Array(randomBytes(1000))
    const res = await fetchFromGlobex(s, 1, (get) =>
      part(get, factsOf(bytes, s.room, { size: 64 * 1024 + 1 }), 0, bytes),
    )
    expect(res.status).toBe(413)
    expect(JSON.parse(res.bytes.toString())).toMatchObject({ errcode: 'P_TOO_LARGE' })
    expect(copies(s.server)).toBe(0)
    expect(await strayFiles(s.server)).toEqual([])
  })

  it('refuses a peer that lies: more bytes than declared, a wrong hash, facts that change between chunks, a drip', async () => {
    const s = await withMallory()
    const bytes = new Uint8Array(randomBytes(MEDIA_CHUNK_BYTES + 10))
    const lies: Array<[number, (get: LinkFrame) => object]> = [
      // Declares 10 bytes, sends 20.
      [1, (get) => part(get, factsOf(bytes.subarray(0, 10), s.room), 0, bytes.subarray(0, 20))],
      // The bytes do not hash to the declared sha256.
      [
        1,
        (get) =>
          part(
            get,
            factsOf(bytes.subarray(0, 20), s.room, { sha256: sha256(bytes) }),
            0,
            bytes.subarray(0, 20),
          ),
      ],
      // The second chunk says the media is something else.
      [
        2,
        (get) =>
          get.offset === 0
            ? part(get, factsOf(bytes, s.room), 0, bytes.subarray(0, MEDIA_CHUNK_BYTES))
            : part(
                get,
                factsOf(bytes, s.room, { content_type: 'text/html' }),
                MEDIA_CHUNK_BYTES,
                bytes.subarray(MEDIA_CHUNK_BYTES),
              ),
      ],
      // An answer for another offset than asked.
      [1, (get) => part(get, factsOf(bytes, s.room), 5, bytes.subarray(5, 100))],
      // A drip: one byte where a full chunk is due (it would hold our fetch slot for hours).
      [1, (get) => part(get, factsOf(bytes, s.room), 0, bytes.subarray(0, 1))],
    ]
    for (const [i, [asks, lie]] of lies.entries()) {
      const before = badMedia(s.server)
      const res = await fetchFromGlobex(s, asks, lie)
      expect({ i, status: res.status }).toEqual({ i, status: 503 })
      expect(JSON.parse(res.bytes.toString())).toEqual({
        errcode: 'P_UNAVAILABLE',
        error: `${GLOBEX} sent media that fails verification`,
      })
      expect(badMedia(s.server)).toBe(before + 1)
    }
    expect(copies(s.server)).toBe(0)
    expect(await strayFiles(s.server)).toEqual([])
  })

  it('gives up on a peer that does not answer, with P_UNAVAILABLE', async () => {
    const s = await withMallory({ federation: { mediaTimeoutMs: 300 } })
    const res = await fetchFromGlobex(s, 1, () => null)
    expect(res.status).toBe(503)
    expect(JSON.parse(res.bytes.toString())).toEqual({
      errcode: 'P_UNAVAILABLE',
      error: `${GLOBEX} did not answer in time`,
    })
    expect(copies(s.server)).toBe(0)
  })

  it('stores a hostile name and type from the peer only in a form that cannot break headers', async () => {
    const s = await withMallory()
    const bytes = new Uint8Array(randomBytes(100))
    const name = 'a\ud800b\r\nSet-Cookie: x=1; "q"\\..\u202Egnp.exe'
    const res = await fetchFromGlobex(s, 1, (get) =>
      part(
        get,
        factsOf(bytes, s.room, { filename: name, content_type: 'text/html; charset=utf-8' }),
        0,
        bytes,
      ),
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/octet-stream')
    const disposition = res.headers.get('content-disposition')!
    expect(disposition).toMatch(
      /^attachment; filename=[A-Za-z0-9!#$&+\-.^_`|~]+; filename\*=UTF-8''[\x21-\x7e]+$/,
    )
    expect(decodeURIComponent(disposition.split("filename*=UTF-8''")[1]!)).toBe(
      'a\ufffdb__Set-Cookie: x=1; "q"_.._gnp.exe',
    )
    expect(res.headers.get('set-cookie')).toBeNull()
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
  })

  it('keeps nothing of media whose room alice is not in, and answers as for a missing one', async () => {
    const s = await withMallory()
    const elsewhere = await createRoom(s.server, await register(s.server, 'bystander'), { kind: 'group' })
    const bytes = new Uint8Array(randomBytes(MEDIA_CHUNK_BYTES + 1))
    // One request only: ACME stops at the facts.
    const res = await fetchFromGlobex(s, 1, (get) =>
      part(get, factsOf(bytes, elsewhere), 0, bytes.subarray(0, MEDIA_CHUNK_BYTES)),
    )
    expect(res.status).toBe(404)
    const ghost = await fetchFromGlobex(s, 1, (get) => ({
      type: 'media_error',
      req_id: get.req_id,
      errcode: 'P_NOT_FOUND',
      error: 'media not found',
    }))
    expect(ghost.status).toBe(404)
    expect(res.bytes.toString()).toBe(ghost.bytes.toString())
    expect(copies(s.server)).toBe(0)
    expect(await strayFiles(s.server)).toEqual([])
  })
})

// ---- globex as a requester of ACME's media ----

describe('ACME serving its media to another server', () => {
  /** globex asks for `mediaId` at `offset`; resolves with ACME's answer. */
  async function ask(s: Setup, mediaId: string, offset = 0): Promise<LinkFrame> {
    const reqId = b64(randomBytes(16))
    s.link.send({ type: 'media_get', req_id: reqId, media_id: mediaId, offset })
    return s.link.next((f) => (f.type === 'media_part' || f.type === 'media_error') && f.req_id === reqId)
  }
  const notFound = (f: LinkFrame) => ({ errcode: f.errcode, error: f.error })

  it('serves a server only while it has, or had after the upload, a member in the room; else "not found" as for no media', async () => {
    const s = await setup()
    const bytes = new Uint8Array(randomBytes(5000))
    const early = await upload(s, bytes)
    const ghost = notFound(await ask(s, GHOST_MEDIA))
    expect(ghost).toEqual({ errcode: 'P_NOT_FOUND', error: 'media not found' })

    // mallory is only invited: globex has no member in the room yet.
    const invited = await ask(s, early.media_id)
    expect(invited.type).toBe('media_error')
    expect(notFound(invited)).toEqual(ghost)

    await membership(s, 'join')
    const served = await ask(s, early.media_id)
    expect(served).toMatchObject({
      type: 'media_part',
      media_id: early.media_id,
      room: s.room,
      size: bytes.length,
      sha256: sha256(bytes),
      offset: 0,
    })
    expect(Buffer.from(fromBase64Url(served.data as string)!).equals(Buffer.from(bytes))).toBe(true)
    expect(notFound(await ask(s, early.media_id, bytes.length + 1))).toEqual({
      errcode: 'P_BAD_REQUEST',
      error: 'offset past the end',
    })

    // mallory is kicked: what was shared while globex had a member stays readable, nothing newer.
    const kick = await http(
      s.server,
      'POST',
      roomPath(s.room, '/kick'),
      { user_id: MALLORY },
      s.alice.access_token,
    )
    expect(kick.status).toBe(200)
    const late = await upload(s, new Uint8Array(randomBytes(10)))
    expect((await ask(s, early.media_id)).type).toBe('media_part')
    expect(notFound(await ask(s, late.media_id))).toEqual(ghost)
    expect(s.server.services.replication.media.stats).toMatchObject({ served: 2, refused: 4 })
  })

  it('never serves a copy of a third server’s media onward', async () => {
    const s = await setup()
    await membership(s, 'join')
    // A copy ACME holds of some other server's media, bound to the very room globex is in.
    s.server.services.repos.media.insertRemote({
      origin: 'initech.localhost',
      media_id: 'InitechMediaAAAAAAAAAA',
      room_id: s.room,
      sha256: '0'.repeat(64),
      size: 1,
      content_type: 'image/png',
      filename: 'x.png',
      stream_pos: 0,
      fetched_ts: 0,
    })
    expect(notFound(await ask(s, 'InitechMediaAAAAAAAAAA'))).toEqual({
      errcode: 'P_NOT_FOUND',
      error: 'media not found',
    })
  })
})
