/**
 * Regression tests for fixes from review, against one real homeserver: what a former member may read
 * (memberships.left_pos), kick and unban intent checked inside the write transaction, the AC-2 answer
 * to a stranger banning themselves, and redactions reaching a message's edits. Nothing here sleeps:
 * every step awaits an HTTP answer, an ack or a frame.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  barrier,
  connect,
  groupWith,
  http,
  register,
  roomPath,
  sendText,
  startTestServer,
  TestSocket,
  type Frame,
  type TestServer,
  type TestUser,
} from './helpers.ts'

let hs: TestServer
const sockets: TestSocket[] = []

beforeAll(async () => {
  hs = await startTestServer({ limits: { messagesPerSecond: 10_000, messageBurst: 10_000 } })
})
afterEach(() => {
  for (const s of sockets.splice(0)) s.close()
})
afterAll(() => hs.stop())

type Ev = {
  event_id: string
  room: string
  type: string
  state_key?: string
  sender: string
  seq: number
  stream_pos: number
  content: Record<string, unknown>
  redacted_by?: string
}

const GHOST_ROOM = `!${'A'.repeat(22)}:acme.localhost`
const notMemberBody = { errcode: 'P_FORBIDDEN', error: 'you are not a member of this room' }

async function live(user: TestUser): Promise<TestSocket> {
  const sock = await connect(hs, user)
  sockets.push(sock)
  return sock
}

/** Sends `text` and returns the stored event's id, seq and stream position. */
async function say(sock: TestSocket, room: string, text: string) {
  const ack = await sendText(sock, room, text)
  expect(ack.type).toBe('sent')
  return position(ack.event_id as string)
}

let txns = 0
/** Sends an event of any type and resolves with its `sent` or `error` frame. */
function sendEvent(sock: TestSocket, room: string, eventType: string, content: unknown): Promise<Frame> {
  const txn = `reg${++txns}`
  sock.send({ type: 'send', txn_id: txn, room, event_type: eventType, content })
  return sock.next((f) => (f.type === 'sent' || f.type === 'error') && f.txn_id === txn)
}

/** Where an event sits in its room and in the server-wide stream. */
function position(eventId: string): { event_id: string; seq: number; stream_pos: number } {
  const row = hs.services.repos.events.get(eventId)
  if (!row) throw new Error(`no event ${eventId}`)
  return { event_id: row.event_id, seq: row.seq, stream_pos: row.stream_pos }
}

/** A membership change over REST; returns the position of the event it created. */
async function membership(room: string, action: string, actor: TestUser, target?: TestUser) {
  const body = target ? { user_id: target.user_id } : undefined
  const res = await http<{ event_id: string }>(hs, 'POST', roomPath(room, action), body, actor.access_token)
  expect(res, `${action}`).toMatchObject({ status: 200 })
  return position(res.body.event_id)
}

/** Everything a fresh connection of `user` gets by syncing from 0, paging (3 events a page) until done. */
async function syncFromZero(user: TestUser): Promise<Ev[]> {
  const sock = new TestSocket(hs.url)
  sockets.push(sock)
  await sock.opened()
  sock.send({ type: 'auth', token: user.access_token })
  await sock.type('ready')
  const events: Ev[] = []
  let since = 0
  for (let pages = 0; ; pages++) {
    if (pages > 1000) throw new Error('sync did not finish')
    sock.send({ type: 'sync', since, limit: 3 })
    const page = await sock.type('sync')
    events.push(...(page.events as Ev[]))
    since = page.next as number
    if (page.done) break
  }
  sock.close()
  return events
}

/** All of a room's history `user` can page through (newest first), or the refusal. */
async function fullHistory(room: string, user: TestUser) {
  const events: Ev[] = []
  let before: number | undefined
  for (;;) {
    const q = before === undefined ? '?limit=2' : `?limit=2&before=${before}`
    const res = await http<{ events: Ev[]; next_before?: number }>(
      hs,
      'GET',
      roomPath(room, '/messages' + q),
      undefined,
      user.access_token,
    )
    if (res.status !== 200) return { status: res.status, body: res.body as unknown, events }
    events.push(...res.body.events)
    if (res.body.next_before === undefined) return { status: 200, body: res.body as unknown, events }
    before = res.body.next_before
  }
}

