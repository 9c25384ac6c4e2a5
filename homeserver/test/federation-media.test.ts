/**
 * Federated media between real homeservers (docs/federation.md, "Media"): a globex user downloads,
 * through globex, an attachment an acme user uploaded to acme, with the client library's
 * `downloadAttachment` (which also checks the attachment's sha256). globex fetches it once over the
 * link and keeps a copy; a globex user who is not in the room gets exactly what a missing media
 * gets; every download carries safe headers whatever the file's name and type; and with acme down
 * the answer is a clear P_UNAVAILABLE with nothing cached.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ApiError, HttpApi, MemoryStore } from '@parley/protocol/client'
import { Attachment, type Attachment as AttachmentType } from '@parley/protocol/schema'
import {
  connect,
  createRoom,
  groupWith,
  http,
  register,
  roomPath,
  waitUntil,
  type TestServer,
  type TestSocket,
  type TestUser,
} from './helpers.ts'
import { startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
const GHOST_MEDIA = 'AAAAAAAAAAAAAAAAAAAAAA'
const PASSWORD = 'correct horse battery'

let fed: Federation | null = null
const sockets: TestSocket[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close()
  await fed?.close()
  fed = null
})

/** A tiny PNG-looking file: the signature, then random bytes (media is opaque to the server). */
function pngBytes(n = 3000): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(8 + n)
  out.set([137, 80, 78, 71, 13, 10, 26, 10])
  out.set(randomBytes(n), 8)
  return out
}

async function upload(
  server: TestServer,
  user: TestUser,
  room: string,
  bytes: Uint8Array<ArrayBuffer>,
  filename: string,
  type: string,
) {
  const q = new URLSearchParams({ room, filename })
  const res = await fetch(`${server.url}/api/v1/media?${q}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${user.access_token}`, 'content-type': type },
    body: bytes,
  })
  expect(res.status).toBe(201)
  return (await res.json()) as { media_id: string; size: number; server: string; sha256: string }
}

async function download(server: TestServer, token: string, path: string) {
  const res = await fetch(`${server.url}/api/v1/media/${path}`, {
    headers: { authorization: `Bearer ${token}` },
  })
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) }
}

const mediaStats = (s: TestServer) => s.services.replication.media.stats
const copies = (s: TestServer) =>
  (s.services.repos.db.prepare('SELECT COUNT(*) AS n FROM remote_media').get() as { n: number }).n

/** Files in a server's media directory that are not named by a SHA-256 (leftovers of a failed write). */
async function strayFiles(s: TestServer): Promise<string[]> {
  return (await readdir(join(s.dataDir, 'media'))).filter((f) => !/^[0-9a-f]{64}$/.test(f))
}

interface Dm {
  readonly acme: TestServer
  readonly globex: TestServer
  readonly alice: TestUser
  readonly bob: TestUser
  /** bob's client library, signed in on globex. */
  readonly bobApi: HttpApi
  readonly room: string
  readonly aliceSock: TestSocket
  readonly bobSock: TestSocket
}

/** acme's alice and globex's bob (signed in with the client library) in a DM both joined. */
async function dm(): Promise<Dm> {
  fed = await startFederation([ACME, GLOBEX])
  const acme = fed.get(ACME)
  const globex = fed.get(GLOBEX)
  const alice = await register(acme, 'alice')
  const bobApi = new HttpApi({ baseUrl: globex.url, store: new MemoryStore() })
  const session = await bobApi.register('bob', PASSWORD)
  const bob: TestUser = {
    user_id: session.user_id,
    device_id: session.device_id,
    access_token: session.access_token,
    refresh_token: session.refresh_token,
  }
  const bobSock = await connect(globex, bob)
  sockets.push(bobSock)
  const room = await createRoom(acme, alice, { kind: 'dm', invite: [bob.user_id] })
  await bobSock.next((f) => f.type === 'event' && f.room === room, 10_000)
  await bobApi.join(room)
  const aliceSock = await connect(acme, alice)
  sockets.push(aliceSock)
  return { acme, globex, alice, bob, bobApi, room, aliceSock, bobSock }
}

