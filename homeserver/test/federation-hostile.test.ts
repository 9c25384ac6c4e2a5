/**
 * A hostile peer against a real homeserver (TESTPLAN.md FED-1, FED-2, FED-3, FED-5): the fake peer
 * `globex` completes the real link handshake with its own key (support/fake-link.ts) and then sends
 * forged, spoofed, injected and oversized replication frames. As the owner of a room the real server
 * replicates it sends `snapshot` and `events`; as the origin of users it sends `submit` to rooms the
 * real server owns; it also sends `ephemeral` frames and `submit_ack`s it has no business sending.
 * Every refusal must leave the database as it was and be counted in `replication.stats.faults`, or be
 * answered with a `submit_ack` error. Three of them found bugs (prototype-named frame types, relayed
 * events of a denied server, a snapshot joining local users) and are regression tests now.
 *
 * No sleeps: "nothing was applied" is shown by a later valid probe (frames of a link, and of a room,
 * are handled in order) that takes the very seq the forged event wanted.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  buildHeader,
  envelopeHash,
  eventIdOf,
  eventSigningBytes,
  fromBase64Url,
  newRoomId,
  parseUserId,
  toBase64Url,
  type EventHeader,
  type JsonObject,
} from '@parley/protocol'
import { MAX_FRAME_BYTES } from '@parley/protocol/federation'
import type { Signer } from '@parley/protocol/signing'
import type { ConfigInput } from '../src/config.ts'
import {
  barrier,
  connect,
  createRoom,
  fullHistory,
  register,
  sendText,
  startTestServer,
  waitUntil,
  type TestServer,
  type TestSocket,
  type TestUser,
} from './helpers.ts'
import { FakePeer } from './support/fake-peer.ts'
import {
  FakeLink,
  FakeRoom,
  LinkRefused,
  fakePeersFetcher,
  keyedSig,
  originSig,
  type EventSpec,
  type KeyedSig,
  type LinkFrame,
  type WireEvent,
} from './support/fake-link.ts'

/** The real homeserver. */
const ACME = 'acme.localhost'
/** The fake peer on the link. */
const GLOBEX = 'globex.localhost'
/** A third server: only its keys exist (served to ACME), for events globex relays or spoofs. */
const INITECH = 'initech.localhost'

const GUS = `@gus:${GLOBEX}`
const MALLORY = `@mallory:${GLOBEX}`
const CAROL = `@carol:${INITECH}`