const bodies = (events: readonly Ev[]) => events.map((e) => e.content.body).filter((b) => b !== undefined)

describe('former members read the room only up to when they left', () => {
  /**
   * Bob joins, reads "before kick", is kicked at K; the room says "SECRET after kick"; then `after`
   * runs (an invite, a ban, ...) and the room says "SECRET after <what>".
   */
  async function kickedThen(
    what: string,
    after: (room: string, owner: TestUser, bob: TestUser) => Promise<{ event_id: string }>,
  ) {
    const [owner, bob] = await Promise.all([register(hs), register(hs)])
    const room = await groupWith(hs, owner, [bob])
    const [o, b] = await Promise.all([live(owner), live(bob)])
    const before = await say(o, room, 'before kick')
    const kick = await membership(room, '/kick', owner, bob)
    await say(o, room, 'SECRET after kick')
    const latest = await after(room, owner, bob)
    await say(o, room, `SECRET after ${what}`)
    // Live too: once the pong is back, every frame fanned out to Bob before it has arrived.
    await barrier(b)
    const liveAfterKick = b.frames
      .filter((f) => f.type === 'event' && f.room === room)
      .map((f) => f.event as Ev)
      .filter((e) => e.stream_pos > kick.stream_pos)
    return { owner, ownerSocket: o, bob, room, before, kick, latest, liveAfterKick }
  }

  /**
   * What a former member must see by sync from 0 and by history: the room up to the kick, then only
   * their own latest membership event (`membership`). Live, they heard only their own membership events.
   */
  async function expectReadsUpToKick(r: Awaited<ReturnType<typeof kickedThen>>, membership: string) {
    const { bob, room, kick, before, latest } = r
    const ownMembership = expect.objectContaining({ type: 'm.member', state_key: bob.user_id })
    for (const e of r.liveAfterKick) expect(e).toEqual(ownMembership)
    expect(r.liveAfterKick.map((e) => e.event_id)).toContain(latest.event_id)

    const synced = (await syncFromZero(bob)).filter((e) => e.room === room)
    expect(JSON.stringify(synced)).not.toContain('SECRET')
    const upToKick = synced.filter((e) => e.stream_pos <= kick.stream_pos)
    expect(upToKick.map((e) => e.event_id)).toContain(before.event_id)
    expect(upToKick.at(-1)!.event_id).toBe(kick.event_id)
    expect(synced.filter((e) => e.stream_pos > kick.stream_pos)).toEqual([
      expect.objectContaining({
        event_id: latest.event_id,
        type: 'm.member',
        state_key: bob.user_id,
        content: expect.objectContaining({ membership }),
      }),
    ])

    // History agrees: up to and including the kick, never past it, whatever `before` asks for.
    const hist = await fullHistory(room, bob)
    expect(hist.status).toBe(200)
    expect(Math.max(...hist.events.map((e) => e.seq))).toBe(kick.seq)
    expect(hist.events.map((e) => e.event_id)).toContain(before.event_id)
    expect(JSON.stringify(hist.events)).not.toContain('SECRET')
    const probe = await http<{ events: Ev[] }>(
      hs,
      'GET',
      roomPath(room, `/messages?limit=200&before=${kick.seq + 1000}`),
      undefined,
      bob.access_token,
    )
    expect(probe.status).toBe(200)
    expect(probe.body.events.filter((e) => e.seq > kick.seq)).toEqual([])
  }

  it('shows a kicked member who is invited again nothing after the kick but the invite, by sync or history', async () => {
    const r = await kickedThen('invite', (room, owner, bob) => membership(room, '/invite', owner, bob))
    await expectReadsUpToKick(r, 'invite')
    // The invite is still pending.
    const summary = await http(hs, 'GET', roomPath(r.room), undefined, r.bob.access_token)
    expect(summary.body).toMatchObject({ membership: 'invite', last_seq: 0 })
  })

  it('shows a kicked member who is then banned nothing after the kick but the ban, by sync or history', async () => {
    const r = await kickedThen('ban', (room, owner, bob) => membership(room, '/ban', owner, bob))
    await expectReadsUpToKick(r, 'ban')
  })

  it('shows a kicked member who rejects a new invite nothing after the kick but the rejection, by sync or history', async () => {
    const r = await kickedThen('rejection', async (room, owner, bob) => {
      await membership(room, '/invite', owner, bob)
      return membership(room, '/leave', bob)
    })
    await expectReadsUpToKick(r, 'leave')
  })

  it('shows a kicked member who rejoins after a fresh invite the whole room again, including what was said while away', async () => {
    const { ownerSocket, bob, room } = await kickedThen('invite', (room, owner, bob) =>
      membership(room, '/invite', owner, bob),
    )
    const rejoin = await membership(room, '/join', bob)
    await say(ownerSocket, room, 'after rejoin')

    const expected = ['before kick', 'SECRET after kick', 'SECRET after invite', 'after rejoin']
    const synced = (await syncFromZero(bob)).filter((e) => e.room === room)
    expect(bodies(synced)).toEqual(expected)
    expect(synced.map((e) => e.event_id)).toContain(rejoin.event_id)
    const hist = await fullHistory(room, bob)
    expect(hist.status).toBe(200)
    expect(bodies(hist.events).reverse()).toEqual(expected)
  })
})

