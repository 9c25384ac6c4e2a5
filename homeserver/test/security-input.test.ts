/**
 * Hostile input (TESTPLAN.md IN-1 and IN-3) against one real homeserver: property-generated hostile
 * WebSocket frames, and SQL-injection payloads and arbitrary Unicode through bodies, names and ids.
 * The ban on template strings and concatenation in `.prepare(` is enforced by eslint.config.js.
 */
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isEventId, isLocalpart, parseRoomId } from '@parley/protocol'
import { SENDABLE_TYPES } from '@parley/protocol/schema'
import {
  barrier,
  connect,
  groupWith,
  http,
  login,
  register,
  roomPath,
  startTestServer,
  type Frame,
  type TestServer,
  type TestSocket,
  type TestUser,
} from './helpers.ts'

let hs: TestServer
const sockets: TestSocket[] = []
let schemaHash: string

/** A hash of the database schema: any DROP, ALTER or CREATE changes it. */
function hashSchema(): string {
  const rows = hs.services.repos.db
    .prepare('SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name')
    .all()
  return createHash('sha256').update(JSON.stringify(rows)).digest('hex')
}

beforeAll(async () => {
  hs = await startTestServer({ limits: { messagesPerSecond: 100_000, messageBurst: 100_000 } })
  schemaHash = hashSchema()
})
afterAll(async () => {
  for (const s of sockets.splice(0)) s.close()
  await hs.stop()
})

async function live(user: TestUser): Promise<TestSocket> {
  const sock = await connect(hs, user)
  sockets.push(sock)
  return sock
}

let txns = 0
function sendEvent(sock: TestSocket, room: string, eventType: string, content: unknown) {
  const txn = `in${++txns}`
  sock.send({ type: 'send', txn_id: txn, room, event_type: eventType, content })
  return sock.next((f) => (f.type === 'sent' || f.type === 'error') && f.txn_id === txn)
}

type Ev = { event_id: string; content: { body?: string } }

// ---- IN-1 generators: every frame below is invalid by construction ----

const j = JSON.stringify
const KNOWN_TYPES = new Set(['auth', 'sync', 'send', 'typing', 'receipt', 'presence', 'ping'])
const SENDABLE: ReadonlySet<string> = new Set(SENDABLE_TYPES)
const TXN = /^[A-Za-z0-9._~-]{1,64}$/
/** Integers JSON.parse turns into unsafe numbers or infinities. */
const HUGE_INTS = [
  '9007199254740993',
  '-9007199254740993',
  '18446744073709551616',
  '1e400',
  '1' + '0'.repeat(400),
]
const deep = (depth: number, kind: 'array' | 'object') =>
  kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '0' + '}'.repeat(depth)
const deepArb = fc
  .tuple(
    fc.integer({ min: 17, max: 10_000 }),
    fc.constantFrom('array', 'object') as fc.Arbitrary<'array' | 'object'>,
  )
  .map(([d, k]) => deep(d, k))
const bigString = fc.integer({ min: 65, max: 90_000 }).map((n) => j('x'.repeat(n)))
const loneSurrogate = fc.constantFrom('"\\ud800"', '"a\\udc00b"', '"\\udbff\\udbff"', '"x\\ud83d"')
const nul = fc.constantFrom('"\\u0000"', '"a\\u0000b"')
/** JSON text of any value except a boolean. */
const notBoolean = fc.oneof(
  fc.constantFrom('"true"', '1', '0', 'null', '[]', '{}', ...HUGE_INTS),
  fc.string({ maxLength: 20 }).map(j),
)
/** JSON text of anything but a safe non-negative integer. */
const notCursor = fc.oneof(
  fc.constantFrom('-1', '1.5', '"5"', 'null', 'true', '[]', '{}', ...HUGE_INTS),
  loneSurrogate,
)
const badRoom = fc.oneof(
  fc
    .string({ unit: 'binary', maxLength: 60 })
    .filter((s) => parseRoomId(s) === null)
    .map(j),
  fc.constantFrom("'; DROP TABLE rooms; --", '!short:acme.localhost', `!${'A'.repeat(22)}:`).map(j),
  loneSurrogate,
  nul,
  bigString,
  fc.constantFrom('1', 'null', '[]', '{}'),
)
const badEventId = fc.oneof(
  fc
    .string({ unit: 'binary', maxLength: 60 })
    .filter((s) => !isEventId(s))
    .map(j),
  loneSurrogate,
  nul,
  fc.constantFrom('1', 'null', ...HUGE_INTS),
)
const badTxn = fc.oneof(
  fc
    .string({ unit: 'binary', maxLength: 80 })
    .filter((s) => !TXN.test(s))
    .map(j),
  loneSurrogate,
  nul,
  fc.constantFrom('1', 'null', '{}'),
)
const hostileKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'sender', 'role', 'admin')
const hostileValue = fc.constantFrom(
  '{"polluted":"yes"}',
  '{"prototype":{"polluted":"yes"}}',
  '"admin"',
  'true',
)

