/**
 * To-device messages (DESIGN.md section 5; E2E key sharing): durable per-device inboxes, delivered
 * until acknowledged, to one device or all of a user's (`*`), idempotent by txn; across servers
 * through the sender's outbox, once per message id, only from the sender's own server.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  connect,
  login,
  register,
  startTestServer,
  waitUntil,
  type TestServer,
  type TestSocket,
} from './helpers.ts'
import { startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function track(sock: TestSocket): TestSocket {
  cleanups.push(async () => sock.close())
  return sock
}

async function server(): Promise<TestServer> {
  const s = await startTestServer()
  cleanups.push(() => s.stop())
  return s
}

describe('to-device messages', () => {
  it('reaches one device or all of a user, offline devices when they come back, until acknowledged', async () => {
    const s = await server()
    const alice = await register(s, 'alice')
    const bob = await register(s, 'bob')
    const bob2 = (await login(s, 'bob')).body
    const aliceSock = track(await connect(s, alice))
    const bobSock = track(await connect(s, bob))

    aliceSock.send({
      type: 'to_device',
      txn_id: 'k1',
      event_type: 'e2e.room_key',
      messages: { [bob.user_id]: { [bob.device_id]: { key: 'for device one' } } },
    })
    expect(await aliceSock.next((f) => f.txn_id === 'k1')).toEqual({ type: 'to_device_sent', txn_id: 'k1' })
    const got = await bobSock.next((f) => f.type === 'to_device')
    expect(got).toMatchObject({
      sender: alice.user_id,
      sender_device: alice.device_id,
      event_type: 'e2e.room_key',
      content: { key: 'for device one' },
    })

    // To every device of bob: the second one is offline and gets it when it connects.
    aliceSock.send({
      type: 'to_device',
      txn_id: 'k2',
      event_type: 'e2e.room_key',
      messages: { [bob.user_id]: { '*': { key: 'for all' } } },
    })
    await aliceSock.next((f) => f.txn_id === 'k2')
    // A retried txn is stored once.
    aliceSock.send({
      type: 'to_device',
      txn_id: 'k2',
      event_type: 'e2e.room_key',
      messages: { [bob.user_id]: { '*': { key: 'for all' } } },
    })
    await aliceSock.next((f) => f.txn_id === 'k2')
    expect(s.services.repos.toDevice.count(bob2.device_id)).toBe(1)

    const second = track(await connect(s, bob2))
    expect(await second.next((f) => f.type === 'to_device')).toMatchObject({ content: { key: 'for all' } })
    // Not acknowledged: it comes again on the next connection.
    second.close()
    const third = track(await connect(s, bob2))
    const again = await third.next((f) => f.type === 'to_device')
    expect(again).toMatchObject({ content: { key: 'for all' } })
    third.send({ type: 'to_device_ack', upto: again.id })
    await waitUntil(() => s.services.repos.toDevice.count(bob2.device_id) === 0)
    third.close()
    const fourth = track(await connect(s, bob2))
    fourth.send({ type: 'ping', id: 'p' })
    await fourth.next((f) => f.type === 'pong')
    expect(fourth.frames.filter((f) => f.type === 'to_device')).toEqual([])
    // The first device still has both until it acknowledges.
    expect(s.services.repos.toDevice.count(bob.device_id)).toBe(2)
  })

  it('refuses oversized content and unknown shapes; unknown recipients are skipped silently', async () => {
    const s = await server()
    const alice = await register(s, 'alice')
    const sock = track(await connect(s, alice))
    sock.send({
      type: 'to_device',
      txn_id: 'big',
      event_type: 'x',
      messages: { [alice.user_id]: { '*': { pad: 'x'.repeat(70_000) } } },
    })
    expect(await sock.next((f) => f.txn_id === 'big')).toMatchObject({
      type: 'error',
      errcode: 'P_TOO_LARGE',
    })
    sock.send({ type: 'to_device', txn_id: 'bad', event_type: 'x', messages: { 'not a user': {} } })
    expect(await sock.next((f) => f.type === 'error')).toMatchObject({ errcode: 'P_BAD_REQUEST' })
    sock.send({
      type: 'to_device',
      txn_id: 'nobody',
      event_type: 'x',
      messages: { '@nobody:acme.localhost': { '*': { a: 1 } } },
    })
    expect(await sock.next((f) => f.txn_id === 'nobody')).toMatchObject({ type: 'to_device_sent' })
  })
})

describe('to-device messages across servers', () => {
  it('are stored in the outbox while the recipient server is down and delivered once it is back', async () => {
    const fed: Federation = await startFederation([ACME, GLOBEX])
    cleanups.push(() => fed.close())
    const alice = await register(fed.get(ACME), 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    await fed.stop(GLOBEX)
    const aliceSock = track(await connect(fed.get(ACME), alice))
    aliceSock.send({
      type: 'to_device',
      txn_id: 'x1',
      event_type: 'e2e.room_key',
      messages: { [bob.user_id]: { '*': { key: 'across' } } },
    })
    expect(await aliceSock.next((f) => f.txn_id === 'x1')).toMatchObject({ type: 'to_device_sent' })
    expect(fed.get(ACME).services.repos.toDevice.outboxPeers()).toEqual([GLOBEX])

    await fed.start(GLOBEX)
    const bobSock = track(await connect(fed.get(GLOBEX), bob))
    const got = await bobSock.next((f) => f.type === 'to_device', 15_000)
    expect(got).toMatchObject({
      sender: alice.user_id,
      sender_device: alice.device_id,
      content: { key: 'across' },
    })
    await waitUntil(() => fed.get(ACME).services.repos.toDevice.outboxPeers().length === 0, 10_000)
    bobSock.send({ type: 'to_device_ack', upto: got.id })

    // A re-sent message id is stored once; a server cannot send on behalf of another's users.
    const b = fed.get(GLOBEX).services
    const link = fed.get(ACME).services.links
    const frame = {
      type: 'to_device',
      message_id: 'AAAAAAAAAAAAAAAAAAAAAA',
      sender: alice.user_id,
      sender_device: alice.device_id,
      event_type: 'e2e.room_key',
      messages: { [bob.user_id]: { '*': { key: 'dup' } } },
    }
    link.send(GLOBEX, frame)
    link.send(GLOBEX, frame)
    fed.get(GLOBEX).services.links.send(ACME, { ...frame, message_id: 'BBBBBBBBBBBBBBBBBBBBBB' })
    link.send(GLOBEX, { ...frame, message_id: 'CCCCCCCCCCCCCCCCCCCCCC', sender: '@mallory:globex.localhost' })
    await waitUntil(() => (b.replication.stats.faults.get('spoofed_sender') ?? 0) === 1, 10_000)
    await waitUntil(
      () => (fed.get(ACME).services.replication.stats.faults.get('spoofed_sender') ?? 0) === 1,
      10_000,
    )
    const dup = await bobSock.next(
      (f) => f.type === 'to_device' && (f.content as { key: string }).key === 'dup',
    )
    expect(dup).toBeDefined()
    expect(b.repos.toDevice.count(bob.device_id)).toBe(1) // 'across' was acknowledged; 'dup' is there once
  }, 30_000)
})
