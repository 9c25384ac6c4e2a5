import { describe, expect, it } from 'vitest'
import {
  ParleyClient,
  type ConnectionStatus,
  type IncomingEvent,
  type ParleyClientOptions,
} from './client.ts'
import { ApiError, ClientClosedError, NoSessionError, ProtocolError } from './errors.ts'
import type { FetchLike } from './http.ts'
import { MemoryStore } from './store.ts'
import {
  BASE_URL,
  FakeClock,
  READY,
  ROOM,
  aliceSession,
  authBody,
  eventId,
  fakeFetch,
  fakeWebSockets,
  liveFrame,
  makeEvent,
  nextEvent,
  type FakeSocket,
} from './test-utils.ts'

const noFetch: FetchLike = () => Promise.reject(new Error('unexpected fetch'))

/** A client for Alice over fake sockets, fetch and clock. */
async function setup(overrides: Partial<ParleyClientOptions> = {}, store = new MemoryStore()) {
  const clock = new FakeClock()
  const sockets = fakeWebSockets()
  if ((await store.getSession()) === null) await store.setSession(aliceSession(clock.now()))
  const client = new ParleyClient({
    baseUrl: BASE_URL,
    store,
    WebSocket: sockets.WebSocket,
    fetch: noFetch,
    clock,
    random: () => 0,
    ...overrides,
  })
  const statuses: ConnectionStatus[] = []
  client.on('status', (s) => statuses.push(s))
  const errors: Error[] = []
  client.on('error', (e) => errors.push(e))
  return { client, store, clock, sockets, statuses, errors }
}

/** Runs the server side of auth and an empty sync on the next socket; returns it. */
async function serveHandshake(
  sockets: ReturnType<typeof fakeWebSockets>,
  expected: { token?: string; since?: number } = {},
): Promise<FakeSocket> {
  const ws = await sockets.nextSocket()
  ws.accept()
  expect(await ws.nextFrame()).toEqual({ type: 'auth', token: expected.token ?? 'tok1' })
  ws.deliver(READY)
  expect(await ws.nextFrame()).toEqual({ type: 'sync', since: expected.since ?? 0 })
  ws.deliver({ type: 'sync', events: [], next: expected.since ?? 0, done: true })
  return ws
}

/** Connects and completes an empty first sync. */
async function online(ctx: Awaited<ReturnType<typeof setup>>): Promise<FakeSocket> {
  const connected = ctx.client.connect()
  const ws = await serveHandshake(ctx.sockets, { since: await ctx.store.getCursor() })
  await connected
  return ws
}

/** Waits until every frame delivered so far has been handled (frames are handled in order). */
async function barrier(client: ParleyClient, ws: FakeSocket): Promise<void> {
  const seen = nextEvent(client, 'typing', (t) => t.room === ROOM && t.user_ids.length === 0)
  ws.deliver({ type: 'typing', room: ROOM, user_ids: [] })
  await seen
}