/** Invalid content for an `m.message` send: wrong types, too long, lone surrogates, extra keys, deep. */
function badContent(room: string): fc.Arbitrary<string> {
  let n = 0
  const send = (content: string) =>
    `{"type":"send","txn_id":"h${++n}","room":${j(room)},"event_type":"m.message","content":${content}}`
  return fc
    .oneof(
      fc.constantFrom('1', 'null', '[]', '{}', 'true', ...HUGE_INTS).map((b) => `{"body":${b}}`),
      fc.integer({ min: 32_001, max: 40_000 }).map((n) => `{"body":${j('x'.repeat(n))}}`),
      loneSurrogate.map((b) => `{"body":${b}}`),
      fc.constantFrom(...HUGE_INTS).map((n) => `{"body":"x","format":${n}}`),
      fc
        .tuple(fc.constantFrom('sender', 'role', 'constructor', 'prototype', 'admin'), hostileValue)
        .map(([k, v]) => `{"body":"x",${j(k)}:${v}}`),
      deepArb.map((d) => `{"body":"x","reply_to":${d}}`),
      fc.constantFrom('[]', '[1]', '"x"', 'null', '1'),
    )
    .map(send)
}

type Hostile = string | { binary: Uint8Array }

function hostileFrame(room: string): fc.Arbitrary<Hostile> {
  return fc.oneof(
    // Not JSON: nothing ending in `{` parses; raw control characters inside strings do not either.
    fc.string({ unit: 'binary', maxLength: 200 }).map((s) => s + '{'),
    fc.constantFrom('{"type":"ping","id":"a\u0000b"}', '\u0000', '{"type":"ping"}\u0000', ''),
    // JSON, but not an object.
    fc
      .jsonValue({ maxDepth: 3 })
      .filter((v) => v === null || typeof v !== 'object' || Array.isArray(v))
      .map((v) => j(v)),
    // Unknown type, arbitrary fields.
    fc
      .tuple(
        fc.string({ unit: 'binary', maxLength: 20 }).filter((t) => !KNOWN_TYPES.has(t)),
        fc.jsonValue({ maxDepth: 3 }),
      )
      .map(([type, extra]) => j({ type, extra })),
    nul.map((t) => `{"type":${t}}`),
    // Known frames with one field of the wrong type or shape.
    notCursor.map((v) => `{"type":"sync","since":${v}}`),
    fc
      .constantFrom('0', '1001', '1.5', '"10"', 'null', ...HUGE_INTS)
      .map((v) => `{"type":"sync","since":0,"limit":${v}}`),
    notBoolean.map((v) => `{"type":"typing","room":${j(room)},"typing":${v}}`),
    badRoom.map((r) => `{"type":"typing","room":${r},"typing":true}`),
    badRoom.map((r) => `{"type":"receipt","room":${r},"event_id":"$${'A'.repeat(43)}"}`),
    badEventId.map((e) => `{"type":"receipt","room":${j(room)},"event_id":${e}}`),
    fc
      .string({ maxLength: 20 })
      .filter((s) => !['online', 'away', 'offline'].includes(s))
      .map((s) => `{"type":"presence","status":${j(s)}}`),
    fc
      .oneof(bigString, fc.constantFrom('1', 'null', '[]', '{}', ...HUGE_INTS))
      .map((id) => `{"type":"ping","id":${id}}`),
    deepArb.map((d) => `{"type":"ping","id":${d}}`),
    // Already authenticated: any auth frame is refused.
    fc
      .oneof(fc.string({ maxLength: 100 }).map(j), bigString, loneSurrogate)
      .map((t) => `{"type":"auth","token":${t}}`),
    // Sends: bad txn id, room or type, or bad content.
    badTxn.map(
      (t) =>
        `{"type":"send","txn_id":${t},"room":${j(room)},"event_type":"m.message","content":{"body":"x"}}`,
    ),
    badRoom.map(
      (r) => `{"type":"send","txn_id":"t1","room":${r},"event_type":"m.message","content":{"body":"x"}}`,
    ),
    fc
      .string({ unit: 'binary', minLength: 1, maxLength: 128 })
      .filter((t) => !SENDABLE.has(t))
      .map(
        (t) => `{"type":"send","txn_id":"t2","room":${j(room)},"event_type":${j(t)},"content":{"body":"x"}}`,
      ),
    badContent(room),
    // Prototype-pollution keys on the frame itself.
    fc
      .tuple(fc.constantFrom('ping', 'sync', 'typing'), hostileKey, hostileValue)
      .map(
        ([type, k, v]) =>
          `{"type":"${type}",${type === 'sync' ? '"since":0,' : type === 'typing' ? `"room":${j(room)},"typing":true,` : ''}${j(k)}:${v}}`,
      ),
    // Deep nesting at the root, 10k levels at most (20-60 KB, under the frame limit).
    deepArb,
    // Binary frames: the protocol is JSON text only.
    fc.uint8Array({ maxLength: 64 }).map((binary) => ({ binary })),
  )
}

