import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventIdOf } from '@parley/protocol'
import { headerOf } from '../src/services/event-log.ts'
import {
  connect,
  createRoom,
  groupWith,
  http,
  register,
  roomPath,
  sendText,
  startTestServer,
  type Frame,
  type TestServer,
  type TestSocket,
  type TestUser,
} from './helpers.ts'

let hs: TestServer
let alice: TestUser
let bob: TestUser
let carol: TestUser
beforeAll(async () => {
  hs = await startTestServer()
  ;[alice, bob, carol] = await Promise.all([register(hs), register(hs), register(hs)])
})
afterAll(() => hs.stop())

type Ev = {
  event_id: string
  type: string
  sender: string
  seq: number
  content: Record<string, unknown>
  redacted_by?: string
}
const history = async (room: string, user: TestUser) =>
  (
    await http<{ events: Ev[] }>(
      hs,
      'GET',
      roomPath(room, '/messages?limit=200'),
      undefined,
      user.access_token,
    )
  ).body.events
const send = (
  sock: TestSocket,
  room: string,
  event_type: string,
  content: unknown,
  txn = `x${Math.random()}`,
) => {
  sock.send({ type: 'send', txn_id: txn.replace(/[^A-Za-z0-9]/g, ''), room, event_type, content })
  return sock.next(
    (f) => (f.type === 'sent' || f.type === 'error') && f.txn_id === txn.replace(/[^A-Za-z0-9]/g, ''),
  )
}
const eventOf = (sock: TestSocket, pred: (e: Ev) => boolean) =>
  sock.next((f) => f.type === 'event' && pred(f.event as Ev))