describe('ParleyClient sync', () => {
  it('delivers paged sync in stream order, skips duplicates and persists the cursor', async () => {
    const store = new MemoryStore()
    await store.setCursor(2)
    const ctx = await setup({}, store)
    const { client, sockets } = ctx
    const events: IncomingEvent[] = []
    client.on('event', (e) => events.push(e))

    const connected = client.connect()
    const ws = await sockets.nextSocket()
    expect(ws.url).toBe('ws://acme.test/api/v1/ws')
    ws.accept()
    expect(await ws.nextFrame()).toEqual({ type: 'auth', token: 'tok1' })
    ws.deliver(READY)
    expect(await ws.nextFrame()).toEqual({ type: 'sync', since: 2 })

    ws.deliver({ type: 'sync', events: [makeEvent(2), makeEvent(4), makeEvent(3)], next: 4, done: false })
    expect(await ws.nextFrame()).toEqual({ type: 'sync', since: 4 })
    expect(await store.getCursor()).toBe(4)

    // A live event racing the last page is held back until the page is in, then deduplicated.
    ws.deliver(liveFrame(5))
    ws.deliver({ type: 'sync', events: [makeEvent(4), makeEvent(5)], next: 5, done: true })
    await connected
    expect(ctx.statuses).toEqual(['connecting', 'syncing', 'online'])

    ws.deliver(liveFrame(5))
    ws.deliver(liveFrame(3))
    const sixth = nextEvent(client, 'event', (e) => e.event.stream_pos === 6)
    ws.deliver(liveFrame(6))
    await sixth

    expect(events.map((e) => [e.event.stream_pos, e.live])).toEqual([
      [3, false],
      [4, false],
      [5, false],
      [6, true],
    ])
    expect(client.cursor).toBe(6)
    expect(await store.getCursor()).toBe(6)
    expect(ctx.errors).toEqual([])

    // A restarted client resumes after the persisted cursor.
    client.close()
    const again = await setup({}, store)
    void again.client.connect()
    const ws2 = await again.sockets.nextSocket()
    ws2.accept()
    await ws2.nextFrame()
    ws2.deliver(READY)
    expect(await ws2.nextFrame()).toEqual({ type: 'sync', since: 6 })
    again.client.close()
  })

  it('resyncs from the server stream head when the stored cursor is ahead of it', async () => {
    const store = new MemoryStore()
    await store.setCursor(500)
    const ctx = await setup({}, store)
    void ctx.client.connect()
    const ws = await ctx.sockets.nextSocket()
    ws.accept()
    await ws.nextFrame()
    ws.deliver(READY)
    expect(await ws.nextFrame()).toEqual({ type: 'sync', since: 100 })
    expect(ctx.errors).toHaveLength(1)
    expect(ctx.errors[0]).toBeInstanceOf(ProtocolError)
    ctx.client.close()
  })

  it('dispatches typing, receipt and presence frames as events', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    const receipt = nextEvent(ctx.client, 'receipt')
    const presence = nextEvent(ctx.client, 'presence')
    ws.deliver({ type: 'receipt', room: ROOM, user_id: '@bob:acme.test', event_id: eventId(1), seq: 1 })
    ws.deliver({ type: 'presence', user_id: '@bob:acme.test', status: 'away' })
    expect(await receipt).toEqual({ room: ROOM, user_id: '@bob:acme.test', event_id: eventId(1), seq: 1 })
    expect(await presence).toEqual({ user_id: '@bob:acme.test', status: 'away' })

    expect(ctx.client.typing(ROOM, true)).toBe(true)
    expect(ctx.client.receipt(ROOM, eventId(1))).toBe(true)
    expect(ctx.client.presence('online')).toBe(true)
    expect(ws.unreadFrames()).toEqual([
      { type: 'typing', room: ROOM, typing: true },
      { type: 'receipt', room: ROOM, event_id: eventId(1) },
      { type: 'presence', status: 'online' },
    ])
    expect(() => ctx.client.typing('not a room', true)).toThrow(TypeError)
    ctx.client.close()
    expect(ctx.client.typing(ROOM, false)).toBe(false)
  })

  it('emits to-device messages and acknowledges each; sendToDevice resolves on to_device_sent, rejects on error', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    const got = nextEvent(ctx.client, 'to_device')
    const message = {
      id: 7,
      sender: '@bob:acme.test',
      sender_device: 'BOBDEVICE001',
      event_type: 'e2e.room_key',
      content: { key: 'k' },
    }
    ws.deliver({ type: 'to_device', ...message })
    expect(await got).toEqual(message)
    expect(await ws.nextFrame()).toEqual({ type: 'to_device_ack', upto: 7 })

    const messages = { '@bob:acme.test': { '*': { key: 'k2' } } }
    const sending = ctx.client.sendToDevice('e2e.room_key', messages)
    const frame = (await ws.nextFrame()) as { txn_id: string }
    expect(frame).toMatchObject({ type: 'to_device', event_type: 'e2e.room_key', messages })
    ws.deliver({ type: 'to_device_sent', txn_id: frame.txn_id })
    await sending

    const refused = ctx.client.sendToDevice('e2e.room_key', messages)
    const second = (await ws.nextFrame()) as { txn_id: string }
    ws.deliver({ type: 'error', txn_id: second.txn_id, errcode: 'P_FORBIDDEN', error: 'no' })
    await expect(refused).rejects.toBeInstanceOf(ApiError)
    expect(() => ctx.client.sendToDevice('x', { 'not a user': {} })).toThrow(TypeError)
    ctx.client.close()
    await expect(ctx.client.sendToDevice('x', messages)).rejects.toBeInstanceOf(ClientClosedError)
  })

  it('with a to-device handler, acknowledges each message only after its handler finished, in order', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    const handled: number[] = []
    let release!: () => void
    const firstHeld = new Promise<void>((resolve) => (release = resolve))
    ctx.client.setToDeviceHandler(async (message) => {
      if (message.id === 1) await firstHeld
      if (message.id === 2) throw new Error('cannot open this one')
      handled.push(message.id)
    })
    const errors: Error[] = []
    ctx.client.on('error', (e) => errors.push(e))
    const base = { sender: '@bob:acme.test', sender_device: 'BOBDEVICE001', event_type: 'e2e.room_key' }
    for (const id of [1, 2, 3]) ws.deliver({ type: 'to_device', id, ...base, content: { n: id } })
    // Nothing is acknowledged while the first message's handler still works.
    await Promise.resolve()
    expect(ws.unreadFrames()).toEqual([])
    release()
    expect(await ws.nextFrame()).toEqual({ type: 'to_device_ack', upto: 1 })
    // The failing one is reported and acknowledged: it would fail again, and must not block the inbox.
    expect(await ws.nextFrame()).toEqual({ type: 'to_device_ack', upto: 2 })
    expect(await ws.nextFrame()).toEqual({ type: 'to_device_ack', upto: 3 })
    expect(handled).toEqual([1, 3])
    expect(errors.map((e) => e.message)).toEqual(['cannot open this one'])
    ctx.client.close()
  })

  it('drops invalid server frames, reports them and stays connected', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    ws.deliver('not json')
    ws.deliver({ type: 'event', room: 'no-room', seq: 1, stream_pos: 1, event: {} })
    ws.deliver({ type: 'surprise' })
    ws.deliver(new Uint8Array([1, 2, 3]))
    ws.deliver({ ...liveFrame(2), stream_pos: 9 })
    const third = nextEvent(ctx.client, 'event', (e) => e.event.stream_pos === 3)
    ws.deliver(liveFrame(3))
    await third

    expect(ctx.errors).toHaveLength(5)
    for (const error of ctx.errors) expect(error).toBeInstanceOf(ProtocolError)
    expect(ctx.client.status).toBe('online')
    expect(ws.closedWith).toBeUndefined()
    expect(ctx.client.cursor).toBe(3)
    ctx.client.close()
  })
})