function sendHostile(sock: TestSocket, f: Hostile): void {
  if (typeof f === 'string') sock.ws.send(f)
  else sock.ws.send(f.binary, { binary: true })
}

/**
 * Sends `frames` and collects the replies: everything up to a ping/pong barrier, then (a send's content
 * errors are delivered through its promise, so they may trail the pong) until there is one error per
 * frame, then a second barrier so that any extra reply would be seen too.
 */
async function repliesTo(sock: TestSocket, frames: Hostile[]): Promise<Frame[]> {
  sock.frames.length = 0
  for (const f of frames) sendHostile(sock, f)
  await barrier(sock)
  const replies = sock.frames.splice(0)
  while (replies.filter((r) => r.type === 'error').length < frames.length) {
    replies.push(await sock.type('error', 2000))
  }
  await barrier(sock)
  replies.push(...sock.frames.splice(0))
  return replies
}

/** Diagnosis of a failed chunk: replays it one frame at a time and names the frames that misbehave. */
async function culprits(sock: TestSocket, frames: Hostile[]): Promise<string> {
  const bad: unknown[] = []
  for (const f of frames) {
    const replies = await repliesTo(sock, [f]).catch((err: unknown) => [String(err)])
    if (replies.length !== 1 || (replies[0] as Frame).type !== 'error') {
      bad.push({ frame: typeof f === 'string' ? f.slice(0, 300) : 'binary', replies })
    }
  }
  return j(bad).slice(0, 4000)
}

