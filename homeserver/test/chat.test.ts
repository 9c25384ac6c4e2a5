import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  TestSocket,
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

  it('lets an offline user catch up through paged sync in order, exactly once', async () => {
    const room = await groupWith(hs, alice, [bob])
    // Bob's cursor before he goes offline.
    const b0 = await connect(hs, bob)
    b0.send({ type: 'sync', since: 0 })
    const cursor = (await b0.type('sync')).next as number
    b0.close()
    const a = await connect(hs, alice)
    for (let i = 0; i < 30; i++) await sendText(a, room, `m${i}`)
    // Bob comes back and pages through with a small page size.
    const b = new TestSocket(hs.url)
    await b.opened()
    b.send({ type: 'auth', token: bob.access_token })
    await b.type('ready')
    const bodies: string[] = []
    const positions: number[] = []
    let since = cursor
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(20)
      b.send({ type: 'sync', since, limit: 7 })
      const page = await b.type('sync')
      for (const e of page.events as Array<{ stream_pos: number; content: { body?: string } }>) {
        positions.push(e.stream_pos)
        if (e.content.body) bodies.push(e.content.body)
      }
      since = page.next as number
      if (page.done) break
    }
    expect(bodies).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`))
    expect(new Set(positions).size).toBe(positions.length)
    expect([...positions].sort((x, y) => x - y)).toEqual(positions)
    // Live from here on: the next message arrives as an event frame.
    const sent = await sendText(a, room, 'live')
    await b.next((f) => f.type === 'event' && (f.event as { event_id: string }).event_id === sent.event_id)
    a.close()
    b.close()
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

describe('sync pages are bounded in bytes', () => {
  it('splits a backlog of large messages into pages under a quarter of the send buffer, losing nothing', async () => {
    const small = await startTestServer({ limits: { sendBufferBytes: 64 * 1024 } })
    try {
      const [u, v] = await Promise.all([register(small), register(small)])
      const room = await groupWith(small, u, [v])
      const a = await connect(small, u)
      const big = 'x'.repeat(10_000)
      for (let i = 0; i < 20; i++) await sendText(a, room, `${i} ${big}`)
      a.close()
      const b = new TestSocket(small.url)
      await b.opened()
      b.send({ type: 'auth', token: v.access_token })
      await b.type('ready')
      const got: string[] = []
      let since = 0
      for (let pages = 0; ; pages++) {
        expect(pages).toBeLessThan(50)
        b.send({ type: 'sync', since })
        const page = await b.type('sync')
        expect(JSON.stringify(page).length).toBeLessThan(16 * 1024 + 11_000)
        for (const e of page.events as Array<{ content: { body?: string } }>)
          if (e.content.body) got.push(e.content.body.split(' ')[0]!)
        since = page.next as number
        if (page.done) break
      }
      expect(got).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
      b.close()
    } finally {
      await small.stop()
    }
  })

  it('GET /presence tells the status of people who share a room, offline for strangers; DMs name their peer', async () => {
    const carl = await register(hs, 'carl')
    const dina = await register(hs, 'dina')
    const stranger = await register(hs, 'stranger')
    const dm = await createRoom(hs, carl, { kind: 'dm', invite: [dina.user_id] })
    await http(hs, 'POST', roomPath(dm, '/join'), {}, dina.access_token)
    const d = await connect(hs, dina)
    const s = await connect(hs, stranger)
    const ask = (users: string[], token = carl.access_token) =>
      http<{ presence: Record<string, string> }>(
        hs,
        'GET',
        `/api/v1/presence?users=${users.join(',')}`,
        undefined,
        token,
      )

    expect((await ask([dina.user_id, stranger.user_id, carl.user_id])).body.presence).toEqual({
      [dina.user_id]: 'online',
      [stranger.user_id]: 'offline', // online, but shares no room with carl
      [carl.user_id]: 'offline',
    })
    d.send({ type: 'presence', status: 'away' })
    await expect.poll(async () => (await ask([dina.user_id])).body.presence[dina.user_id]).toBe('away')
    d.close()
    await expect.poll(async () => (await ask([dina.user_id])).body.presence[dina.user_id]).toBe('offline')

    const list = await http<{ rooms: Array<{ room_id: string; dm_peer?: string }> }>(
      hs,
      'GET',
      '/api/v1/rooms',
      undefined,
      carl.access_token,
    )
    expect(list.body.rooms.find((r) => r.room_id === dm)?.dm_peer).toBe(dina.user_id)
    const group = await groupWith(hs, carl, [dina])
    const again = await http<{ rooms: Array<{ room_id: string; dm_peer?: string }> }>(
      hs,
      'GET',
      '/api/v1/rooms',
      undefined,
      dina.access_token,
    )
    expect(again.body.rooms.find((r) => r.room_id === dm)?.dm_peer).toBe(carl.user_id)
    expect(again.body.rooms.find((r) => r.room_id === group)).not.toHaveProperty('dm_peer')

    for (const bad of [
      '',
      'not-a-user',
      Array.from({ length: 101 }, (_, i) => `@u${i}:x.example`).join(','),
    ]) {
      const res = await http(
        hs,
        'GET',
        `/api/v1/presence?users=${encodeURIComponent(bad)}`,
        undefined,
        carl.access_token,
      )
      expect(res.status, bad.slice(0, 20)).toBe(400)
      expect(res.body).toMatchObject({ errcode: 'P_BAD_REQUEST' })
    }
    expect((await http(hs, 'GET', `/api/v1/presence?users=${dina.user_id}`)).status).toBe(401)
    s.close()
  })
})
