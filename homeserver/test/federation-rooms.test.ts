/**
 * Owner-sequenced rooms across real homeservers (docs/federation.md, "Replication"): remote invites
 * and joins with a snapshot, remote sends (pending, then sent), fan-out to every server with a member,
 * history from the replica.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  connect,
  createRoom,
  fullHistory,
  http,
  register,
  roomPath,
  sendText,
  waitUntil,
  type TestSocket,
} from './helpers.ts'
import { startFederation, visibleHead, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
const INITECH = 'initech.localhost'

let fed: Federation | null = null
const sockets: TestSocket[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close()
  await fed?.close()
  fed = null
})

function track(sock: TestSocket): TestSocket {
  sockets.push(sock)
  return sock
}

/** Waits for the live event of `type` with the given body (or any) in `room`. */
function nextEvent(sock: TestSocket, room: string, body?: string) {
  return sock.next(
    (f) =>
      f.type === 'event' &&
      f.room === room &&
      (body === undefined || (f.event as { content: { body?: string } }).content.body === body),
    10_000,
  )
}

describe('federated rooms', () => {
  it('a DM across two organisations: invite, join, messages both ways, history on both sides', async () => {
    fed = await startFederation([ACME, GLOBEX], () => (process.env.FED_DEBUG ? { logLevel: 'debug' } : {}))
    const acme = fed.get(ACME)
    const globex = fed.get(GLOBEX)
    const alice = await register(acme, 'alice')
    const bob = await register(globex, 'bob')
    const bobSock = track(await connect(globex, bob))
    const room = await createRoom(acme, alice, { kind: 'dm', invite: [bob.user_id] })

    // The invite reaches bob on his own server.
    const invite = await bobSock.next(
      (f) => f.type === 'event' && f.room === room && (f.event as { type: string }).type === 'm.member',
      10_000,
    )
    expect((invite.event as { content: { membership: string } }).content.membership).toBe('invite')
    const rooms = await http<{ rooms: Array<{ room_id: string; membership: string }> }>(
      globex,
      'GET',
      '/api/v1/rooms',
      undefined,
      bob.access_token,
    )
    expect(rooms.body.rooms.find((r) => r.room_id === room)?.membership).toBe('invite')

    const joined = await http(globex, 'POST', roomPath(room, '/join'), undefined, bob.access_token)
    expect(joined.status).toBe(200)
    // Read-your-writes: the answer comes once bob's own server holds the join, not just the owner.
    expect(globex.services.repos.memberships.get(room, bob.user_id)?.membership).toBe('join')

    const aliceSock = track(await connect(acme, alice))
    const toBob = nextEvent(bobSock, room, 'hi bob')
    expect((await sendText(aliceSock, room, 'hi bob')).type).toBe('sent')
    await toBob

    const toAlice = nextEvent(aliceSock, room, 'hi alice')
    bobSock.send({ type: 'send', txn_id: 'b1', room, event_type: 'm.message', content: { body: 'hi alice' } })
    const pending = await bobSock.next((f) => f.txn_id === 'b1')
    expect(pending.type).toBe('pending')
    const sent = await bobSock.next((f) => f.type === 'sent' && f.txn_id === 'b1', 10_000)
    expect(sent.event_id).toBe(pending.event_id)
    await toAlice
    await nextEvent(bobSock, room, 'hi alice') // the owner's copy comes back to bob's replica

    const ownerView = await fullHistory(acme, alice.access_token, room)
    const replicaView = await fullHistory(globex, bob.access_token, room)
    expect(replicaView.map((e) => e.event_id)).toEqual(ownerView.map((e) => e.event_id))
    expect(ownerView.filter((e) => e.type === 'm.message').map((e) => e.content.body)).toEqual([
      'hi bob',
      'hi alice',
    ])
    // A repeated txn is answered with the same event, not a second one.
    bobSock.send({ type: 'send', txn_id: 'b1', room, event_type: 'm.message', content: { body: 'hi alice' } })
    const again = await bobSock.next((f) => f.txn_id === 'b1' && f.type !== 'pending')
    expect(again).toMatchObject({ type: 'sent', event_id: sent.event_id, seq: sent.seq })
  }, 30_000)

  it('a group with members on three servers sees one order everywhere', async () => {
    fed = await startFederation([ACME, GLOBEX, INITECH])
    const [a, b, c] = [fed.get(ACME), fed.get(GLOBEX), fed.get(INITECH)]
    const alice = await register(a, 'alice')
    const bob = await register(b, 'bob')
    const carol = await register(c, 'carol')
    // Connected (and synced) first, so the invites arrive live.
    const bobSock = track(await connect(b, bob))
    const carolSock = track(await connect(c, carol))
    const room = await createRoom(a, alice, {
      kind: 'group',
      name: 'tri',
      invite: [bob.user_id, carol.user_id],
    })
    await bobSock.next((f) => f.type === 'event' && f.room === room, 10_000)
    await carolSock.next((f) => f.type === 'event' && f.room === room, 10_000)
    expect((await http(b, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).status).toBe(200)
    expect((await http(c, 'POST', roomPath(room, '/join'), undefined, carol.access_token)).status).toBe(200)
    const aliceSock = track(await connect(a, alice))

    const N = 20
    for (let i = 0; i < N; i++) {
      aliceSock.send({
        type: 'send',
        txn_id: `a${i}`,
        room,
        event_type: 'm.message',
        content: { body: `a${i}` },
      })
      bobSock.send({
        type: 'send',
        txn_id: `b${i}`,
        room,
        event_type: 'm.message',
        content: { body: `b${i}` },
      })
      carolSock.send({
        type: 'send',
        txn_id: `c${i}`,
        room,
        event_type: 'm.message',
        content: { body: `c${i}` },
      })
    }
    await Promise.all([
      aliceSock.next((f) => f.type === 'sent' && f.txn_id === `a${N - 1}`, 15_000),
      bobSock.next((f) => f.type === 'sent' && f.txn_id === `b${N - 1}`, 15_000),
      carolSock.next((f) => f.type === 'sent' && f.txn_id === `c${N - 1}`, 15_000),
    ])
    const owner = await fullHistory(a, alice.access_token, room)
    const messages = owner.filter((e) => e.type === 'm.message')
    expect(messages).toHaveLength(3 * N)
    const lastSeq = owner.at(-1)!.seq
    // Each replica converges on exactly the owner's log.
    for (const [server, user, sock] of [
      [b, bob, bobSock],
      [c, carol, carolSock],
    ] as const) {
      await sock.next((f) => f.type === 'event' && f.room === room && f.seq === lastSeq, 15_000)
      const view = await fullHistory(server, user.access_token, room)
      expect(view.map((e) => e.event_id)).toEqual(owner.map((e) => e.event_id))
    }
    // Per-sender order is kept.
    for (const who of ['a', 'b', 'c']) {
      const mine = messages.filter((e) => e.content.body!.startsWith(who)).map((e) => e.content.body)
      expect(mine).toEqual(Array.from({ length: N }, (_, i) => `${who}${i}`))
    }
  }, 60_000)

  it('servers that start sharing a room learn who in it is online; a peer that goes away leaves its users offline', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const [a, b] = [fed.get(ACME), fed.get(GLOBEX)]
    const alice = await register(a, 'alice')
    const bob = await register(b, 'bob')
    const carol = await register(a, 'carol') // online, but in no room with bob
    track(await connect(a, alice))
    track(await connect(a, carol))
    const bobSock = track(await connect(b, bob))
    const ask = (server: typeof a, token: string, users: string[]) =>
      http<{ presence: Record<string, string> }>(
        server,
        'GET',
        `/api/v1/presence?users=${users.join(',')}`,
        undefined,
        token,
      )
    expect((await ask(b, bob.access_token, [alice.user_id])).body.presence[alice.user_id]).toBe('offline')

    const room = await createRoom(a, alice, { kind: 'dm', invite: [bob.user_id] })
    await bobSock.next((f) => f.type === 'event' && f.room === room, 10_000)
    expect((await http(b, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).status).toBe(200)

    await expect
      .poll(async () => (await ask(b, bob.access_token, [alice.user_id])).body.presence[alice.user_id], {
        timeout: 10_000,
      })
      .toBe('online')
    await expect
      .poll(async () => (await ask(a, alice.access_token, [bob.user_id])).body.presence[bob.user_id], {
        timeout: 10_000,
      })
      .toBe('online')
    // Only the room's members were announced: carol's status stayed on acme.
    expect(b.services.ephemeral.presenceOf(carol.user_id)).toBe('offline')

    // globex goes away: nobody speaks for bob any more, so acme shows him offline, not frozen online.
    await fed.stop(GLOBEX)
    await expect
      .poll(async () => (await ask(a, alice.access_token, [bob.user_id])).body.presence[bob.user_id], {
        timeout: 10_000,
      })
      .toBe('offline')

    // globex comes back (its memory of presence gone): the new link brings it alice's status, which has
    // not changed since and would otherwise never be sent.
    await fed.start(GLOBEX)
    const b2 = fed.get(GLOBEX)
    await expect
      .poll(async () => (await ask(b2, bob.access_token, [alice.user_id])).body.presence[alice.user_id], {
        timeout: 15_000,
      })
      .toBe('online')
  }, 30_000)

  it('typing, read receipts and presence cross servers; a server cannot speak for the users of another', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const [a, b] = [fed.get(ACME), fed.get(GLOBEX)]
    const alice = await register(a, 'alice')
    const bob = await register(b, 'bob')
    const bobSock = track(await connect(b, bob))
    const room = await createRoom(a, alice, { kind: 'dm', invite: [bob.user_id] })
    await bobSock.next((f) => f.type === 'event' && f.room === room, 10_000)
    expect((await http(b, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).status).toBe(200)
    const aliceSock = track(await connect(a, alice))

    bobSock.send({ type: 'typing', room, typing: true })
    expect(await aliceSock.next((f) => f.type === 'typing' && f.room === room, 10_000)).toMatchObject({
      user_ids: [bob.user_id],
    })
    const sent = await sendText(aliceSock, room, 'read me')
    await nextEvent(bobSock, room, 'read me')
    bobSock.send({ type: 'receipt', room, event_id: sent.event_id })
    expect(await aliceSock.next((f) => f.type === 'receipt' && f.room === room, 10_000)).toMatchObject({
      user_id: bob.user_id,
      event_id: sent.event_id,
    })
    bobSock.send({ type: 'presence', status: 'away' })
    expect(
      await aliceSock.next((f) => f.type === 'presence' && f.user_id === bob.user_id, 10_000),
    ).toMatchObject({
      status: 'away',
    })

    // globex claims alice (an acme user) is typing: refused and counted, not shown to anyone.
    b.services.links.send(ACME, {
      type: 'ephemeral',
      kind: 'typing',
      room,
      user_id: alice.user_id,
      typing: true,
    })
    await waitUntil(() => (a.services.replication.stats.faults.get('spoofed_user') ?? 0) === 1, 10_000)
    expect(
      aliceSock.frames.some((f) => f.type === 'typing' && (f.user_ids as string[]).includes(alice.user_id)),
    ).toBe(false)
  }, 30_000)

  it('a server whose last member leaves (or is kicked) gets that event, then nothing more', async () => {
    fed = await startFederation([ACME, GLOBEX, INITECH])
    const [a, b, c] = [fed.get(ACME), fed.get(GLOBEX), fed.get(INITECH)]
    const alice = await register(a, 'alice')
    const bob = await register(b, 'bob')
    const carol = await register(c, 'carol')
    const room = await createRoom(a, alice, { kind: 'group', invite: [bob.user_id, carol.user_id] })
    for (const [server, user] of [
      [b, bob],
      [c, carol],
    ] as const) {
      await waitUntil(() => server.services.repos.rooms.get(room) !== undefined, 10_000)
      expect((await http(server, 'POST', roomPath(room, '/join'), undefined, user.access_token)).status).toBe(
        200,
      )
    }
    const replicas = () => [...a.services.replication.owner.peersOf(room)].sort()
    expect(replicas()).toEqual([GLOBEX, INITECH])

    // carol leaves on her own server; bob is kicked by alice.
    expect((await http(c, 'POST', roomPath(room, '/leave'), undefined, carol.access_token)).status).toBe(200)
    const kick = await http(a, 'POST', roomPath(room, '/kick'), { user_id: bob.user_id }, alice.access_token)
    expect(kick.status).toBe(200)
    const kickSeq = a.services.repos.rooms.get(room)!.last_seq
    // Both servers learn of their user's departure, then stop replicating the room.
    await waitUntil(() => replicas().length === 0, 10_000)
    expect(b.services.repos.memberships.get(room, bob.user_id)?.membership).toBe('leave')
    expect(c.services.repos.memberships.get(room, carol.user_id)?.membership).toBe('leave')
    expect(visibleHead(b, room)).toBe(kickSeq)
    expect(a.services.repos.replication.cursor(GLOBEX, room)).toBeUndefined()

    const aliceSock = track(await connect(a, alice))
    const after = await sendText(aliceSock, room, 'only acme now')
    expect(after.type).toBe('sent')
    // Nothing more reaches the servers that left: their copies end at the departures.
    expect(b.services.repos.rooms.get(room)!.last_seq).toBe(kickSeq)
    expect(c.services.repos.rooms.get(room)!.last_seq).toBeLessThan(kickSeq)
    // bob reads the room up to his kick and no further, from his own server.
    const seen = await fullHistory(b, bob.access_token, room)
    expect(seen.at(-1)!.seq).toBe(kickSeq)
  }, 30_000)
})