describe('IN-1 hostile JSON over an authenticated socket', () => {
  it('answers each of ~2000 hostile frames with exactly one typed error, stays up, keeps Object.prototype clean, and serves a neighbour afterwards', async () => {
    const prototypeBefore = Object.getOwnPropertyNames(Object.prototype).sort()
    const attacker = await register(hs)
    const [neighbour, friend] = await Promise.all([register(hs), register(hs)])
    const attackRoom = await groupWith(hs, attacker, [])
    const neighbourRoom = await groupWith(hs, neighbour, [friend])
    // Frames are spread over 4 sockets so no socket reaches the gateway's per-connection frame limit.
    const socks: TestSocket[] = []
    for (let i = 0; i < 4; i++) socks.push(await live(attacker))
    for (const s of socks) await barrier(s)

    const CHUNK = 50
    const RUNS = 40
    let run = 0
    let total = 0
    const codes = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(
        fc.array(hostileFrame(attackRoom), { minLength: CHUNK, maxLength: CHUNK }),
        async (frames) => {
          const sock = socks[run++ % socks.length]!
          const replies = await repliesTo(sock, frames).catch(() => null)
          // Exactly one reply per frame, each a typed error.
          if (replies?.length !== frames.length || replies.some((r) => r.type !== 'error')) {
            throw new Error(`frames without exactly one error: ${await culprits(sock, frames)}`)
          }
          for (const r of replies) {
            const code = r.errcode as string
            codes.set(code, (codes.get(code) ?? 0) + 1)
            if (!['P_BAD_JSON', 'P_BAD_REQUEST', 'P_TOO_LARGE'].includes(code)) {
              throw new Error(`unexpected error reply ${j(r)}`)
            }
          }
          total += frames.length
        },
      ),
      { numRuns: RUNS, endOnFailure: true },
    )
    expect(total).toBe(CHUNK * RUNS)
    expect(codes.get('P_BAD_JSON')).toBeGreaterThan(0)
    expect(codes.get('P_BAD_REQUEST')).toBeGreaterThan(0)
    for (const s of socks) expect(s.closeInfo).toBeNull()

    // Nothing leaked into Object.prototype, in this process, which is also the server's.
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeBefore)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // The server is up and a neighbour's send round-trips.
    expect((await http(hs, 'GET', '/api/v1/health')).status).toBe(200)
    const n = await live(neighbour)
    const f = await live(friend)
    const sent = await sendEvent(n, neighbourRoom, 'm.message', { body: 'still fine?' })
    expect(sent.type).toBe('sent')
    await f.next((fr) => fr.type === 'event' && (fr.event as Ev).event_id === sent.event_id)
  })

  it('drops `__proto__` inside content without polluting anything', async () => {
    const user = await register(hs)
    const room = await groupWith(hs, user, [])
    const sock = await live(user)
    sock.ws.send(
      `{"type":"send","txn_id":"proto1","room":${j(room)},"event_type":"m.message","content":{"body":"x","__proto__":{"polluted":"yes","body":"evil"}}}`,
    )
    const res = await sock.next((fr) => fr.txn_id === 'proto1')
    if (res.type === 'sent') {
      const hist = await http<{ events: Array<Ev & { content: Record<string, unknown> }> }>(
        hs,
        'GET',
        roomPath(room, '/messages'),
        undefined,
        user.access_token,
      )
      expect(hist.body.events.find((e) => e.event_id === res.event_id)!.content).toEqual({ body: 'x' })
    } else expect(res.errcode).toBe('P_BAD_REQUEST')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.keys(Object.prototype)).toEqual([])
  })

  it('closes a socket that sends invalid UTF-8 with 1007 and one over the frame limit with 1009', async () => {
    const user = await register(hs)
    const a = await live(user)
    a.ws.send(Buffer.from([0x7b, 0xc3, 0x28, 0x7d]), { binary: false }) // `{`, broken 2-byte sequence, `}`
    expect((await a.closed()).code).toBe(1007)
    const b = await live(user)
    b.ws.send('x'.repeat(hs.config.limits.maxFrameBytes + 1))
    expect((await b.closed()).code).toBe(1009)
    const c = await live(user)
    await barrier(c) // the user can still connect
  })
})

// ---- IN-3 ----