const cleanups: (() => Promise<unknown>)[] = []
const sockets: TestSocket[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

type FederationInput = NonNullable<ConfigInput['federation']>

interface Setup {
  readonly server: TestServer
  readonly globex: FakePeer
  readonly initech: FakePeer
}

/** ACME with globex and initech allowed (unless overridden); their key documents come from fakes. */
async function realServer(federation: FederationInput = {}): Promise<Setup> {
  const globex = new FakePeer(GLOBEX, () => Date.now())
  const initech = new FakePeer(INITECH, () => Date.now())
  const server = await startTestServer(
    { serverName: ACME, federation: { allow: [GLOBEX, INITECH], ...federation } },
    { keyFetcher: fakePeersFetcher(globex, initech) },
  )
  cleanups.push(() => server.stop())
  return { server, globex, initech }
}

async function linkAs(server: TestServer, peer: FakePeer): Promise<FakeLink> {
  const link = await FakeLink.connect(server, { serverName: peer.serverName, signer: peer.current })
  cleanups.push(() => link.close())
  return link
}

interface Linked extends Setup {
  readonly link: FakeLink
}

/** The real server and globex's link to it, with replication started on both ends. */
async function linked(federation: FederationInput = {}): Promise<Linked> {
  const setup = await realServer(federation)
  const link = await linkAs(setup.server, setup.globex)
  // Replication greets every new link with its resume list (none of globex's rooms yet).
  expect(await link.next((f) => f.type === 'cursors')).toEqual({ type: 'cursors', rooms: [], done: true })
  return { ...setup, link }
}

// ---- What the real server holds ----

function counts(s: TestServer) {
  const db = s.services.repos.db
  const n = (row: unknown) => (row as { n: number }).n
  return {
    events: n(db.prepare('SELECT COUNT(*) AS n FROM events').get()),
    rooms: n(db.prepare('SELECT COUNT(*) AS n FROM rooms').get()),
    memberships: n(db.prepare('SELECT COUNT(*) AS n FROM memberships').get()),
    receipts: n(db.prepare('SELECT COUNT(*) AS n FROM receipts').get()),
  }
}

const faultCount = (s: TestServer, code: string) => s.services.replication.stats.faults.get(code) ?? 0
const faults = (s: TestServer) => Object.fromEntries(s.services.replication.stats.faults)

// ---- The fake peer as the owner of a room ACME replicates ----

interface Replica extends Linked {
  readonly room: FakeRoom
  readonly bob: TestUser
}

const ackOf = (link: FakeLink, room: FakeRoom, seq: number) =>
  link.next((f) => f.type === 'ack' && f.room === room.id && f.upto_seq === seq)

/**
 * globex owns a group room; ACME's bob was invited (the snapshot ACME gets for a room new to it), then
 * joined: his join reaches ACME the way the owner sequenced it after bob's SUBMIT, signed by ACME, the
 * origin. Then gus says welcome. ACME holds seq 1..5.
 */
async function replica(federation: FederationInput = {}): Promise<Replica> {
  const setup = await linked(federation)
  const { server, globex, link } = setup
  const bob = await register(server, 'bob')
  const room = new FakeRoom(GLOBEX, globex.current)
  const history = room.build([
    { type: 'm.room.create', sender: GUS, content: { kind: 'group', creator: GUS, encrypted: false } },
    { type: 'm.member', sender: GUS, stateKey: GUS, content: { membership: 'join' } },
    { type: 'm.member', sender: GUS, stateKey: bob.user_id, content: { membership: 'invite' } },
  ])
  const state = {
    kind: 'group',
    creator: GUS,
    encrypted: false,
    name: 'hostile',
    topic: '',
    members: [
      { user_id: GUS, membership: 'join', level: 100 },
      { user_id: bob.user_id, membership: 'invite', level: 0 },
    ],
  }
  link.send(room.snapshot(state, history))
  await ackOf(link, room, 3)
  room.adopt(history)
  const joined = room.build([
    {
      type: 'm.member',
      sender: bob.user_id,
      stateKey: bob.user_id,
      content: { membership: 'join' },
      originSigner: server.services.signer,
    },
    { type: 'm.message', sender: GUS, content: { body: 'welcome' } },
  ])
  link.send(room.events(joined))
  await ackOf(link, room, 5)
  room.adopt(joined)
  return { ...setup, room, bob }
}

/** The next message from gus, owner-signed: applied, it proves every earlier frame was handled. */
async function probe(r: Replica, body = 'probe'): Promise<WireEvent> {
  const events = r.room.build([{ type: 'm.message', sender: GUS, content: { body } }])
  r.link.send(r.room.events(events))
  await ackOf(r.link, r.room, events[0]!.envelope.seq)
  r.room.adopt(events)
  return events[0]!
}

/**
 * Sends `frame` (forged events meant for the next seq) and then a valid probe for that same seq:
 * the forgery is counted once under `code`, none of `forged` is stored, and the probe is what holds
 * the seq.
 */
async function refused(r: Replica, code: string, frame: object, forged: readonly WireEvent[]): Promise<void> {
  const before = counts(r.server)
  const faultsBefore = faultCount(r.server, code)
  const { equivocations } = r.server.services.replication.stats
  r.link.send(frame)
  const held = await probe(r)
  expect(faultCount(r.server, code), `fault ${code}; all: ${JSON.stringify(faults(r.server))}`).toBe(
    faultsBefore + 1,
  )
  expect(counts(r.server)).toEqual({ ...before, events: before.events + 1 })
  const { repos } = r.server.services
  for (const e of forged) expect(repos.events.get(e.envelope.event_id)).toBeUndefined()
  expect(repos.events.atSeq(r.room.id, held.envelope.seq)?.event_id).toBe(held.envelope.event_id)
  expect(r.server.services.replication.stats.equivocations).toBe(equivocations)
}

/**
 * Like {@link refused} for a frame that cannot be verified *yet* (a key id the peer's document did
 * not have when we fetched it less than `keyRefetchMs` ago: maybe a rotation): not applied, not
 * counted against the peer, asked for again later; the probe takes the seq meanwhile.
 */
async function deferred(r: Replica, frame: object, forged: readonly WireEvent[]): Promise<void> {
  const before = counts(r.server)
  const faultsBefore = JSON.stringify(faults(r.server))
  r.link.send(frame)
  const held = await probe(r)
  expect(JSON.stringify(faults(r.server))).toBe(faultsBefore)
  expect(counts(r.server)).toEqual({ ...before, events: before.events + 1 })
  const { repos } = r.server.services
  for (const e of forged) expect(repos.events.get(e.envelope.event_id)).toBeUndefined()
  expect(repos.events.atSeq(r.room.id, held.envelope.seq)?.event_id).toBe(held.envelope.event_id)
}

/**
 * Like {@link refused} for a frame refused when applied (inside the commit, where the database is
 * current): the refusal is counted, then the replica asks the owner (FETCH) to send again from what
 * it holds; the probe answers that.
 */
async function refusedOnApply(r: Replica, code: string, frame: object, forged: readonly WireEvent[]) {
  const before = counts(r.server)
  const faultsBefore = faultCount(r.server, code)
  const from = r.server.services.repos.rooms.get(r.room.id)!.last_seq + 1
  const fetch = r.link.next((f) => f.type === 'fetch' && f.room === r.room.id && f.from === from)
  r.link.send(frame)
  await fetch
  expect(faultCount(r.server, code)).toBe(faultsBefore + 1)
  const held = await probe(r)
  expect(counts(r.server)).toEqual({ ...before, events: before.events + 1 })
  for (const e of forged) expect(r.server.services.repos.events.get(e.envelope.event_id)).toBeUndefined()
  expect(r.server.services.repos.events.atSeq(r.room.id, held.envelope.seq)?.event_id).toBe(
    held.envelope.event_id,
  )
}

const message = (body: string, sender = GUS) => ({ type: 'm.message', sender, content: { body } })

/** A copy of a base64url string with one bit of its first byte flipped. */
function flipBit(b64: string): string {
  const bytes = fromBase64Url(b64)!
  bytes[0]! ^= 1
  return toBase64Url(bytes)
}

/** `event` with its header changed and its event id recomputed (so only the change is wrong). */
function reheader(event: WireEvent, change: Partial<EventHeader>): WireEvent {
  const header = { ...event.header, ...change } as EventHeader
  return { ...event, header, envelope: { ...event.envelope, event_id: eventIdOf(header) } }
}

// ---- The fake peer as the origin of users, writing to rooms ACME owns ----

interface SubmitSpec {
  readonly room: string
  readonly type: string
  readonly sender: string
  readonly content: JsonObject
  readonly stateKey?: string
  /** Default: the sender's server. */
  readonly origin?: string
}

/** A SUBMIT frame, origin-signed by `signer` (or carrying the given signature). */
function submit(signer: Signer, spec: SubmitSpec, sig?: (header: EventHeader) => KeyedSig) {
  const header = buildHeader({
    room: spec.room,
    type: spec.type,
    stateKey: spec.stateKey,
    sender: spec.sender,
    origin: spec.origin ?? parseUserId(spec.sender)!.server,
    originTs: Date.now(),
    content: spec.content,
  })
  const origin_sig = sig ? sig(header) : originSig(signer, header)
  return {
    eventId: eventIdOf(header),
    frame: { type: 'submit', header, content: spec.content, origin_sig },
  }
}

/** Sends a SUBMIT and returns the owner's answer to it. */
async function submitted(link: FakeLink, s: { eventId: string; frame: object }): Promise<LinkFrame> {
  link.send(s.frame)
  return link.next((f) => f.type === 'submit_ack' && f.event_id === s.eventId)
}

interface OwnedRoom extends Linked {
  readonly alice: TestUser
  readonly room: string
  readonly aliceSock: TestSocket
}

/** alice's group room on ACME; `invite` lists who she invites. alice is connected. */
async function aliceRoom(invite: string[] = []): Promise<OwnedRoom> {
  const setup = await linked()
  const alice = await register(setup.server, 'alice')
  const room = await createRoom(setup.server, alice, { kind: 'group', name: 'acme room', invite })
  const aliceSock = await connect(setup.server, alice)
  sockets.push(aliceSock)
  return { ...setup, alice, room, aliceSock }
}

/** alice's room with globex's mallory invited and joined through a valid SUBMIT. */
async function malloryJoined(): Promise<OwnedRoom> {
  const r = await aliceRoom([MALLORY])
  const join = submit(r.globex.current, {
    room: r.room,
    type: 'm.member',
    sender: MALLORY,
    stateKey: MALLORY,
    content: { membership: 'join' },
  })
  const seen = r.aliceSock.next(
    (f) => f.type === 'event' && (f.event as { event_id: string }).event_id === join.eventId,
  )
  expect(await submitted(r.link, join)).toMatchObject({ event_id: join.eventId, seq: expect.any(Number) })
  await seen
  // From here on, alice's socket holds only what the test itself causes.
  await barrier(r.aliceSock)
  r.aliceSock.frames.splice(0)
  return r
}

/** A SUBMIT for a room of someone else's: answered P_NOT_FOUND with no fault (a cheap probe). */
function harmlessSubmit(signer: Signer) {
  return submit(signer, { room: newRoomId(INITECH), ...message('not yours', MALLORY) })
}

describe('FED-1: forged signatures (globex owns a room ACME replicates)', () => {
  it('applies a valid snapshot and owner-signed events: the control for every refusal below', async () => {
    const r = await replica()
    const history = await fullHistory(r.server, r.bob.access_token, r.room.id)
    expect(history.map((e) => e.event_id)).toEqual(r.room.log.map((e) => e.envelope.event_id))
    expect(history.map((e) => e.type)).toEqual([
      'm.room.create',
      'm.member',
      'm.member',
      'm.member',
      'm.message',
    ])
    expect(r.server.services.repos.memberships.get(r.room.id, r.bob.user_id)?.membership).toBe('join')
    expect(r.server.services.replication.stats).toMatchObject({ applied: 5, equivocations: 0 })
    expect(faults(r.server)).toEqual({})
  })

  it('refuses an events frame whose owner signature is by a wrong key, unknown kid, or flipped', async () => {
    const r = await replica()
    const { room, globex, initech } = r
    const impostor = FakePeer.newSigner()
    let events = room.build([message('wrong key')])
    await refused(
      r,
      'bad_owner_sig',
      room.events(events, room.ownerSig(events, impostor, globex.current.kid)),
      events,
    )

    // An unknown key id right after a fetch may be a rotation: not applied, not a fault, asked again later.
    events = room.build([message('unknown kid')])
    await deferred(r, room.events(events, room.ownerSig(events, globex.current, 'ed25519:nosuchkey')), events)

    events = room.build([message('flipped signature')])
    const good = room.ownerSig(events)
    await refused(r, 'bad_owner_sig', room.events(events, { kid: good.kid, sig: flipBit(good.sig) }), events)

    // Server C's (initech's) valid key is not globex's: under initech's key id it is an unknown id of
    // globex's (deferred like the one above); under globex's own key id it is a bad signature.
    events = room.build([message("initech's key")])
    await deferred(r, room.events(events, room.ownerSig(events, initech.current)), events)
    events = room.build([message("initech's key, globex's kid")])
    await refused(
      r,
      'bad_owner_sig',
      room.events(events, room.ownerSig(events, initech.current, globex.current.kid)),
      events,
    )

    // A real owner signature, but over an earlier envelope (replayed from the previous frame).
    events = room.build([message('replayed signature')])
    await refused(r, 'bad_owner_sig', room.events(events, room.ownerSig(room.log.slice(-1))), events)

    // None of this made ACME fetch globex's document again (one fetch, at the handshake).
    expect(globex.fetches).toBe(1)
    expect(faults(r.server)).toEqual({ bad_owner_sig: 4 })
  })

  it('refuses a flipped bit in a header or an event id, content off its hash, and a broken chain', async () => {
    const r = await replica()
    const { room } = r
    // The envelope (and so the owner signature) is intact; the header no longer hashes to its id.
    let [e] = room.build([message('header bit')])
    let forged = { ...e!, header: { ...e!.header, origin_ts: e!.header.origin_ts ^ 1 } }
    await refused(r, 'bad_event_id', room.events([forged]), [forged, e!])

    // The owner signs an envelope whose event id is off by one bit.
    ;[e] = room.build([message('event id bit')])
    forged = { ...e!, envelope: { ...e!.envelope, event_id: '$' + flipBit(e!.envelope.event_id.slice(1)) } }
    await refused(r, 'bad_event_id', room.events([forged]), [forged, e!])

    // Content sits outside the signatures, behind its hash.
    ;[e] = room.build([message('original')])
    forged = { ...e!, content: { body: 'tampered' } }
    await refused(r, 'bad_content_hash', room.events([forged]), [e!])

    // prev does not hash the envelope ACME holds at the head (a fork), though owner-signed.
    const fork = room.build([message('fork')], {
      seq: room.seq,
      head: envelopeHash(room.log.at(-2)!.envelope),
    })
    await refused(r, 'bad_prev', room.events(fork), fork)

    // Inside a batch: the second event skips a seq.
    const pair = room.build([message('one'), message('two')])
    const skipping = [
      pair[0]!,
      { ...pair[1]!, envelope: { ...pair[1]!.envelope, seq: pair[1]!.envelope.seq + 1 } },
    ]
    await refused(r, 'bad_seq', room.events(skipping), pair)

    // And the second event's prev points elsewhere.
    const pair2 = room.build([message('three'), message('four')])
    const broken = [
      pair2[0]!,
      { ...pair2[1]!, envelope: { ...pair2[1]!.envelope, prev: pair2[0]!.envelope.prev } },
    ]
    await refused(r, 'bad_prev', room.events(broken), pair2)
  })

  it("refuses a third server's event without a valid origin signature", async () => {
    const r = await replica()
    const { room, globex, initech, server } = r
    const carolSays = (body: string) => message(body, CAROL)

    let [e] = room.build([carolSays('unsigned')])
    await refused(r, 'missing_origin_sig', room.events([e!]), [e!])

    // Signed by the owner's key under initech's key id.
    ;[e] = room.build([carolSays('by the wrong key')])
    let forged: WireEvent = { ...e!, origin_sig: originSig(globex.current, e!.header, initech.current.kid) }
    await refused(r, 'bad_origin_sig', room.events([forged]), [forged])

    // initech's key, but an id initech did not publish when we fetched its document just now.
    ;[e] = room.build([carolSays('unknown kid')])
    forged = { ...e!, origin_sig: originSig(initech.current, e!.header, 'ed25519:nosuchkey') }
    await deferred(r, room.events([forged]), [forged])

    // initech's real signature, of another event.
    const [other] = room.build([carolSays('the signed one')])
    ;[e] = room.build([carolSays('the sent one')])
    forged = { ...e!, origin_sig: originSig(initech.current, other!.header) }
    await refused(r, 'bad_origin_sig', room.events([forged]), [forged])

    // The owner speaks for ACME's own bob: ACME knows its own key.
    ;[e] = room.build([message('words put in my mouth', r.bob.user_id)])
    forged = { ...e!, origin_sig: originSig(globex.current, e!.header, server.services.signer.kid) }
    await refused(r, 'bad_origin_sig', room.events([forged]), [forged])

    // Control: carol's event with initech's own signature is relayed and applied.
    const [valid] = room.build([{ ...carolSays('hello from initech'), originSigner: initech.current }])
    server.services.replication.stats.faults.clear()
    r.link.send(room.events([valid!]))
    await ackOf(r.link, room, valid!.envelope.seq)
    room.adopt([valid!])
    expect(server.services.repos.events.get(valid!.envelope.event_id)?.sender).toBe(CAROL)
    expect(faults(server)).toEqual({})
    // initech's document was fetched once (first use); the unknown kid hit the rate limit, not the network.
    expect(initech.fetches).toBe(1)
  })

  it('refuses a snapshot with a bad owner signature and creates no room', async () => {
    const r = await replica()
    const { server, globex, link } = r
    const other = new FakeRoom(GLOBEX, globex.current)
    const specs: EventSpec[] = [
      { type: 'm.room.create', sender: GUS, content: { kind: 'group', creator: GUS, encrypted: false } },
      { type: 'm.member', sender: GUS, stateKey: GUS, content: { membership: 'join' } },
      { type: 'm.member', sender: GUS, stateKey: r.bob.user_id, content: { membership: 'invite' } },
    ]
    const state = {
      kind: 'group',
      creator: GUS,
      encrypted: false,
      name: 'second',
      topic: '',
      members: [
        { user_id: GUS, membership: 'join', level: 100 },
        { user_id: r.bob.user_id, membership: 'invite', level: 0 },
      ],
    }
    const before = counts(server)
    const forged = other.build(specs)
    link.send(other.snapshot(state, forged, other.ownerSig(forged, FakePeer.newSigner(), globex.current.kid)))
    const flipped = other.build(specs)
    const sig = other.ownerSig(flipped)
    link.send(other.snapshot(state, flipped, { kid: sig.kid, sig: flipBit(sig.sig) }))
    // Probe: the same snapshot rebuilt and properly signed; had a forgery been applied, this would be
    // an equivocation.
    const valid = other.build(specs)
    link.send(other.snapshot(state, valid))
    await ackOf(link, other, 3)
    expect(faults(server)).toEqual({ bad_owner_sig: 2 })
    expect(counts(server)).toEqual({
      ...before,
      rooms: before.rooms + 1,
      events: before.events + 3,
      memberships: before.memberships + 2,
    })
    for (const e of [...forged, ...flipped])
      expect(server.services.repos.events.get(e.envelope.event_id)).toBeUndefined()
    expect(server.services.replication.stats.equivocations).toBe(0)
  })

  it('refuses forged events sent in reply to its own FETCH (backfill)', async () => {
    const r = await replica()
    const { room, link, server } = r
    const next = room.build([message('six'), message('seven'), message('eight')])
    // Only the last one arrives: ACME asks for the gap, applies nothing.
    link.send(room.events(next.slice(2)))
    expect(await link.next((f) => f.type === 'fetch')).toEqual({
      type: 'fetch',
      room: room.id,
      from: 6,
      to: 7,
    })
    expect(server.services.repos.rooms.get(room.id)?.last_seq).toBe(5)

    // The "reply" is signed by someone else.
    link.send(room.events(next, room.ownerSig(next, FakePeer.newSigner(), room.ownerSigner.kid)))
    // ... or carries events of another room of globex's.
    const elsewhere = new FakeRoom(GLOBEX, room.ownerSigner)
    const foreign = elsewhere.build([message('six'), message('seven')], room)
    link.send(room.events(foreign))
    // The genuine reply fills the gap.
    link.send(room.events(next))
    await ackOf(link, room, 8)
    room.adopt(next)
    expect(faults(server)).toEqual({ bad_owner_sig: 1, bad_room: 1 })
    for (const e of foreign) expect(server.services.repos.events.get(e.envelope.event_id)).toBeUndefined()
    const history = await fullHistory(server, r.bob.access_token, room.id)
    expect(history.map((e) => e.event_id)).toEqual(room.log.map((e) => e.envelope.event_id))
  })

  it('answers a SUBMIT with a bad origin signature with P_FORBIDDEN and sequences nothing', async () => {
    const r = await malloryJoined()
    const { globex, initech, link, server } = r
    const before = counts(server)
    const says = (body: string) => ({ room: r.room, ...message(body, MALLORY) })

    const cases = [
      submit(globex.current, says('wrong key'), (h) =>
        originSig(FakePeer.newSigner(), h, globex.current.kid),
      ),
      submit(globex.current, says('flipped'), (h) => {
        const sig = originSig(globex.current, h)
        return { kid: sig.kid, sig: flipBit(sig.sig) }
      }),
      submit(globex.current, says("initech's key"), (h) => originSig(initech.current, h, globex.current.kid)),
      // A real signature of globex's, over another header.
      submit(globex.current, says('swapped'), () =>
        keyedSig(globex.current, eventSigningBytes(submit(globex.current, says('other')).frame.header)),
      ),
    ]
    for (const c of cases) {
      expect(await submitted(link, c)).toMatchObject({ errcode: 'P_FORBIDDEN', event_id: c.eventId })
      expect(server.services.repos.events.get(c.eventId)).toBeUndefined()
    }
    // A key id the peer's document lacked a moment ago: "not now" (P_UNAVAILABLE), the origin retries.
    const unknownKid = submit(globex.current, says('unknown kid'), (h) =>
      originSig(globex.current, h, 'ed25519:nosuchkey'),
    )
    expect(await submitted(link, unknownKid)).toMatchObject({ errcode: 'P_UNAVAILABLE' })
    expect(server.services.repos.events.get(unknownKid.eventId)).toBeUndefined()
    // Content that does not match the signed hash.
    const swapped = submit(globex.current, says('signed text'))
    const tampered = { ...swapped, frame: { ...swapped.frame, content: { body: 'other text' } } }
    expect(await submitted(link, tampered)).toMatchObject({ errcode: 'P_FORBIDDEN' })

    expect(faults(server)).toEqual({ bad_origin_sig: 4, bad_content_hash: 1 })
    expect(counts(server)).toEqual(before)
    // Control: a message properly signed is sequenced.
    const ok = submit(globex.current, says('signed properly'))
    expect(await submitted(link, ok)).toMatchObject({ event_id: ok.eventId, seq: expect.any(Number) })
    expect(counts(server).events).toBe(before.events + 1)
  })
})

describe('FED-2: spoofed origin', () => {
  it("refuses events for a room globex does not own, and a snapshot over a room of ACME's", async () => {
    const r = await replica()
    const { server, initech, link } = r
    const alice = await register(server, 'alice')
    const aliceRoomId = await createRoom(server, alice, { kind: 'group', name: 'mine' })
    const mine = server.services.repos.rooms.get(aliceRoomId)!
    const before = counts(server)

    // initech's room, even with initech's valid owner signature, is not globex's to send.
    const theirs = new FakeRoom(INITECH, initech.current)
    const theirEvents = theirs.build([message('from initech', CAROL)])
    link.send(theirs.events(theirEvents))
    link.send(
      theirs.snapshot(
        { kind: 'group', creator: CAROL, encrypted: false, name: '', topic: '', members: [] },
        theirEvents,
      ),
    )
    // A snapshot of alice's room, "owned" by globex.
    // globex's own room, but ACME never got a snapshot of it: events alone do not create a room.
    const unheld = new FakeRoom(GLOBEX, r.globex.current)
    link.send(unheld.events(unheld.build([message('out of nowhere')])))
    const hijack = new FakeRoom(GLOBEX, r.globex.current, aliceRoomId)
    const hijackEvents = hijack.build([message('all yours', GUS)])
    link.send(
      hijack.snapshot(
        {
          kind: 'group',
          creator: GUS,
          encrypted: false,
          name: 'taken',
          topic: '',
          members: [{ user_id: GUS, membership: 'join', level: 100 }],
        },
        hijackEvents,
      ),
    )
    link.send(hijack.events(hijackEvents))
    await probe(r)
    expect(faults(server)).toEqual({ not_owner: 4, unknown_room: 1 })
    expect(counts(server)).toEqual({ ...before, events: before.events + 1 })
    expect(server.services.repos.rooms.get(aliceRoomId)).toEqual(mine)
    expect(server.services.repos.memberships.get(aliceRoomId, GUS)).toBeUndefined()
    expect(server.services.repos.rooms.get(theirs.id)).toBeUndefined()
    expect(server.services.repos.rooms.get(unheld.id)).toBeUndefined()
  })

  it('refuses an event whose envelope or header names another room than the frame', async () => {
    const r = await replica()
    const { room, globex } = r
    const other = new FakeRoom(GLOBEX, globex.current)

    // The envelope says another room.
    let [e] = room.build([message('envelope elsewhere')])
    let forged: WireEvent = { ...e!, envelope: { ...e!.envelope, room: other.id } }
    await refused(r, 'bad_room', room.events([forged]), [forged])

    // The signed header belongs to another room; the envelope claims this one.
    ;[e] = other.build([message('header elsewhere')], room)
    forged = { ...e!, envelope: { ...e!.envelope, room: room.id } }
    await refused(r, 'bad_room', room.events([forged]), [forged])
  })

  it('refuses an event whose sender is not a user of its origin', async () => {
    const r = await replica()
    const { room, initech } = r
    // carol is initech's; the header claims globex as origin (so no origin signature is needed).
    let [e] = room.build([message('I am carol', CAROL)])
    let forged = reheader(e!, { origin: GLOBEX })
    await refused(r, 'spoofed_sender', room.events([forged]), [forged])

    // gus is globex's; initech signs a header that claims him.
    ;[e] = room.build([message('I am gus')])
    forged = reheader(e!, { origin: INITECH })
    forged = { ...forged, origin_sig: originSig(initech.current, forged.header) }
    await refused(r, 'spoofed_sender', room.events([forged]), [forged])
  })

  it("answers a SUBMIT for another server's user or origin with P_FORBIDDEN and sequences nothing", async () => {
    const r = await malloryJoined()
    const { globex, initech, link, server } = r
    const before = counts(server)
    const cases = [
      // initech's own valid signature, relayed over globex's link.
      submit(initech.current, { room: r.room, ...message('relayed', CAROL) }),
      // globex signs for initech's carol.
      submit(globex.current, { room: r.room, ...message('as carol', CAROL), origin: GLOBEX }),
      // globex signs for ACME's alice.
      submit(globex.current, { room: r.room, ...message('as alice', r.alice.user_id), origin: GLOBEX }),
      // globex signs a join for ACME's bob... who does not even exist.
      submit(globex.current, {
        room: r.room,
        type: 'm.member',
        sender: `@bob:${ACME}`,
        stateKey: `@bob:${ACME}`,
        content: { membership: 'join' },
        origin: GLOBEX,
      }),
    ]
    for (const c of cases)
      expect(await submitted(link, c)).toMatchObject({ event_id: c.eventId, errcode: 'P_FORBIDDEN' })
    expect(faults(server)).toEqual({ spoofed_origin: 1, spoofed_sender: 3 })
    expect(counts(server)).toEqual(before)
    // alice saw nothing of it.
    await barrier(r.aliceSock)
    expect(r.aliceSock.frames.filter((f) => f.type === 'event')).toEqual([])
  })

  it("settles none of ACME's submissions on a SUBMIT_ACK from a server that is not the room's owner", async () => {
    const r = await replica()
    const { server, room, link } = r
    const bobSock = await connect(server, r.bob)
    sockets.push(bobSock)
    bobSock.send({
      type: 'send',
      txn_id: 'b1',
      room: room.id,
      event_type: 'm.message',
      content: { body: 'hi' },
    })
    const pending = await bobSock.next((f) => f.txn_id === 'b1')
    expect(pending.type).toBe('pending')
    const sub = await link.next((f) => f.type === 'submit')
    expect((sub.header as { sender: string }).sender).toBe(r.bob.user_id)

    // initech answers for globex's room: both a success and a refusal are ignored and counted.
    const initechLink = await linkAs(server, r.initech)
    await initechLink.next((f) => f.type === 'cursors')
    initechLink.send({ type: 'submit_ack', event_id: pending.event_id, seq: 6 })
    initechLink.send({ type: 'submit_ack', event_id: pending.event_id, errcode: 'P_FORBIDDEN', error: 'no' })
    // globex acknowledges something ACME never submitted.
    link.send({ type: 'submit_ack', event_id: '$' + flipBit((pending.event_id as string).slice(1)), seq: 7 })
    await waitUntil(() => faultCount(server, 'unknown_submit') === 3)
    expect(server.services.repos.replication.outboxByEvent(pending.event_id as string)?.state).toBe('pending')

    // The owner's own answer settles it.
    link.send({ type: 'submit_ack', event_id: pending.event_id, seq: 6 })
    expect(await bobSock.next((f) => f.txn_id === 'b1')).toMatchObject({
      type: 'sent',
      event_id: pending.event_id,
      seq: 6,
    })
    expect(faults(server)).toEqual({ unknown_submit: 3 })
  })

  // Regression: a snapshot's state was taken on the owner's word for our own users too.
  it("a snapshot cannot make one of ACME's users a joined member without ACME's say", async () => {
    const r = await replica()
    const { server, globex, link } = r
    const forced = new FakeRoom(GLOBEX, globex.current)
    const events = forced.build([
      { type: 'm.room.create', sender: GUS, content: { kind: 'group', creator: GUS, encrypted: false } },
      { type: 'm.member', sender: GUS, stateKey: GUS, content: { membership: 'join' } },
    ])
    const state = {
      kind: 'group',
      creator: GUS,
      encrypted: false,
      name: 'you are in now',
      topic: '',
      members: [
        { user_id: GUS, membership: 'join', level: 100 },
        { user_id: r.bob.user_id, membership: 'join', level: 0 },
      ],
    }
    link.send(forced.snapshot(state, events))
    // Either refused (a fault) or applied (the room shows up, with its members, in one commit).
    await waitUntil(
      () =>
        server.services.replication.stats.faults.size > 0 ||
        server.services.repos.rooms.get(forced.id) !== undefined,
    )
    expect(server.services.repos.memberships.get(forced.id, r.bob.user_id)?.membership).not.toBe('join')
  })

  it("refuses typing, receipts and presence that globex sends for other servers' users", async () => {
    const r = await malloryJoined()
    const { link, server, alice } = r
    const elsewhere = await createRoom(server, alice, { kind: 'group', name: 'no globex here' })
    await barrier(r.aliceSock)
    r.aliceSock.frames.splice(0)
    const before = counts(server)
    const lastEvent = server.services.repos.events.atSeq(r.room, 1)!.event_id
    const ephemeral = (frame: object) => link.send({ type: 'ephemeral', ...frame })
    // For ACME's alice, and for initech's carol: globex speaks for neither.
    ephemeral({ kind: 'typing', room: r.room, user_id: alice.user_id, typing: true })
    ephemeral({ kind: 'receipt', room: r.room, user_id: alice.user_id, event_id: lastEvent })
    ephemeral({ kind: 'presence', user_id: alice.user_id, status: 'away' })
    ephemeral({ kind: 'typing', room: r.room, user_id: CAROL, typing: true })
    // mallory is globex's, but not in that room.
    ephemeral({ kind: 'typing', room: elsewhere, user_id: MALLORY, typing: true })
    // Control: mallory typing where she is a member reaches alice. Frames of a link are handled in
    // order, so anything the refused ones had shown alice would have come before it.
    ephemeral({ kind: 'typing', room: r.room, user_id: MALLORY, typing: true })
    expect(await r.aliceSock.next((f) => f.type === 'typing')).toEqual({
      type: 'typing',
      room: r.room,
      user_ids: [MALLORY],
    })
    await barrier(r.aliceSock)
    expect(r.aliceSock.frames.filter((f) => ['typing', 'receipt', 'presence'].includes(f.type))).toEqual([])
    expect(faults(server)).toEqual({ spoofed_user: 4, ephemeral_refused: 1 })
    expect(counts(server)).toEqual(before)
    expect(server.services.ephemeral.presenceOf(alice.user_id)).toBe('online')
  })

  it('closes the link of a peer that commits ten faults within a minute', async () => {
    const { server, globex, initech, link } = await linked()
    const theirs = new FakeRoom(INITECH, initech.current)
    const spoof = () => theirs.events(theirs.build([message('not yours', CAROL)]))
    for (let i = 0; i < 9; i++) link.send(spoof())
    // Nine faults: the link still answers.
    expect(await submitted(link, harmlessSubmit(globex.current))).toMatchObject({ errcode: 'P_NOT_FOUND' })
    expect(faultCount(server, 'not_owner')).toBe(9)
    expect(server.services.links.linkTo(GLOBEX)).not.toBeNull()

    link.send(spoof())
    const closed = await link.closed
    expect(link.finalReceived).toBe(true) // a clean close from ACME's side, FINAL first
    expect(closed.code).toBe(1000)
    expect(faultCount(server, 'not_owner')).toBe(10)
    await waitUntil(() => server.services.links.linkTo(GLOBEX) === null)
  })

  // Regression: frame types were looked up on a plain object, so inherited names escaped counting.
  it('counts frames typed like Object.prototype members as faults, ten of them close the link', async () => {
    const { server, globex, link } = await linked()
    for (const type of ['toString', 'constructor', 'hasOwnProperty', '__proto__', 'valueOf'])
      link.send({ type })
    for (let i = 0; i < 5; i++) link.send({ type: 'toString' })
    const answer = await submitted(link, harmlessSubmit(globex.current)).then(
      () => 'answered',
      () => 'closed',
    )
    expect(faultCount(server, 'unknown_frame')).toBe(10)
    expect(answer).toBe('closed')
  })
})

describe('FED-3: injection', () => {
  it('refuses a SUBMIT to a room where globex has no member: P_FORBIDDEN, nothing stored or shown', async () => {
    const r = await aliceRoom()
    const { globex, link, server } = r
    const before = counts(server)
    const cases = [
      submit(globex.current, { room: r.room, ...message('let me in', MALLORY) }),
      submit(globex.current, {
        room: r.room,
        type: 'm.room.name',
        sender: MALLORY,
        content: { name: 'pwned' },
      }),
      submit(globex.current, {
        room: r.room,
        type: 'm.member',
        sender: MALLORY,
        stateKey: r.alice.user_id,
        content: { membership: 'ban' },
      }),
    ]
    for (const c of cases)
      expect(await submitted(link, c)).toMatchObject({ event_id: c.eventId, errcode: 'P_FORBIDDEN' })
    // A room that does not exist gets the very same answer (no probing of room ids).
    const nowhere = submit(globex.current, { room: newRoomId(ACME), ...message('anyone?', MALLORY) })
    expect(await submitted(link, nowhere)).toMatchObject({ errcode: 'P_FORBIDDEN' })
    // Only the owner creates rooms.
    const create = submit(globex.current, {
      room: r.room,
      type: 'm.room.create',
      sender: MALLORY,
      content: { kind: 'group', creator: MALLORY, encrypted: false },
    })
    expect(await submitted(link, create)).toMatchObject({ errcode: 'P_BAD_REQUEST' })
    expect(counts(server)).toEqual(before)
    expect(server.services.repos.rooms.get(r.room)?.name).toBe('acme room')
    await barrier(r.aliceSock)
    expect(r.aliceSock.frames.filter((f) => f.type === 'event')).toEqual([])
    // Refusals by the room rules are answers, not faults: mallory's server did nothing wrong as a server.
    expect(faults(server)).toEqual({})
  })

  it('refuses a self-join without an invite, and a post by an invited but not joined user', async () => {
    const r = await aliceRoom([MALLORY])
    const { globex, link, server } = r
    const before = counts(server)
    const selfJoin = (who: string) =>
      submit(globex.current, {
        room: r.room,
        type: 'm.member',
        sender: who,
        stateKey: who,
        content: { membership: 'join' },
      })
    const trudy = `@trudy:${GLOBEX}`
    expect(await submitted(link, selfJoin(trudy))).toMatchObject({ errcode: 'P_FORBIDDEN' })
    // mallory may join, but not for trudy.
    const forTrudy = submit(globex.current, {
      room: r.room,
      type: 'm.member',
      sender: MALLORY,
      stateKey: trudy,
      content: { membership: 'join' },
    })
    expect(await submitted(link, forTrudy)).toMatchObject({ errcode: 'P_FORBIDDEN' })
    // Invited is not joined.
    const early = submit(globex.current, { room: r.room, ...message('before joining', MALLORY) })
    expect(await submitted(link, early)).toMatchObject({ errcode: 'P_FORBIDDEN' })
    expect(counts(server)).toEqual(before)
    expect(server.services.repos.memberships.get(r.room, trudy)).toBeUndefined()
    expect(server.services.repos.memberships.get(r.room, MALLORY)?.membership).toBe('invite')

    // Control: mallory's own join, then her message.
    expect(await submitted(link, selfJoin(MALLORY))).toMatchObject({ seq: expect.any(Number) })
    const hello = submit(globex.current, { room: r.room, ...message('hello', MALLORY) })
    const toAlice = r.aliceSock.next(
      (f) => f.type === 'event' && (f.event as { event_id: string }).event_id === hello.eventId,
    )
    expect(await submitted(link, hello)).toMatchObject({ seq: expect.any(Number) })
    await toAlice
  })

  it('a server on the deny list, or outside the allow-list, cannot link, and its keys are never fetched', async () => {
    const denied = await realServer({ allow: [GLOBEX], deny: [GLOBEX] })
    const refusal = await FakeLink.connect(denied.server, {
      serverName: GLOBEX,
      signer: denied.globex.current,
    }).then(
      () => null,
      (err: unknown) => err,
    )
    expect(refusal).toBeInstanceOf(LinkRefused)
    expect((refusal as LinkRefused).close).toEqual({ code: 4001, reason: 'not_allowed' })
    expect(denied.globex.fetches).toBe(0)
    expect(denied.server.services.links.linkedPeers).toEqual([])

    const closed = await realServer({ allow: [INITECH] })
    await expect(
      FakeLink.connect(closed.server, { serverName: GLOBEX, signer: closed.globex.current }),
    ).rejects.toThrow('4001 not_allowed')
    expect(closed.globex.fetches).toBe(0)

    // Open mode admits strangers but not the denied.
    const open = await realServer({ mode: 'open', allow: [], deny: [GLOBEX] })
    await expect(
      FakeLink.connect(open.server, { serverName: GLOBEX, signer: open.globex.current }),
    ).rejects.toThrow('4001 not_allowed')
    expect(open.globex.fetches).toBe(0)
  })

  // Regression: relayed events of a server our policy refuses were fetched for and applied.
  it("stops a room at an event the owner relays from a server on ACME's deny list, fetching nothing", async () => {
    const r = await replica({ deny: [INITECH] })
    const { room, initech, server } = r
    const [e] = room.build([{ ...message('banned but relayed', CAROL), originSigner: initech.current }])
    const before = counts(server)
    r.link.send(room.events([e!]))
    await waitUntil(() => server.services.replication.replica.stoppedBy(room.id) === INITECH)
    expect(initech.fetches).toBe(0)
    expect(server.services.repos.events.get(e!.envelope.event_id)).toBeUndefined()
    expect(counts(server)).toEqual(before)
    // Not the owner's fault: nothing counted against its link.
    expect(faults(server)).toEqual({})
  })
})

describe('an owner misbehaving within its signatures (review findings)', () => {
  it('refuses a redaction, edit or reaction aimed at an event of another room', async () => {
    const r = await replica()
    const { server, room } = r
    const alice = await register(server, 'alice')
    const own = await createRoom(server, alice, { kind: 'group', name: "acme's own" })
    const sock = await connect(server, alice)
    const sent = await sendText(sock, own, 'not yours to delete')
    sock.close()
    const target = sent.event_id as string
    for (const [type, content] of [
      ['m.redaction', { target }],
      ['m.edit', { target, body: 'rewritten' }],
      ['m.reaction', { target, key: '👍' }],
    ] as const) {
      const events = room.build([{ type, sender: GUS, content }])
      await refusedOnApply(r, 'cross_room_target', room.events(events), events)
    }
    expect(JSON.parse(server.services.repos.events.get(target)!.content!)).toMatchObject({
      body: 'not yours to delete',
    })
  })

  it("refuses a join of one of ACME's users that ACME did not sign", async () => {
    const r = await replica()
    const carolHere = await register(r.server, 'carol')
    const events = r.room.build([
      { type: 'm.member', sender: GUS, stateKey: carolHere.user_id, content: { membership: 'join' } },
    ])
    await refusedOnApply(r, 'forged_join', r.room.events(events), events)
    expect(r.server.services.repos.memberships.get(r.room.id, carolHere.user_id)).toBeUndefined()
  })

  it('refuses a second copy of an event id, and a local write in the same group commit is unharmed', async () => {
    const r = await replica()
    const { room, server } = r
    const alice = await register(server, 'alice')
    const own = await createRoom(server, alice, { kind: 'group' })
    const sock = await connect(server, alice)
    // The same event (same header, so the same id) again at the next seq: chain-valid, signed.
    const copy = room.log[4]!
    const [again] = room.build([{ type: 'm.message', sender: GUS, content: { body: 'welcome' } }])
    const forged = {
      ...again!,
      header: copy.header,
      envelope: { ...again!.envelope, event_id: copy.envelope.event_id },
    }
    const resealed = room.events([forged])
    sock.send({
      type: 'send',
      txn_id: 'beside',
      room: own,
      event_type: 'm.message',
      content: { body: 'mine' },
    })
    r.link.send(resealed)
    expect(await sock.next((f) => f.txn_id === 'beside')).toMatchObject({ type: 'sent' })
    sock.close()
    await waitUntil(() => faultCount(server, 'duplicate_event') + faultCount(server, 'bad_prev') > 0)
    expect(server.services.repos.rooms.get(room.id)!.last_seq).toBe(5)
  })

  it('refuses state events without content or state key, and a second m.room.create', async () => {
    const r = await replica()
    const { room } = r
    let events = room.build([{ type: 'm.member', sender: GUS, content: { membership: 'join' } }])
    await refused(r, 'bad_state_key', room.events(events), events)
    events = room.build([
      { type: 'm.room.create', sender: GUS, content: { kind: 'group', creator: GUS, encrypted: false } },
    ])
    await refused(r, 'bad_create', room.events(events), events)
  })
})

describe('FED-5 and limits', () => {
  it('refuses an events frame of 51 events by its schema (bad_frame), applying none of them', async () => {
    const r = await replica()
    const many = r.room.build(Array.from({ length: 51 }, (_, i) => message(`flood ${i}`)))
    await refused(r, 'bad_frame', r.room.events(many), many)
    // 50 is the limit, not a refusal.
    const fifty = r.room.build(Array.from({ length: 50 }, (_, i) => message(`batch ${i}`)))
    r.link.send(r.room.events(fifty))
    await ackOf(r.link, r.room, fifty.at(-1)!.envelope.seq)
    expect(r.server.services.repos.rooms.get(r.room.id)?.last_seq).toBe(56)
  })

  it('equivocation: a different event at a seq ACME holds is counted and replaces nothing', async () => {
    const r = await replica()
    const { room, link, server } = r
    // The very same event again is a harmless repeat: acknowledged, nothing counted.
    link.send(room.events(room.log.slice(4)))
    await ackOf(link, room, 5)
    expect(faults(server)).toEqual({})

    const held = room.log[4]!
    const afterFour = { seq: 4, head: envelopeHash(room.log[3]!.envelope) }
    const rewritten = room.build([message('rewritten history')], afterFour)
    link.send(room.events(rewritten))
    // A fork at the held seq that also brings a new event: nothing of it is applied.
    const forkAndMore = room.build([message('fork'), message('and more')], afterFour)
    link.send(room.events(forkAndMore))
    await probe(r)
    expect(server.services.replication.stats.equivocations).toBe(2)
    expect(faults(server)).toEqual({ equivocation: 2 })
    expect(server.services.repos.events.atSeq(room.id, 5)?.event_id).toBe(held.envelope.event_id)
    for (const e of [...rewritten, ...forkAndMore])
      expect(server.services.repos.events.get(e.envelope.event_id)).toBeUndefined()
    const history = await fullHistory(server, r.bob.access_token, room.id)
    expect(history.map((e) => e.event_id)).toEqual(room.log.map((e) => e.envelope.event_id))
  })

  it('takes a sealed frame of exactly 1 MiB, and closes the link with 1009 on a larger one', async () => {
    const { server, globex, link } = await linked()
    const frame = (bytes: number) => {
      const shell = '{"pad":"","type":"x.pad"}'
      return `{"pad":"${'a'.repeat(bytes - shell.length)}","type":"x.pad"}`
    }
    expect(Buffer.byteLength(frame(MAX_FRAME_BYTES))).toBe(MAX_FRAME_BYTES)
    link.sendText(frame(MAX_FRAME_BYTES))
    expect(await submitted(link, harmlessSubmit(globex.current))).toMatchObject({ errcode: 'P_NOT_FOUND' })
    expect(faults(server)).toEqual({ unknown_frame: 1 })

    link.sendText(frame(MAX_FRAME_BYTES + 1))
    expect((await link.closed).code).toBe(1009)
    await waitUntil(() => server.services.links.linkTo(GLOBEX) === null)
    expect(faults(server)).toEqual({ unknown_frame: 1 })
  })
})