describe('ParleyClient outbox', () => {
  it('stores a send before it goes out and resends it with the same txn_id after a reconnect', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    const sending = ctx.client.send(ROOM, 'm.message', { body: 'hi' })
    const first = await ws.nextFrame()
    expect(first).toMatchObject({
      type: 'send',
      room: ROOM,
      event_type: 'm.message',
      content: { body: 'hi' },
    })
    expect(await ctx.store.listOutbox()).toMatchObject([{ txn_id: first.txn_id, room: ROOM }])

    ws.serverClose(1006)
    expect(ctx.client.status).toBe('offline')
    ctx.clock.advance(0) // random() = 0: the full-jitter delay is 0
    const ws2 = await serveHandshake(ctx.sockets)
    const resent = await ws2.nextFrame()
    expect(resent).toEqual(first)

    const sent = nextEvent(ctx.client, 'sent')
    ws2.deliver({ type: 'sent', txn_id: first.txn_id, event_id: eventId(7), seq: 7 })
    await expect(sending).resolves.toEqual({ event_id: eventId(7), seq: 7 })
    expect(await sent).toEqual({ txn_id: first.txn_id, event_id: eventId(7), seq: 7 })
    expect(await ctx.store.listOutbox()).toEqual([])
    ctx.client.close()
  })

  it('resends the outbox of an earlier client instance after the first sync, in order', async () => {
    const before = await setup()
    const a = before.client.send(ROOM, 'm.message', { body: 'one' })
    const b = before.client.send(ROOM, 'm.message', { body: 'two' }, { txnId: 'my-txn.2' })
    await expect(before.store.listOutbox()).resolves.toHaveLength(2)
    before.client.close()
    await expect(a).rejects.toBeInstanceOf(ClientClosedError)
    await expect(b).rejects.toMatchObject({ reason: 'closed', txnId: 'my-txn.2' })
    const [one, two] = await before.store.listOutbox()

    const after = await setup({}, before.store)
    const ws = await online(after)
    expect(ws.unreadFrames()).toEqual([
      { type: 'send', txn_id: one!.txn_id, room: ROOM, event_type: 'm.message', content: { body: 'one' } },
      { type: 'send', txn_id: 'my-txn.2', room: ROOM, event_type: 'm.message', content: { body: 'two' } },
    ])
    const pending = nextEvent(after.client, 'pending')
    ws.deliver({ type: 'pending', txn_id: two!.txn_id, event_id: eventId(2) })
    expect(await pending).toEqual({ txn_id: 'my-txn.2', event_id: eventId(2) })
    expect(await after.store.listOutbox()).toHaveLength(2) // pending is not yet committed

    const sent = nextEvent(after.client, 'sent')
    ws.deliver({ type: 'sent', txn_id: one!.txn_id, event_id: eventId(1), seq: 1 })
    await sent
    expect((await after.store.listOutbox()).map((e) => e.txn_id)).toEqual(['my-txn.2'])
    after.client.close()
  })

  it('removes a permanently refused send from the outbox, rejects it and emits send_failed', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    const failed = nextEvent(ctx.client, 'send_failed')
    const sending = ctx.client.send(ROOM, 'm.message', { body: 'hi' })
    const frame = await ws.nextFrame()
    ws.deliver({ type: 'error', txn_id: frame.txn_id, errcode: 'P_FORBIDDEN', error: 'not a member' })

    await expect(sending).rejects.toMatchObject({ name: 'ApiError', errcode: 'P_FORBIDDEN', status: 403 })
    expect(await failed).toMatchObject({ txn_id: frame.txn_id, room: ROOM, event_type: 'm.message' })
    expect(await ctx.store.listOutbox()).toEqual([])
    ctx.client.close()
  })

  it('holds sends back for retry_after_ms when rate limited, then resends them in order', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    const first = ctx.client.send(ROOM, 'm.message', { body: 'one' })
    const frame = await ws.nextFrame()
    ws.deliver({
      type: 'error',
      txn_id: frame.txn_id,
      errcode: 'P_LIMIT_EXCEEDED',
      error: 'slow down',
      retry_after_ms: 2000,
    })
    await barrier(ctx.client, ws)
    const second = ctx.client.send(ROOM, 'm.message', { body: 'two' })
    await ctx.store.listOutbox()
    await barrier(ctx.client, ws)

    expect(await ctx.store.listOutbox()).toHaveLength(2)
    expect(ws.unreadFrames()).toEqual([])
    ctx.clock.advance(1999)
    await barrier(ctx.client, ws)
    expect(ws.unreadFrames()).toEqual([])

    ctx.clock.advance(1)
    expect(await ws.nextFrame()).toEqual(frame)
    const next = await ws.nextFrame()
    expect(next).toMatchObject({ type: 'send', content: { body: 'two' } })

    ws.deliver({ type: 'sent', txn_id: frame.txn_id, event_id: eventId(1), seq: 1 })
    ws.deliver({ type: 'sent', txn_id: next.txn_id, event_id: eventId(2), seq: 2 })
    await expect(first).resolves.toEqual({ event_id: eventId(1), seq: 1 })
    await expect(second).resolves.toEqual({ event_id: eventId(2), seq: 2 })
    expect(await ctx.store.listOutbox()).toEqual([])
    ctx.client.close()
  })

  it('keeps at most maxInFlight sends unanswered and sends the rest in order as answers arrive', async () => {
    const ctx = await setup({ maxInFlight: 2 })
    const ws = await online(ctx)
    const sends = [1, 2, 3, 4, 5].map((n) => ctx.client.send(ROOM, 'm.message', { body: `m${n}` }))
    await ctx.store.listOutbox()
    await barrier(ctx.client, ws)
    const bodies = (frames: Record<string, unknown>[]) =>
      frames.map((f) => (f['content'] as { body: string }).body)
    const [f1, f2] = [await ws.nextFrame(), await ws.nextFrame()]
    expect(bodies([f1!, f2!])).toEqual(['m1', 'm2'])
    expect(ws.unreadFrames()).toEqual([])

    ws.deliver({ type: 'sent', txn_id: f1!.txn_id, event_id: eventId(1), seq: 1 })
    const f3 = await ws.nextFrame()
    ws.deliver({ type: 'pending', txn_id: f2!.txn_id, event_id: eventId(2) })
    const f4 = await ws.nextFrame()
    ws.deliver({ type: 'error', txn_id: f3.txn_id, errcode: 'P_BAD_REQUEST', error: 'no' })
    const f5 = await ws.nextFrame()
    expect(bodies([f3, f4, f5])).toEqual(['m3', 'm4', 'm5'])
    await expect(sends[2]).rejects.toBeInstanceOf(ApiError)
    ctx.client.close()
  })

  it('rejects invalid send arguments without touching the outbox', async () => {
    const ctx = await setup()
    await expect(ctx.client.send('general', 'm.message', { body: 'x' })).rejects.toThrow(TypeError)
    await expect(ctx.client.send(ROOM, '', { body: 'x' })).rejects.toThrow(TypeError)
    await expect(ctx.client.send(ROOM, 'm.message', {}, { txnId: 'bad txn' })).rejects.toThrow(TypeError)
    expect(await ctx.store.listOutbox()).toEqual([])
  })

  it('close() rejects waiting sends with ClientClosedError, keeps them in the outbox and clears every timer', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    const sending = ctx.client.send(ROOM, 'm.message', { body: 'hi' })
    await ws.nextFrame()
    expect(ctx.clock.pendingDelays().length).toBeGreaterThan(0)

    ctx.client.close()
    await expect(sending).rejects.toMatchObject({ name: 'ClientClosedError', reason: 'closed' })
    expect(await ctx.store.listOutbox()).toHaveLength(1)
    expect(ctx.clock.pendingDelays()).toEqual([])
    expect(ws.closedWith).toBe(1000)
    expect(ctx.client.status).toBe('offline')
    ws.serverClose(1006) // late events of a dropped socket are ignored
    expect(ctx.clock.pendingDelays()).toEqual([])
    expect(ctx.sockets.count).toBe(1)
  })
})