const PAYLOADS = [
  "'; DROP TABLE events; --",
  "Robert'); DROP TABLE users;--",
  '" OR "1"="1',
  "' OR 1=1 --",
  "' UNION SELECT sql FROM sqlite_master --",
  '1; DELETE FROM devices',
  "%' --",
  '%',
  '_',
  '\\',
  '*/ DROP TABLE rooms /*',
  "\u0000' OR '1'='1",
  '$(rm -rf /)',
  '../../homeserver.db',
  'x\nDROP TABLE memberships;',
]

describe('IN-3 SQL injection via bodies, names and ids', () => {
  let writer: TestUser
  let room: string
  let sock: TestSocket

  beforeAll(async () => {
    writer = await register(hs)
    room = await groupWith(hs, writer, [])
    sock = await live(writer)
  })

  async function roundTripBody(body: string) {
    const sent = await sendEvent(sock, room, 'm.message', { body })
    expect(sent.type).toBe('sent')
    const pushed = await sock.next((f) => f.type === 'event' && (f.event as Ev).event_id === sent.event_id)
    const hist = await http<{ events: Ev[] }>(
      hs,
      'GET',
      roomPath(room, '/messages?limit=1'),
      undefined,
      writer.access_token,
    )
    return { live: (pushed.event as Ev).content.body, stored: hist.body.events[0]!.content.body }
  }

  it('round-trips arbitrary well-formed Unicode message bodies byte for byte, live and from history', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }), async (body) => {
        const got = await roundTripBody(body)
        expect(got.live).toBe(body)
        expect(got.stored).toBe(body)
      }),
      { numRuns: 100 },
    )
  })

  it('round-trips arbitrary Unicode display names (trimmed) and room names byte for byte', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: 'binary', maxLength: 60 }),
        fc.string({ unit: 'binary', maxLength: 120 }),
        async (displayName, roomName) => {
          expect(
            (await http(hs, 'PUT', '/api/v1/profile', { display_name: displayName }, writer.access_token))
              .status,
          ).toBe(200)
          const profile = await http(
            hs,
            'GET',
            `/api/v1/profile/${encodeURIComponent(writer.user_id)}`,
            undefined,
            writer.access_token,
          )
          // The server trims display names on purpose; everything else must be kept as sent.
          expect(profile.body.display_name).toBe(displayName.trim())
          expect(
            (await http(hs, 'PUT', roomPath(room, '/settings'), { name: roomName }, writer.access_token))
              .status,
          ).toBe(200)
          const info = await http(hs, 'GET', roomPath(room), undefined, writer.access_token)
          expect(info.body.name).toBe(roomName)
        },
      ),
      { numRuns: 60 },
    )
  })

  it('stores injection payloads in bodies and names verbatim', async () => {
    for (const p of PAYLOADS) {
      const got = await roundTripBody(p)
      expect(got).toEqual({ live: p, stored: p })
      expect(
        (await http(hs, 'PUT', '/api/v1/profile', { display_name: p }, writer.access_token)).status,
      ).toBe(200)
      const profile = await http(
        hs,
        'GET',
        `/api/v1/profile/${encodeURIComponent(writer.user_id)}`,
        undefined,
        writer.access_token,
      )
      expect(profile.body.display_name).toBe(p.trim())
      const created = await http<{ room_id: string }>(
        hs,
        'POST',
        '/api/v1/rooms',
        { kind: 'group', name: p, topic: p },
        writer.access_token,
      )
      expect(created.status).toBe(201)
      const info = await http(hs, 'GET', roomPath(created.body.room_id), undefined, writer.access_token)
      expect(info.body).toMatchObject({ name: p, topic: p })
    }
    await http(hs, 'PUT', '/api/v1/profile', { display_name: 'plain name' }, writer.access_token)
  })

  it('treats user search queries as literal prefixes, LIKE wildcards included', async () => {
    for (const p of PAYLOADS) {
      const res = await http<{ users: Array<{ user_id: string; display_name: string }> }>(
        hs,
        'GET',
        `/api/v1/users?q=${encodeURIComponent(p)}`,
        undefined,
        writer.access_token,
      )
      expect(res.status).toBe(200)
      // Same normalisation as the server: trim, drop a leading @, keep the localpart.
      const q = p.trim().replace(/^@/, '').split(':')[0]!.toLowerCase()
      for (const u of res.body.users) {
        const localpart = u.user_id.slice(1).split(':')[0]!
        const name = u.display_name.toLowerCase()
        expect(localpart.startsWith(q) || name.startsWith(q) || name.includes(' ' + q)).toBe(true)
      }
    }
    // Every user name here matches `%` and `_` as LIKE wildcards; as literals they match nothing.
    for (const q of ['%', '_', '%%', '_%']) {
      const res = await http<{ users: unknown[] }>(
        hs,
        'GET',
        `/api/v1/users?q=${encodeURIComponent(q)}`,
        undefined,
        writer.access_token,
      )
      expect(res.body.users).toEqual([])
    }
  })

  it('refuses injection payloads used as ids with 400 (404 for media ids, which are looked up, not parsed)', async () => {
    const other = await register(hs)
    for (const p of PAYLOADS) {
      const enc = encodeURIComponent(p)
      for (const path of [
        roomPath(p),
        roomPath(p, '/messages'),
        roomPath(p, '/members'),
        `/api/v1/profile/${enc}`,
      ]) {
        const res = await http(hs, 'GET', path, undefined, writer.access_token)
        expect({ path, status: res.status }).toEqual({ path, status: 400 })
      }
      for (const [method, path, body] of [
        ['POST', roomPath(room, '/invite'), { user_id: p }],
        ['POST', roomPath(room, '/kick'), { user_id: p }],
        ['PUT', roomPath(room, '/power'), { user_id: p, role: 'admin' }],
        ['POST', '/api/v1/rooms', { kind: 'group', invite: [p] }],
        ['POST', roomPath(p, '/join'), undefined],
        // `_` is a valid user name; the others are not.
        ...(isLocalpart(p)
          ? []
          : ([['POST', '/api/v1/register', { username: p, password: 'long enough password' }]] as const)),
      ] as const) {
        const res = await http(hs, method, path, body, writer.access_token)
        expect({ path, body, status: res.status }).toEqual({ path, body, status: 400 })
      }
      const before = await http(
        hs,
        'GET',
        roomPath(room, `/messages?before=${enc}`),
        undefined,
        writer.access_token,
      )
      expect(before.status).toBe(400)
      const media = await http(hs, 'GET', `/api/v1/media/${enc}`, undefined, writer.access_token)
      expect(media.status).toBe(404)
      expect((await login(hs, p, p.padEnd(8, '.'))).status).toBe(401)

      for (const frame of [
        { type: 'receipt', room, event_id: p },
        { type: 'typing', room: p, typing: true },
        { type: 'send', txn_id: 'ok1', room: p, event_type: 'm.message', content: { body: 'x' } },
        ...(TXN.test(p)
          ? []
          : [{ type: 'send', txn_id: p, room, event_type: 'm.message', content: { body: 'x' } }]),
        { type: 'send', txn_id: 'ok2', room, event_type: 'm.reaction', content: { target: p, key: 'x' } },
      ]) {
        sock.send(frame)
        const err = await sock.next((f) => f.type === 'error')
        expect({ frame, errcode: err.errcode }).toEqual({ frame, errcode: 'P_BAD_REQUEST' })
      }
    }
    // The other account is untouched by the payloads sent as its neighbours' names and ids.
    expect((await http(hs, 'GET', '/api/v1/rooms', undefined, other.access_token)).status).toBe(200)
  })

  it('leaves the database schema unchanged after everything in this file', () => {
    expect(hashSchema()).toBe(schemaHash)
    const tables = hs.services.repos.db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as Array<{ name: string }>
    expect(tables.map((t) => t.name)).toEqual(
      expect.arrayContaining(['devices', 'events', 'memberships', 'rooms', 'users']),
    )
    expect(hs.services.repos.events.maxStreamPos()).toBeGreaterThan(100)
  })
})