describe('federated media', () => {
  it('a globex user downloads an acme upload through globex: verified, fetched once, then served from the copy', async () => {
    const { acme, globex, alice, bob, bobApi, room, aliceSock, bobSock } = await dm()
    const bytes = pngBytes(700 * 1024) // more than one 512 KiB chunk
    const up = await upload(acme, alice, room, bytes, 'cat.png', 'image/png')
    expect(up).toMatchObject({ server: ACME, size: bytes.length })
    expect(up.sha256).toBe(createHash('sha256').update(bytes).digest('hex'))

    // The attachment travels in a message; bob sees it on his own server.
    const attachment: AttachmentType = {
      media_id: up.media_id,
      name: 'cat.png',
      mime: 'image/png',
      size: up.size,
      sha256: up.sha256,
    }
    aliceSock.send({
      type: 'send',
      txn_id: 'pic',
      room,
      event_type: 'm.message',
      content: { body: 'a cat', attachment },
    })
    expect((await aliceSock.next((f) => f.txn_id === 'pic', 10_000)).type).toBe('sent')
    const seen = await bobSock.next(
      (f) => f.type === 'event' && (f.event as { content: { body?: string } }).content.body === 'a cat',
      10_000,
    )
    const event = seen.event as { sender: string; content: { attachment: unknown } }
    const received = Attachment.parse(event.content.attachment)

    const first = await bobApi.downloadAttachment(received, event.sender)
    expect(Buffer.from(first.bytes).equals(Buffer.from(bytes))).toBe(true)
    expect(first).toMatchObject({ contentType: 'image/png', filename: 'cat.png' })
    expect(mediaStats(acme)).toMatchObject({ served: 1, chunksServed: 2 })
    expect(mediaStats(globex)).toMatchObject({ fetched: 1, failed: 0 })

    // The second download is globex's copy: acme sees no request at all.
    const second = await bobApi.downloadRemoteMedia(ACME, up.media_id, { sha256: up.sha256 })
    expect(Buffer.from(second.bytes).equals(Buffer.from(bytes))).toBe(true)
    expect(mediaStats(acme)).toMatchObject({ served: 1, chunksServed: 2 })
    expect(mediaStats(globex)).toMatchObject({ fetched: 1 })
    expect(copies(globex)).toBe(1)
    // Stored like local media: under its hash, durable, nothing else left in the directory.
    expect(await readdir(join(globex.dataDir, 'media'))).toEqual([up.sha256])

    // The server form works for local media too (clients can always use it); a ghost is 404.
    const own = await download(acme, alice.access_token, `${ACME}/${up.media_id}`)
    expect(own.status).toBe(200)
    expect(own.bytes.equals(Buffer.from(bytes))).toBe(true)
    const ghost = await download(globex, bob.access_token, `${ACME}/${GHOST_MEDIA}`)
    expect(ghost.status).toBe(404)
    expect(JSON.parse(ghost.bytes.toString())).toEqual({ errcode: 'P_NOT_FOUND', error: 'media not found' })

    // A hash that does not match is caught by the client library.
    const wrong = bobApi.downloadRemoteMedia(ACME, up.media_id, { sha256: '0'.repeat(64) })
    await expect(wrong).rejects.toThrow(/sha256/)
  }, 60_000)

  it('refuses a globex user who is not in the room exactly like media that does not exist, before and after the copy exists', async () => {
    const { acme, globex, alice, bob, room } = await dm()
    // carol (globex) shares another room with alice, so globex does ask acme: the room acme names is
    // what refuses her. dave (globex) shares nothing with acme: nothing is asked at all.
    const carol = await register(globex, 'carol')
    const dave = await register(globex, 'dave')
    const carolSock = await connect(globex, carol)
    sockets.push(carolSock)
    const other = await createRoom(acme, alice, { kind: 'group', invite: [carol.user_id] })
    await carolSock.next((f) => f.type === 'event' && f.room === other, 10_000)
    expect((await http(globex, 'POST', roomPath(other, '/join'), undefined, carol.access_token)).status).toBe(
      200,
    )
    const up = await upload(acme, alice, room, pngBytes(), 'secret.png', 'image/png')
    const ghostBody = JSON.parse(
      (await download(globex, carol.access_token, `${ACME}/${GHOST_MEDIA}`)).bytes.toString(),
    )

    const servedBefore = mediaStats(acme).served
    const refused = await download(globex, carol.access_token, `${ACME}/${up.media_id}`)
    expect(refused.status).toBe(404)
    expect(JSON.parse(refused.bytes.toString())).toEqual(ghostBody)
    // acme answered globex's first request (globex has bob in the room), globex stopped there and
    // kept nothing.
    expect(mediaStats(acme).served).toBe(servedBefore + 1)
    expect(copies(globex)).toBe(0)
    expect(await strayFiles(globex)).toEqual([])

    const asked = mediaStats(acme).served
    const stranger = await download(globex, dave.access_token, `${ACME}/${up.media_id}`)
    expect(stranger.status).toBe(404)
    expect(JSON.parse(stranger.bytes.toString())).toEqual(ghostBody)
    expect(mediaStats(acme).served).toBe(asked)

    // bob may: the copy is made now; carol and dave still get "not found" from the copy.
    expect((await download(globex, bob.access_token, `${ACME}/${up.media_id}`)).status).toBe(200)
    expect(copies(globex)).toBe(1)
    for (const who of [carol, dave]) {
      const again = await download(globex, who.access_token, `${ACME}/${up.media_id}`)
      expect(again.status).toBe(404)
      expect(JSON.parse(again.bytes.toString())).toEqual(ghostBody)
    }
  }, 60_000)

  it('serves hostile file names and types with safe headers, locally and across servers', async () => {
    const { acme, globex, alice, bob, room } = await dm()
    const cases = [
      { name: 'evil\r\nSet-Cookie: pwned=1.png', type: 'image/png', inline: true },
      { name: '"; filename=evil.html', type: 'text/html', inline: false },
      { name: '../../etc/passwd', type: 'application/octet-stream', inline: false },
      { name: '..\\..\\boot.ini', type: 'image/svg+xml', inline: false },
      { name: 'Ωmega ☃ 😀 (1).gif', type: 'image/gif', inline: true },
      { name: 'invoice\u202Efdp.exe', type: 'application/pdf', inline: false },
      { name: "it's 100% `fine`;*", type: 'IMAGE/WEBP', inline: true },
    ]
    const grammar =
      /^(inline|attachment); filename=[A-Za-z0-9!#$&+\-.^_`|~]{1,128}; filename\*=UTF-8''[A-Za-z0-9!#$&+\-.^_`|~%]+$/
    for (const c of cases) {
      const bytes = pngBytes(64)
      const up = await upload(acme, alice, room, bytes, c.name, c.type)
      for (const [server, token] of [
        [acme, alice.access_token],
        [globex, bob.access_token],
      ] as const) {
        const res = await download(server, token, `${ACME}/${up.media_id}`)
        expect(res.status).toBe(200)
        expect(res.bytes.equals(Buffer.from(bytes))).toBe(true)
        const disposition = res.headers.get('content-disposition')!
        expect(disposition, c.name).toMatch(grammar)
        expect(disposition.startsWith(c.inline ? 'inline;' : 'attachment;'), c.name).toBe(true)
        // The name survives, minus control characters, separators and bidi overrides.
        const star = decodeURIComponent(disposition.split("filename*=UTF-8''")[1]!)
        expect(star).toBe(c.name.replace(/[\r\n/\\\u202E]/g, '_'))
        expect(res.headers.get('content-type')).toBe(
          c.inline ? c.type.toLowerCase() : 'application/octet-stream',
        )
        expect(res.headers.get('x-content-type-options')).toBe('nosniff')
        expect(res.headers.get('cache-control')).toBe('no-store')
        expect(res.headers.get('content-security-policy')).toBe("sandbox; default-src 'none'")
        expect(res.headers.get('set-cookie')).toBeNull()
      }
    }
  }, 60_000)

  it('answers P_UNAVAILABLE when the origin is down, caches nothing, and still serves the copies it has', async () => {
    const { acme, globex, alice, bob, room } = await dm()
    const kept = pngBytes()
    const cached = await upload(acme, alice, room, kept, 'kept.png', 'image/png')
    const missed = await upload(acme, alice, room, pngBytes(), 'missed.png', 'image/png')
    expect((await download(globex, bob.access_token, `${ACME}/${cached.media_id}`)).status).toBe(200)
    await fed!.stop(ACME)
    await waitUntil(() => globex.services.links.linkTo(ACME) === null, 10_000)

    const down = await download(globex, bob.access_token, `${ACME}/${missed.media_id}`)
    expect(down.status).toBe(503)
    expect(JSON.parse(down.bytes.toString())).toEqual({
      errcode: 'P_UNAVAILABLE',
      error: `${ACME} cannot be reached right now`,
    })
    expect(globex.services.repos.media.getRemote(ACME, missed.media_id)).toBeUndefined()
    expect(copies(globex)).toBe(1)
    expect(await strayFiles(globex)).toEqual([])
    // The client library reports it as an ApiError with the code.
    const api = new HttpApi({ baseUrl: globex.url, store: new MemoryStore() })
    await api.login('bob', PASSWORD)
    const failure = await api.downloadRemoteMedia(ACME, missed.media_id).catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(ApiError)
    expect(failure).toMatchObject({ errcode: 'P_UNAVAILABLE', status: 503 })

    const copy = await download(globex, bob.access_token, `${ACME}/${cached.media_id}`)
    expect(copy.status).toBe(200)
    expect(copy.bytes.equals(Buffer.from(kept))).toBe(true)
  }, 60_000)

  it('lets a member who left keep reading media shared while they were there, and nothing newer', async () => {
    const fed2 = await startFederation([ACME])
    fed = fed2
    const acme = fed2.get(ACME)
    const [owner, leaver] = [await register(acme, 'owner'), await register(acme, 'leaver')]
    const room = await groupWith(acme, owner, [leaver])
    const before = await upload(acme, owner, room, pngBytes(), 'before.png', 'image/png')
    expect((await http(acme, 'POST', roomPath(room, '/leave'), undefined, leaver.access_token)).status).toBe(
      200,
    )
    const after = await upload(acme, owner, room, pngBytes(), 'after.png', 'image/png')
    expect((await download(acme, leaver.access_token, before.media_id)).status).toBe(200)
    expect((await download(acme, leaver.access_token, after.media_id)).status).toBe(404)

    // A write a crash interrupted is removed at the next start; stored media stays.
    await writeFile(join(acme.dataDir, 'media', 'incoming.interrupted.tmp'), 'half a file')
    await fed2.stop(ACME)
    const again = await fed2.start(ACME)
    expect(await strayFiles(again)).toEqual([])
    expect((await download(again, leaver.access_token, before.media_id)).status).toBe(200)
  }, 30_000)
})