describe('ParleyClient reconnection', () => {
  it('backs off with full jitter, doubling to the cap, and resets after a successful ready', async () => {
    const ctx = await setup({ random: () => 0.999, backoff: { baseMs: 500, capMs: 3000 } })
    const connected = ctx.client.connect()
    const delays: number[] = []
    for (let attempt = 0; attempt < 5; attempt++) {
      const ws = await ctx.sockets.nextSocket()
      ws.serverClose(1006)
      delays.push(...ctx.clock.pendingDelays())
      ctx.clock.advance(delays.at(-1)!)
    }
    expect(delays).toEqual([499, 999, 1998, 2997, 2997])

    await serveHandshake(ctx.sockets)
    await connected
    ctx.client.close()
    // A fresh run starts over from the base delay.
    const reconnecting = ctx.client.connect()
    const ws = await ctx.sockets.nextSocket()
    ws.accept()
    await ws.nextFrame()
    ws.deliver(READY)
    await ws.nextFrame()
    ws.serverClose(1006)
    expect(ctx.clock.pendingDelays()).toEqual([499])
    ctx.client.close()
    await expect(reconnecting).rejects.toBeInstanceOf(ClientClosedError)
  })

  it('drops the connection when the platform reports the network gone and reconnects at once when it is back', async () => {
    const ctx = await setup({ random: () => 0.999, backoff: { baseMs: 500, capMs: 30_000 } })
    const ws = await online(ctx)
    ctx.client.networkChanged(false)
    expect(ws.closedWith).toBe(1000)
    expect(ctx.client.status).toBe('offline')
    // Reconnection attempts fail while offline: the backoff grows.
    for (let attempt = 0; attempt < 4; attempt++) {
      ctx.clock.advance(ctx.clock.pendingDelays().at(-1)!)
      ;(await ctx.sockets.nextSocket()).serverClose(1006)
    }
    expect(ctx.clock.pendingDelays().at(-1)).toBeGreaterThan(7000)
    const before = ctx.sockets.count
    ctx.client.networkChanged(true)
    await serveHandshake(ctx.sockets) // a new socket without advancing the clock
    expect(ctx.sockets.count).toBe(before + 1)
    // Online while connected changes nothing.
    ctx.client.networkChanged(true)
    expect(ctx.sockets.count).toBe(before + 1)
    ctx.client.close()
    // And nothing happens once closed.
    ctx.client.networkChanged(true)
    expect(ctx.sockets.count).toBe(before + 1)
  })

  it('pings after 25 s without sending and drops a connection silent for 60 s', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    ctx.clock.advance(25_000)
    expect(await ws.nextFrame()).toEqual({ type: 'ping', id: '1' })
    ws.deliver({ type: 'pong', id: '1' })
    await barrier(ctx.client, ws)

    ctx.clock.advance(59_999)
    expect(ws.closedWith).toBeUndefined()
    ctx.clock.advance(1)
    expect(ws.closedWith).toBe(1000)
    expect(ctx.client.status).toBe('offline')
    ctx.clock.advance(0)
    await serveHandshake(ctx.sockets)
    ctx.client.close()
  })

  it('keeps pinging a quiet server while the user is busy sending, so the link is not taken for dead', async () => {
    const ctx = await setup()
    const ws = await online(ctx)
    let pings = 0
    for (let second = 10; second <= 120; second += 10) {
      ctx.clock.advance(10_000)
      ctx.client.typing(ROOM, true)
      for (const frame of ws.unreadFrames()) {
        await ws.nextFrame()
        if (frame['type'] === 'ping') pings++
        if (frame['type'] === 'ping') ws.deliver({ type: 'pong', id: frame['id'] })
      }
    }
    expect(pings).toBeGreaterThanOrEqual(2)
    expect(ws.closedWith).toBeUndefined()
    expect(ctx.client.status).toBe('online')
    ctx.client.close()
  })
})