describe('membership', () => {
  it('invite -> join -> leave, each a sequenced event seen by members', async () => {
    const room = await createRoom(hs, alice, { kind: 'group', name: 'Team', topic: 'all things' })
    const a = await connect(hs, alice)
    const inv = await http(
      hs,
      'POST',
      roomPath(room, '/invite'),
      { user_id: bob.user_id },
      alice.access_token,
    )
    expect(inv.status).toBe(200)
    const b = await connect(hs, bob)
    // Bob's sync shows the invite (and only that) before he joins.
    expect((await http(hs, 'GET', roomPath(room, '/messages'), undefined, bob.access_token)).status).toBe(403)
    const listed = await http<{ rooms: Array<{ room_id: string; membership: string; name: string }> }>(
      hs,
      'GET',
      '/api/v1/rooms',
      undefined,
      bob.access_token,
    )
    expect(listed.body.rooms.find((r) => r.room_id === room)).toMatchObject({
      membership: 'invite',
      name: 'Team',
    })
    expect((await http(hs, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).status).toBe(200)
    await eventOf(
      a,
      (e) => e.type === 'm.member' && e.content.membership === 'join' && e.sender === bob.user_id,
    )
    const members = await http<{ members: Array<{ user_id: string; role: string }> }>(
      hs,
      'GET',
      roomPath(room, '/members'),
      undefined,
      bob.access_token,
    )
    expect(members.body.members).toEqual(
      expect.arrayContaining([
        { user_id: alice.user_id, membership: 'join', role: 'owner' },
        { user_id: bob.user_id, membership: 'join', role: 'member' },
      ]),
    )
    expect((await http(hs, 'POST', roomPath(room, '/leave'), undefined, bob.access_token)).status).toBe(200)
    await eventOf(a, (e) => e.type === 'm.member' && e.content.membership === 'leave')
    // Rejoining needs a fresh invite.
    expect((await http(hs, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).body).toMatchObject(
      { errcode: 'P_FORBIDDEN' },
    )
    a.close()
    b.close()
  })

  it('refuses a second join, inviting a member, and joining without an invite', async () => {
    const room = await groupWith(hs, alice, [bob])
    expect((await http(hs, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).body).toMatchObject(
      { errcode: 'P_CONFLICT' },
    )
    expect(
      (await http(hs, 'POST', roomPath(room, '/invite'), { user_id: bob.user_id }, alice.access_token)).body,
    ).toMatchObject({ errcode: 'P_CONFLICT' })
    expect((await http(hs, 'POST', roomPath(room, '/join'), undefined, carol.access_token)).status).toBe(403)
    expect(
      (
        await http(
          hs,
          'POST',
          roomPath(room, '/invite'),
          { user_id: '@nobody:acme.localhost' },
          alice.access_token,
        )
      ).status,
    ).toBe(404)
  })

  it('kick and ban by a moderator; banned users cannot be invited until unbanned', async () => {
    const room = await groupWith(hs, alice, [bob, carol])
    expect(
      (
        await http(
          hs,
          'PUT',
          roomPath(room, '/power'),
          { user_id: bob.user_id, role: 'moderator' },
          alice.access_token,
        )
      ).status,
    ).toBe(200)
    expect(
      (await http(hs, 'POST', roomPath(room, '/kick'), { user_id: carol.user_id }, bob.access_token)).status,
    ).toBe(200)
    expect(
      (await http(hs, 'POST', roomPath(room, '/invite'), { user_id: carol.user_id }, bob.access_token))
        .status,
    ).toBe(200)
    expect(
      (
        await http(
          hs,
          'POST',
          roomPath(room, '/ban'),
          { user_id: carol.user_id, reason: 'spam' },
          bob.access_token,
        )
      ).status,
    ).toBe(200)
    expect(
      (await http(hs, 'POST', roomPath(room, '/invite'), { user_id: carol.user_id }, alice.access_token))
        .status,
    ).toBe(403)
    expect(
      (await http(hs, 'POST', roomPath(room, '/unban'), { user_id: carol.user_id }, bob.access_token)).status,
    ).toBe(200)
    expect(
      (await http(hs, 'POST', roomPath(room, '/invite'), { user_id: carol.user_id }, alice.access_token))
        .status,
    ).toBe(200)
    // A moderator cannot act on the owner, nor make anyone admin.
    expect(
      (await http(hs, 'POST', roomPath(room, '/kick'), { user_id: alice.user_id }, bob.access_token)).status,
    ).toBe(403)
    expect(
      (
        await http(
          hs,
          'PUT',
          roomPath(room, '/power'),
          { user_id: bob.user_id, role: 'admin' },
          bob.access_token,
        )
      ).status,
    ).toBe(403)
  })

  it('DMs hold exactly two people: no third invite, no kicks', async () => {
    const room = await createRoom(hs, alice, { kind: 'dm', invite: [bob.user_id] })
    expect((await http(hs, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).status).toBe(200)
    expect(
      (await http(hs, 'POST', roomPath(room, '/invite'), { user_id: carol.user_id }, alice.access_token))
        .status,
    ).toBe(403)
    expect(
      (await http(hs, 'POST', roomPath(room, '/kick'), { user_id: bob.user_id }, alice.access_token)).status,
    ).toBe(403)
    expect(
      (await http(hs, 'POST', '/api/v1/rooms', { kind: 'dm', invite: [] }, alice.access_token)).status,
    ).toBe(400)
  })

  it('settings change name and topic for moderators only', async () => {
    const room = await groupWith(hs, alice, [bob])
    expect(
      (await http(hs, 'PUT', roomPath(room, '/settings'), { name: 'Renamed' }, bob.access_token)).status,
    ).toBe(403)
    expect(
      (
        await http(
          hs,
          'PUT',
          roomPath(room, '/settings'),
          { name: 'Renamed', topic: 'new topic' },
          alice.access_token,
        )
      ).status,
    ).toBe(200)
    expect((await http(hs, 'GET', roomPath(room), undefined, bob.access_token)).body).toMatchObject({
      name: 'Renamed',
      topic: 'new topic',
    })
  })
})

describe('messages', () => {
  let room: string
  let a: TestSocket
  let b: TestSocket
  beforeAll(async () => {
    room = await groupWith(hs, alice, [bob])
    a = await connect(hs, alice)
    b = await connect(hs, bob)
  })
  afterAll(() => {
    a.close()
    b.close()
  })

  it('replies point at an event of the same room', async () => {
    const first = await sendText(a, room, 'question?')
    const reply = await send(b, room, 'm.message', {
      body: 'answer',
      format: 'markdown',
      reply_to: first.event_id,
    })
    expect(reply.type).toBe('sent')
    const other = await groupWith(hs, alice, [bob])
    const cross = await send(b, other, 'm.message', { body: 'x', reply_to: first.event_id })
    expect(cross).toMatchObject({ type: 'error', errcode: 'P_NOT_FOUND' })
  })

  it("edits only one's own messages", async () => {
    const mine = await sendText(a, room, 'tpyo')
    expect(await send(a, room, 'm.edit', { target: mine.event_id, body: 'typo' })).toMatchObject({
      type: 'sent',
    })
    expect(await send(b, room, 'm.edit', { target: mine.event_id, body: 'hacked' })).toMatchObject({
      errcode: 'P_FORBIDDEN',
    })
  })

  it('redaction drops the content but keeps the event; only sender or moderators may redact', async () => {
    const msg = await sendText(a, room, 'secret plan')
    expect(await send(b, room, 'm.redaction', { target: msg.event_id })).toMatchObject({
      errcode: 'P_FORBIDDEN',
    })
    const red = await send(a, room, 'm.redaction', { target: msg.event_id, reason: 'oops' })
    expect(red.type).toBe('sent')
    await eventOf(b, (e) => e.event_id === red.event_id)
    const stored = (await history(room, bob)).find((e) => e.event_id === msg.event_id)!
    expect(stored.content).toEqual({})
    expect(stored.redacted_by).toBe(red.event_id)
    const row = hs.services.repos.events.get(msg.event_id as string)!
    expect(row.content).toBeNull()
    // The header keeps the content's hash, so the event id still verifies.
    expect(eventIdOf(headerOf(row))).toBe(msg.event_id)
  })

  it('reactions: one per key per person, removable by redaction', async () => {
    const msg = await sendText(a, room, 'react to me')
    const r1 = await send(b, room, 'm.reaction', { target: msg.event_id, key: '👍' })
    expect(r1.type).toBe('sent')
    expect(await send(b, room, 'm.reaction', { target: msg.event_id, key: '👍' })).toMatchObject({
      errcode: 'P_CONFLICT',
    })
    expect(await send(b, room, 'm.redaction', { target: r1.event_id })).toMatchObject({ type: 'sent' })
    expect(await send(b, room, 'm.reaction', { target: msg.event_id, key: '👍' })).toMatchObject({
      type: 'sent',
    })
  })

  it('rejects unknown types, bad content and oversized content', async () => {
    expect(await send(a, room, 'm.room.create', { kind: 'group' })).toMatchObject({
      errcode: 'P_BAD_REQUEST',
    })
    expect(await send(a, room, 'm.message', { body: '' })).toMatchObject({ errcode: 'P_BAD_REQUEST' })
    expect(await send(a, room, 'm.message', { body: 'x', extra: 1 })).toMatchObject({
      errcode: 'P_BAD_REQUEST',
    })
  })

  it('counts unread messages from others until a read receipt', async () => {
    const r = await groupWith(hs, alice, [bob])
    let last: Frame | undefined
    for (let i = 0; i < 3; i++) last = await sendText(a, r, `u${i}`)
    const unread = async () =>
      (
        await http<{ rooms: Array<{ room_id: string; unread: number; last_event?: Ev }> }>(
          hs,
          'GET',
          '/api/v1/rooms',
          undefined,
          bob.access_token,
        )
      ).body.rooms.find((x) => x.room_id === r)!
    expect(await unread()).toMatchObject({ unread: 3, last_event: { content: { body: 'u2' } } })
    b.send({ type: 'receipt', room: r, event_id: last!.event_id })
    const seen = await a.next((f) => f.type === 'receipt' && f.room === r)
    expect(seen).toMatchObject({ user_id: bob.user_id, event_id: last!.event_id })
    expect((await unread()).unread).toBe(0)
  })

  it('relays typing to other members and expires it when typing stops', async () => {
    b.send({ type: 'typing', room, typing: true })
    expect(
      await a.next((f) => f.type === 'typing' && (f.user_ids as string[]).includes(bob.user_id)),
    ).toBeTruthy()
    b.send({ type: 'typing', room, typing: false })
    expect(await a.next((f) => f.type === 'typing' && (f.user_ids as string[]).length === 0)).toBeTruthy()
  })

  it('announces presence changes to people who share a room', async () => {
    b.send({ type: 'presence', status: 'away' })
    expect(
      await a.next((f) => f.type === 'presence' && f.user_id === bob.user_id && f.status === 'away'),
    ).toBeTruthy()
  })

  it('pages history backwards with next_before', async () => {
    const r = await groupWith(hs, alice, [bob])
    for (let i = 0; i < 12; i++) await sendText(a, r, `h${i}`)
    const seen: string[] = []
    let before: number | undefined
    for (;;) {
      const res = await http<{ events: Ev[]; next_before?: number }>(
        hs,
        'GET',
        roomPath(r, `/messages?limit=5${before ? `&before=${before}` : ''}`),
        undefined,
        bob.access_token,
      )
      for (const e of res.body.events) if (e.type === 'm.message') seen.push(e.content.body as string)
      if (res.body.next_before === undefined) break
      before = res.body.next_before
    }
    expect(seen.reverse()).toEqual(Array.from({ length: 12 }, (_, i) => `h${i}`))
  })
})

describe('directory, profiles and media', () => {
  it('finds users by name prefix and display name', async () => {
    const dana = await register(hs, 'dana')
    await http(hs, 'PUT', '/api/v1/profile', { display_name: 'Dana Scully' }, dana.access_token)
    const byName = await http<{ users: Array<{ user_id: string }> }>(
      hs,
      'GET',
      '/api/v1/users?q=dan',
      undefined,
      alice.access_token,
    )
    expect(byName.body.users.map((u) => u.user_id)).toContain(dana.user_id)
    const byDisplay = await http<{ users: Array<{ user_id: string }> }>(
      hs,
      'GET',
      '/api/v1/users?q=Scul',
      undefined,
      alice.access_token,
    )
    expect(byDisplay.body.users.map((u) => u.user_id)).toContain(dana.user_id)
    expect(
      (
        await http(
          hs,
          'GET',
          `/api/v1/profile/${encodeURIComponent(dana.user_id)}`,
          undefined,
          alice.access_token,
        )
      ).body,
    ).toMatchObject({ display_name: 'Dana Scully' })
  })

  it('stores media for room members and enforces the size limit', async () => {
    const room = await groupWith(hs, alice, [bob])
    const bytes = new Uint8Array([137, 80, 78, 71, 1, 2, 3])
    const up = await fetch(`${hs.url}/api/v1/media?room=${encodeURIComponent(room)}&filename=pic.png`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice.access_token}`, 'content-type': 'image/png' },
      body: bytes,
    })
    expect(up.status).toBe(201)
    const { media_id } = (await up.json()) as { media_id: string }
    const down = await fetch(`${hs.url}/api/v1/media/${media_id}`, {
      headers: { authorization: `Bearer ${bob.access_token}` },
    })
    expect(down.status).toBe(200)
    expect(down.headers.get('content-type')).toBe('image/png')
    expect(new Uint8Array(await down.arrayBuffer())).toEqual(bytes)
    const stranger = await fetch(`${hs.url}/api/v1/media/${media_id}`, {
      headers: { authorization: `Bearer ${carol.access_token}` },
    })
    expect(stranger.status).toBe(404)
  })

  it('refuses uploads over the configured limit with 413', async () => {
    const small = await startTestServer({ limits: { maxMediaBytes: 1000 } })
    try {
      const u = await register(small)
      const room = await createRoom(small, u, { kind: 'group' })
      const res = await fetch(`${small.url}/api/v1/media?room=${encodeURIComponent(room)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${u.access_token}`, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(5000),
      })
      expect(res.status).toBe(413)
      expect(await res.json()).toMatchObject({ errcode: 'P_TOO_LARGE' })
    } finally {
      await small.stop()
    }
  })
})