describe('kick and unban intent are checked inside the transaction', () => {
  /** A group of owner, a moderator and `targets` (members). */
  async function moderatedRoom(targets: number) {
    const [owner, mod, ...xs] = await Promise.all(Array.from({ length: targets + 2 }, () => register(hs)))
    const room = await groupWith(hs, owner!, [mod!, ...xs])
    const role = await http(
      hs,
      'PUT',
      roomPath(room, '/power'),
      { user_id: mod!.user_id, role: 'moderator' },
      owner!.access_token,
    )
    expect(role.status).toBe(200)
    return { owner: owner!, mod: mod!, xs, room }
  }

  const membershipOf = (room: string, user: TestUser) =>
    hs.services.repos.memberships.get(room, user.user_id)?.membership

  it('keeps a user banned when a moderator kick is sequenced right after the ban in the same batch', async () => {
    const { owner, mod, xs, room } = await moderatedRoom(1)
    const x = xs[0]!
    const headBefore = hs.services.sequencer.streamHead
    // Called back to back in one turn: both drafts are written in one transaction, ban first.
    const ban = hs.services.rooms.ban(owner.user_id, room, x.user_id)
    const kick = hs.services.rooms.kick(mod.user_id, room, x.user_id)
    const [banned, kicked] = await Promise.allSettled([ban, kick])

    expect(banned.status).toBe('fulfilled')
    expect(kicked.status).toBe('rejected')
    expect((kicked as PromiseRejectedResult).reason).toMatchObject({
      errcode: 'P_BAD_REQUEST',
      message: 'that user is banned: use unban',
    })
    expect(membershipOf(room, x)).toBe('ban')
    // Only the ban was stored.
    expect(hs.services.sequencer.streamHead).toBe(headBefore + 1)
    const members = await http<{ members: Array<{ user_id: string; membership: string }> }>(
      hs,
      'GET',
      roomPath(room, '/members'),
      undefined,
      owner.access_token,
    )
    expect(members.body.members).toContainEqual(
      expect.objectContaining({ user_id: x.user_id, membership: 'ban' }),
    )
  })

  it('keeps a user banned when the owner bans and a moderator kicks them over concurrent HTTP requests', async () => {
    const { owner, mod, xs, room } = await moderatedRoom(5)
    // Several targets, each raced once: whichever lands first, the ban must stand.
    await Promise.all(
      xs.map(async (x) => {
        const [ban, kick] = await Promise.all([
          http(hs, 'POST', roomPath(room, '/ban'), { user_id: x.user_id }, owner.access_token),
          http(hs, 'POST', roomPath(room, '/kick'), { user_id: x.user_id }, mod.access_token),
        ])
        expect(ban.status).toBe(200)
        // Before the ban the kick is fine; after it, it is refused and changes nothing.
        if (kick.status !== 200)
          expect(kick).toMatchObject({
            status: 400,
            body: { errcode: 'P_BAD_REQUEST', error: 'that user is banned: use unban' },
          })
        expect(membershipOf(room, x)).toBe('ban')
      }),
    )
  })

  it('refuses to unban a member who is not banned with 404 and leaves them in the room', async () => {
    const { owner, mod, xs, room } = await moderatedRoom(1)
    const x = xs[0]!
    for (const actor of [owner, mod]) {
      const res = await http(hs, 'POST', roomPath(room, '/unban'), { user_id: x.user_id }, actor.access_token)
      expect(res).toMatchObject({
        status: 404,
        body: { errcode: 'P_NOT_FOUND', error: 'that user is not banned' },
      })
      expect(membershipOf(room, x)).toBe('join')
    }
  })

  it('refuses to kick a banned user with 400 and keeps them banned', async () => {
    const { owner, mod, xs, room } = await moderatedRoom(1)
    const x = xs[0]!
    await membership(room, '/ban', owner, x)
    for (const actor of [owner, mod]) {
      const res = await http(hs, 'POST', roomPath(room, '/kick'), { user_id: x.user_id }, actor.access_token)
      expect(res).toMatchObject({
        status: 400,
        body: { errcode: 'P_BAD_REQUEST', error: 'that user is banned: use unban' },
      })
      expect(membershipOf(room, x)).toBe('ban')
    }
    // An unban is what lifts it.
    await membership(room, '/unban', mod, x)
    expect(membershipOf(room, x)).toBe('leave')
  })
})