describe('ParleyClient authentication', () => {
  function refreshServer(answer: { status: number; json: unknown }) {
    return fakeFetch((req) => {
      if (req.method === 'POST' && req.url.pathname === '/api/v1/refresh') return answer
      return { status: 404, json: { errcode: 'P_NOT_FOUND', error: 'no route' } }
    })
  }

  it('refreshes the session once on P_UNKNOWN_TOKEN and reconnects with the new token', async () => {
    const server = refreshServer({ status: 200, json: authBody('tok2', 'ref2') })
    const ctx = await setup({ fetch: server.fetch })
    const connected = ctx.client.connect()
    const ws = await ctx.sockets.nextSocket()
    ws.accept()
    await ws.nextFrame()
    ws.deliver({ type: 'error', errcode: 'P_UNKNOWN_TOKEN', error: 'token expired' })

    await serveHandshake(ctx.sockets, { token: 'tok2' })
    await connected
    expect(server.requests.map((r) => r.json)).toEqual([{ refresh_token: 'ref1' }])
    expect(await ctx.store.getSession()).toMatchObject({ access_token: 'tok2', refresh_token: 'ref2' })
    expect(ws.closedWith).toBe(1000)
    ctx.client.close()
  })

  it('refreshes a session known to be expired before opening the socket', async () => {
    const server = refreshServer({ status: 200, json: authBody('tok2', 'ref2') })
    const ctx = await setup({ fetch: server.fetch })
    ctx.clock.advance(3_600_000)
    const connected = ctx.client.connect()
    await serveHandshake(ctx.sockets, { token: 'tok2' })
    await connected
    expect(server.requests).toHaveLength(1)
    expect(ctx.sockets.count).toBe(1)
    ctx.client.close()
  })

  it('treats close code 4001 as a refused token', async () => {
    const server = refreshServer({ status: 200, json: authBody('tok2', 'ref2') })
    const ctx = await setup({ fetch: server.fetch })
    const connected = ctx.client.connect()
    const ws = await serveHandshake(ctx.sockets)
    await connected
    const back = nextEvent(ctx.client, 'status', (s) => s === 'online')
    ws.serverClose(4001, 'token revoked')

    await serveHandshake(ctx.sockets, { token: 'tok2' })
    await back
    expect(server.requests).toHaveLength(1)
    expect(ctx.statuses).toEqual(['connecting', 'syncing', 'online', 'connecting', 'syncing', 'online'])
    ctx.client.close()
  })

  it('ends the session when the refresh token is refused', async () => {
    const server = refreshServer({ status: 401, json: { errcode: 'P_UNKNOWN_TOKEN', error: 'revoked' } })
    const ctx = await setup({ fetch: server.fetch })
    const ended = nextEvent(ctx.client, 'session_ended')
    const connected = ctx.client.connect()
    const ws = await ctx.sockets.nextSocket()
    ws.accept()
    await ws.nextFrame()
    ws.serverClose(4001, 'revoked')

    const { error } = await ended
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ errcode: 'P_UNKNOWN_TOKEN', status: 401 })
    await expect(connected).rejects.toMatchObject({ reason: 'session_ended' })
    expect(ctx.client.status).toBe('offline')
    expect(ctx.clock.pendingDelays()).toEqual([])
    expect(ctx.sockets.count).toBe(1)
  })

  it('ends the session after a refreshed token is refused again', async () => {
    const server = refreshServer({ status: 200, json: authBody('tok2', 'ref2') })
    const ctx = await setup({ fetch: server.fetch })
    const ended = nextEvent(ctx.client, 'session_ended')
    void ctx.client.connect().catch(() => {})
    for (const token of ['tok1', 'tok2']) {
      const ws = await ctx.sockets.nextSocket()
      ws.accept()
      expect(await ws.nextFrame()).toEqual({ type: 'auth', token })
      ws.serverClose(4001)
    }
    await ended
    expect(server.requests).toHaveLength(1)
    expect(ctx.sockets.count).toBe(2)
  })

  it('ends the session at once when the store holds none', async () => {
    const ctx = await setup()
    await ctx.store.setSession(null)
    const ended = nextEvent(ctx.client, 'session_ended')
    await expect(ctx.client.connect()).rejects.toBeInstanceOf(ClientClosedError)
    expect((await ended).error).toBeInstanceOf(NoSessionError)
    expect(ctx.sockets.count).toBe(0)
  })
})

