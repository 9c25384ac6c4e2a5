/**
 * Replication under faults (TESTPLAN.md FLT-2, DESIGN.md section 6 "Delivery"): the owner down while
 * a replica keeps serving history and queues sends; a replica down while the owner writes a thousand
 * events into five rooms (and restarts once); a replica killed with SIGKILL mid-stream. Every case
 * ends with each room's log identical on every server, each event once, in order.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import {
  connect,
  createRoom,
  fullHistory,
  http,
  register,
  roomPath,
  waitUntil,
  type TestUser,
} from './helpers.ts'
import {
  visibleHead,
  FAST_FEDERATION,
  freePort,
  spawnHomeserver,
  startFederation,
  type Federation,
} from './support/federation.ts'
import { startTestServer } from './helpers.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
/** These tests pipeline thousands of sends from one device. */
const UNLIMITED = {
  limits: {
    messagesPerSecond: 1_000_000,
    messageBurst: 1_000_000,
    framesPerSecond: 1_000_000,
    frameBurst: 1_000_000,
  },
}

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function track<T extends { close(): unknown }>(x: T): T {
  cleanups.push(async () => x.close())
  return x
}

/** A group owned by `owner` with `member` (of another server) joined; resolves once the member's server holds it. */
async function sharedRoom(
  ownerServer: { url: string },
  owner: TestUser,
  memberServer: { url: string; services: { repos: { rooms: { get(id: string): unknown } } } },
  member: TestUser,
): Promise<string> {
  const room = await createRoom(ownerServer, owner, {
    kind: 'group',
    name: 'shared',
    invite: [member.user_id],
  })
  await waitUntil(() => memberServer.services.repos.rooms.get(room) !== undefined, 10_000)
  const joined = await http(memberServer, 'POST', roomPath(room, '/join'), undefined, member.access_token)
  if (joined.status !== 200) throw new Error(`join: ${joined.status} ${JSON.stringify(joined.body)}`)
  return room
}

const bodies = (events: Array<{ type: string; content: { body?: string } }>) =>
  events.filter((e) => e.type === 'm.message').map((e) => e.content.body)