describe('AC-2 a stranger banning themselves', () => {
  it('answers a stranger banning themselves in a room they are not in with the same 403 as for a room that does not exist', async () => {
    const [owner, member, stranger] = await Promise.all([register(hs), register(hs), register(hs)])
    const room = await groupWith(hs, owner, [member])
    const self = { user_id: stranger.user_id }
    const real = await http(hs, 'POST', roomPath(room, '/ban'), self, stranger.access_token)
    const ghost = await http(hs, 'POST', roomPath(GHOST_ROOM, '/ban'), self, stranger.access_token)
    expect(ghost).toMatchObject({ status: 403, body: notMemberBody })
    expect({ status: real.status, body: real.body }).toEqual({ status: ghost.status, body: ghost.body })
    // A member still gets the specific answer (the check order only hides the room from strangers).
    const own = await http(
      hs,
      'POST',
      roomPath(room, '/ban'),
      { user_id: member.user_id },
      member.access_token,
    )
    expect(own).toMatchObject({
      status: 400,
      body: { errcode: 'P_BAD_REQUEST', error: 'you cannot ban yourself' },
    })
    expect(hs.services.repos.memberships.get(room, stranger.user_id)).toBeUndefined()
  })
})

describe('redactions reach edits', () => {
  it('drops the content of every edit of a redacted message, in history, sync and the stored row', async () => {
    const [alice, bob] = await Promise.all([register(hs), register(hs)])
    const room = await groupWith(hs, alice, [bob])
    const a = await live(alice)
    const target = await say(a, room, 'secret original')
    const edits: string[] = []
    for (const body of ['secret edit one', 'secret edit two']) {
      const sent = await sendEvent(a, room, 'm.edit', { target: target.event_id, body })
      expect(sent.type).toBe('sent')
      edits.push(sent.event_id as string)
    }
    // An edit of another message is untouched.
    const other = await say(a, room, 'keep me')
    const otherEdit = await sendEvent(a, room, 'm.edit', { target: other.event_id, body: 'keep me too' })
    expect(otherEdit.type).toBe('sent')
    const redaction = await sendEvent(a, room, 'm.redaction', { target: target.event_id })
    expect(redaction.type).toBe('sent')
    const redactedBy = redaction.event_id as string

    for (const id of [target.event_id, ...edits]) {
      const row = hs.services.repos.events.get(id)!
      expect(row.content).toBeNull()
      expect(row.redacted_by).toBe(redactedBy)
    }
    expect(hs.services.repos.events.get(otherEdit.event_id as string)!.redacted_by).toBeNull()

    const hist = await fullHistory(room, bob)
    const synced = (await syncFromZero(bob)).filter((e) => e.room === room)
    for (const events of [hist.events, synced]) {
      const byId = new Map(events.map((e) => [e.event_id, e]))
      for (const id of [target.event_id, ...edits]) {
        expect(byId.get(id)).toMatchObject({ content: {}, redacted_by: redactedBy })
      }
      expect(byId.get(edits[0]!)!.type).toBe('m.edit')
      expect(byId.get(otherEdit.event_id as string)).toMatchObject({
        content: { target: other.event_id, body: 'keep me too' },
      })
      expect(byId.get(otherEdit.event_id as string)!.redacted_by).toBeUndefined()
      expect(JSON.stringify(events)).not.toContain('secret')
    }
  })
})