describe('ParleyClient sign-in helpers', () => {
  it('login() stores the session and returns a client that authenticates with it', async () => {
    const clock = new FakeClock()
    const server = fakeFetch((req) =>
      req.url.pathname === '/api/v1/login'
        ? { json: authBody('tok9', 'ref9', 600) }
        : { status: 404, json: { errcode: 'P_NOT_FOUND', error: '' } },
    )
    const sockets = fakeWebSockets()
    const store = new MemoryStore()
    const client = await ParleyClient.login(BASE_URL, 'alice', 'correct horse', {
      store,
      WebSocket: sockets.WebSocket,
      fetch: server.fetch,
      clock,
      deviceName: 'laptop',
    })
    expect(server.requests[0]!.json).toEqual({
      username: 'alice',
      password: 'correct horse',
      device_name: 'laptop',
    })
    expect(await store.getSession()).toEqual({
      ...aliceSession(clock.now(), 'tok9', 'ref9'),
      expires_at: clock.now() + 600_000,
    })
    const connected = client.connect()
    await serveHandshake(sockets, { token: 'tok9' })
    await connected

    const restored = await ParleyClient.restore({
      store,
      WebSocket: sockets.WebSocket,
      fetch: server.fetch,
      clock,
    })
    expect(restored).toBeInstanceOf(ParleyClient)
    client.close()
    expect(await ParleyClient.restore({ store: new MemoryStore(), WebSocket: sockets.WebSocket })).toBeNull()
  })
})