describe('replication under faults', () => {
  it('owner down: the replica serves history and queues sends as pending; owner back: each delivered once, in order', async () => {
    const fed: Federation = await startFederation([ACME, GLOBEX], () => UNLIMITED)
    cleanups.push(() => fed.close())
    const alice = await register(fed.get(ACME), 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    const room = await sharedRoom(fed.get(ACME), alice, fed.get(GLOBEX), bob)
    const aliceSock = track(await connect(fed.get(ACME), alice))
    aliceSock.send({ type: 'send', txn_id: 'a0', room, event_type: 'm.message', content: { body: 'before' } })
    await aliceSock.next((f) => f.type === 'sent' && f.txn_id === 'a0')
    const bobSock = track(await connect(fed.get(GLOBEX), bob))
    const headAt = (name: string) => visibleHead(fed.get(name), room)
    await waitUntil(() => headAt(GLOBEX) === headAt(ACME), 10_000)
    aliceSock.close()

    await fed.stop(ACME)
    // The replica still answers history from its copy.
    const seen = await fullHistory(fed.get(GLOBEX), bob.access_token, room)
    expect(bodies(seen)).toEqual(['before'])
    // Sends wait as pending, durably, in the origin's outbox.
    for (let i = 0; i < 5; i++)
      bobSock.send({
        type: 'send',
        txn_id: `b${i}`,
        room,
        event_type: 'm.message',
        content: { body: `while down ${i}` },
      })
    for (let i = 0; i < 5; i++) expect((await bobSock.next((f) => f.txn_id === `b${i}`)).type).toBe('pending')

    await fed.start(ACME)
    const sent = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        bobSock.next((f) => f.type === 'sent' && f.txn_id === `b${i}`, 15_000),
      ),
    )
    const seqs = sent.map((f) => f.seq as number)
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs)
    const last = Math.max(...seqs)
    await bobSock.next((f) => f.type === 'event' && f.room === room && f.seq === last, 15_000)
    const owner = await fullHistory(fed.get(ACME), alice.access_token, room)
    const replica = await fullHistory(fed.get(GLOBEX), bob.access_token, room)
    expect(bodies(owner)).toEqual(['before', ...Array.from({ length: 5 }, (_, i) => `while down ${i}`)])
    expect(replica.map((e) => e.event_id)).toEqual(owner.map((e) => e.event_id))
    // Answered submissions stay a week (a device retrying its txn still gets the answer), then go.
    const outbox = fed.get(GLOBEX).services
    expect(outbox.replication.outbox.purgeAnswered()).toBe(0)
    bobSock.send({
      type: 'send',
      txn_id: 'b0',
      room,
      event_type: 'm.message',
      content: { body: 'while down 0' },
    })
    expect(await bobSock.next((f) => f.txn_id === 'b0')).toMatchObject({ type: 'sent', seq: seqs[0] })
    expect(outbox.repos.replication.outboxPurge(Date.now() + 8 * 24 * 3600_000)).toBe(6)
  }, 60_000)

  it('FLT-2: a replica down while 1,000 events go into 5 rooms (the owner restarting once) ends with exactly those, in order', async () => {
    const fed: Federation = await startFederation([ACME, GLOBEX], () => UNLIMITED)
    cleanups.push(() => fed.close())
    const alice = await register(fed.get(ACME), 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    const rooms: string[] = []
    for (let r = 0; r < 5; r++) rooms.push(await sharedRoom(fed.get(ACME), alice, fed.get(GLOBEX), bob))
    await fed.stop(GLOBEX)

    const send = async (from: number, to: number) => {
      const sock = await connect(fed.get(ACME), alice)
      for (let i = from; i < to; i++) {
        const room = rooms[i % 5]!
        sock.send({
          type: 'send',
          txn_id: `m${i}`,
          room,
          event_type: 'm.message',
          content: { body: `m${i}` },
        })
      }
      for (let i = from; i < to; i++)
        expect((await sock.next((f) => f.txn_id === `m${i}`, 30_000)).type).toBe('sent')
      sock.close()
    }
    await send(0, 500)
    await fed.stop(ACME) // the owner restarts once while the replica is away
    await fed.start(ACME)
    await send(500, 1000)

    const globex = await fed.start(GLOBEX)
    const ownerHeads = rooms.map((r) => fed.get(ACME).services.repos.rooms.get(r)!.last_seq)
    await waitUntil(() => rooms.every((r, i) => visibleHead(globex, r) === ownerHeads[i]), 30_000)
    for (let r = 0; r < 5; r++) {
      const owner = await fullHistory(fed.get(ACME), alice.access_token, rooms[r]!)
      const replica = await fullHistory(globex, bob.access_token, rooms[r]!)
      expect(replica.map((e) => e.event_id)).toEqual(owner.map((e) => e.event_id))
      const expected = Array.from({ length: 200 }, (_, k) => `m${k * 5 + r}`)
      expect(bodies(replica)).toEqual(expected)
    }
    // The owner's cursors caught up, so nothing is pending for the peer any more.
    await waitUntil(() => fed.get(ACME).services.replication.owner.peersBehind().length === 0, 10_000)
  }, 120_000)

  it('a replica killed with SIGKILL mid-stream keeps everything it acknowledged and catches up after restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'parley-fed-kill-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const [acmePort, globexPort] = [await freePort(), await freePort()]
    const acmeUrl = `http://127.0.0.1:${acmePort}`
    const globexUrl = `http://127.0.0.1:${globexPort}`
    const acme = await startTestServer({
      serverName: ACME,
      port: acmePort,
      peers: { [GLOBEX]: globexUrl },
      federation: FAST_FEDERATION,
      ...UNLIMITED,
    })
    cleanups.push(() => acme.stop())
    const globexDir = join(dir, 'globex')
    const globexConfig = { peers: { [ACME]: acmeUrl }, federation: FAST_FEDERATION }
    let globex = await spawnHomeserver(GLOBEX, globexPort, globexDir, globexConfig)
    cleanups.push(() => globex.kill())

    const alice = await register(acme, 'alice')
    const bob = await register({ url: globexUrl }, 'bob')
    // The invite reaches bob through his own server (live: he is connected first); then he joins there.
    const bobSock = track(await connect({ url: globexUrl }, bob))
    const room = await createRoom(acme, alice, { kind: 'group', invite: [bob.user_id] })
    await bobSock.next((f) => f.type === 'event' && f.room === room, 10_000)
    bobSock.close()
    const joined = await http(
      { url: globexUrl },
      'POST',
      roomPath(room, '/join'),
      undefined,
      bob.access_token,
    )
    expect(joined.status).toBe(200)

    const TOTAL = 2000
    const sock = track(await connect(acme, alice))
    for (let i = 0; i < TOTAL; i++)
      sock.send({ type: 'send', txn_id: `k${i}`, room, event_type: 'm.message', content: { body: `k${i}` } })
    // Kill the replica once it has acknowledged part of the stream.
    await waitUntil(
      () => (acme.services.repos.replication.cursor(GLOBEX, room)?.acked_seq ?? 0) > 300,
      30_000,
      5,
    )
    await globex.kill()
    const acked = acme.services.repos.replication.cursor(GLOBEX, room)!.acked_seq
    const db = new Database(join(globexDir, 'homeserver.db'))
    const held = (
      db.prepare('SELECT last_seq FROM rooms WHERE room_id = ?').get(room) as { last_seq: number }
    ).last_seq
    db.close()
    expect(held).toBeGreaterThanOrEqual(acked)

    await sock.next((f) => f.type === 'sent' && f.txn_id === `k${TOTAL - 1}`, 30_000)
    globex = await spawnHomeserver(GLOBEX, globexPort, globexDir, globexConfig)
    const head = acme.services.repos.rooms.get(room)!.last_seq
    await waitUntil(
      () => (acme.services.repos.replication.cursor(GLOBEX, room)?.acked_seq ?? 0) === head,
      30_000,
    )
    const owner = await fullHistory(acme, alice.access_token, room)
    const replica = await fullHistory({ url: globexUrl }, bob.access_token, room)
    expect(replica.map((e) => e.event_id)).toEqual(owner.map((e) => e.event_id))
    expect(bodies(replica)).toEqual(Array.from({ length: TOTAL }, (_, i) => `k${i}`))
  }, 120_000)

  it('a server re-invited after its cursor was dropped catches up across a gap longer than the send window', async () => {
    const fed: Federation = await startFederation([ACME, GLOBEX], () => UNLIMITED)
    cleanups.push(() => fed.close())
    const acme = fed.get(ACME)
    const alice = await register(acme, 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    const room = await sharedRoom(acme, alice, fed.get(GLOBEX), bob)
    expect(
      (await http(fed.get(GLOBEX), 'POST', roomPath(room, '/leave'), undefined, bob.access_token)).status,
    ).toBe(200)
    await waitUntil(() => acme.services.repos.replication.cursor(GLOBEX, room) === undefined, 10_000)
    // More than the 2,000-event window happens while globex is out of the room.
    const sock = await connect(acme, alice)
    for (let i = 0; i < 2100; i++)
      sock.send({ type: 'send', txn_id: `g${i}`, room, event_type: 'm.message', content: { body: `g${i}` } })
    for (let i = 0; i < 2100; i++) await sock.next((f) => f.txn_id === `g${i}`, 30_000)
    sock.close()
    const invite = await http(
      acme,
      'POST',
      roomPath(room, '/invite'),
      { user_id: bob.user_id },
      alice.access_token,
    )
    expect(invite.status).toBe(200)
    const head = acme.services.repos.rooms.get(room)!.last_seq
    // globex holds the room up to bob's leave: the snapshot is new events to it, it fetches the gap.
    await waitUntil(() => visibleHead(fed.get(GLOBEX), room) === head, 30_000)
    expect(fed.get(GLOBEX).services.repos.memberships.get(room, bob.user_id)?.membership).toBe('invite')
  }, 120_000)

  it('invited and uninvited while away: the cursor is dropped at the next link, no snapshot, no redial loop', async () => {
    const fed: Federation = await startFederation([ACME, GLOBEX])
    cleanups.push(() => fed.close())
    const acme = fed.get(ACME)
    const alice = await register(acme, 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    await fed.stop(GLOBEX)
    const room = await createRoom(acme, alice, { kind: 'group', invite: [bob.user_id] })
    const kick = await http(
      acme,
      'POST',
      roomPath(room, '/kick'),
      { user_id: bob.user_id },
      alice.access_token,
    )
    expect(kick.status).toBe(200)
    expect(acme.services.repos.replication.cursor(GLOBEX, room)?.until_seq).not.toBeNull()
    const globex = await fed.start(GLOBEX)
    await globex.services.links.ensureLink(ACME)
    await waitUntil(() => acme.services.repos.replication.cursor(GLOBEX, room) === undefined, 10_000)
    expect(globex.services.repos.rooms.get(room)).toBeUndefined()
    expect(acme.services.replication.owner.peersBehind()).toEqual([])
    expect([...globex.services.replication.stats.faults.keys()]).toEqual([])
  }, 60_000)

  it('a server with pending submissions dials the owner when it starts, without being asked', async () => {
    const fed: Federation = await startFederation([ACME, GLOBEX])
    cleanups.push(() => fed.close())
    const alice = await register(fed.get(ACME), 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    const room = await sharedRoom(fed.get(ACME), alice, fed.get(GLOBEX), bob)
    // globex has acknowledged everything, so acme owes it nothing when it restarts.
    const owner = fed.get(ACME).services.repos
    await waitUntil(
      () => owner.replication.cursor(GLOBEX, room)?.acked_seq === owner.rooms.get(room)!.last_seq,
    )
    await fed.stop(ACME)
    const bobSock = await connect(fed.get(GLOBEX), bob)
    bobSock.send({ type: 'send', txn_id: 'p1', room, event_type: 'm.message', content: { body: 'queued' } })
    expect((await bobSock.next((f) => f.txn_id === 'p1')).type).toBe('pending')
    bobSock.close()
    // Both go down; the owner comes back first and has nothing for globex, so it does not dial it.
    await fed.stop(GLOBEX)
    const acme = await fed.start(ACME)
    expect(acme.services.replication.owner.peersBehind()).toEqual([])
    // globex starts with a pending submission: it dials acme by itself.
    await fed.start(GLOBEX)
    await waitUntil(() => visibleHead(acme, room) > 5, 15_000)
    const history = await fullHistory(acme, alice.access_token, room)
    expect(bodies(history)).toEqual(['queued'])
  }, 60_000)
})
