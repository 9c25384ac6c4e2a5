/**
 * Typing, read receipts and presence (DESIGN.md section 3: never part of the room log). Typing and
 * presence live in memory; a receipt is also stored, because unread counts are computed from it.
 */
import { ParleyError } from '@parley/protocol'
import type { PresenceStatus } from '@parley/protocol/schema'
import type { Clock } from '../clock.ts'
import type { Repos } from '../db/repos/index.ts'
import type { Hub, RoomMembers } from './hub.ts'
import { RateLimiter } from './rate-limit.ts'
import { notMember } from './room-rules.ts'

/** A typing notice lasts this long unless renewed. */
export const TYPING_TTL_MS = 6000

/** Carries our users' typing, receipts and presence to the other servers concerned (federation). */
export interface EphemeralRelay {
  typing(userId: string, room: string, typing: boolean): void
  receipt(userId: string, room: string, eventId: string): void
  presence(userId: string, status: PresenceStatus): void
}

export class EphemeralService {
  /** Set once federation is wired in; updates that came from a peer are never relayed again. */
  relay: EphemeralRelay | null = null
  readonly #typing = new Map<string, Map<string, ReturnType<typeof setTimeout>>>()
  readonly #presence = new Map<string, PresenceStatus>()
  /**
   * Each announcement fans out to a whole room (or every room of the user), so a client that toggles
   * typing or presence in a loop is held to a human pace; over it, the frame is refused, not relayed.
   */
  readonly #typingRate: RateLimiter
  readonly #presenceRate: RateLimiter
  readonly #receiptRate: RateLimiter

  constructor(
    private readonly repos: Repos,
    private readonly members: RoomMembers,
    private readonly hub: Hub,
    private readonly clock: Clock,
  ) {
    this.#typingRate = new RateLimiter(clock, 10, 4)
    this.#presenceRate = new RateLimiter(clock, 5, 0.5)
    this.#receiptRate = new RateLimiter(clock, 30, 10)
  }

  #limit(limiter: RateLimiter, userId: string, what: string): void {
    const wait = limiter.take(userId)
    if (wait > 0) throw new ParleyError('P_LIMIT_EXCEEDED', `too many ${what} updates`, wait)
  }

  #requireJoined(room: string, userId: string): ReadonlySet<string> {
    const joined = this.members.joined(room)
    if (!joined.has(userId)) throw notMember()
    return joined
  }

  /** `fromPeer`: the user's own server told us (federation); it is not relayed again. */
  setTyping(userId: string, room: string, typing: boolean, fromPeer = false): void {
    this.#requireJoined(room, userId)
    this.#limit(this.#typingRate, userId, 'typing')
    if (!fromPeer) this.relay?.typing(userId, room, typing)
    let users = this.#typing.get(room)
    const had = users?.get(userId)
    if (had) clearTimeout(had)
    if (typing) {
      if (!users) this.#typing.set(room, (users = new Map()))
      const timer = setTimeout(() => this.setTypingQuietly(userId, room), TYPING_TTL_MS)
      timer.unref()
      users.set(userId, timer)
      if (had) return // still typing: no change to announce
    } else {
      if (!had) return
      users!.delete(userId)
      if (users!.size === 0) this.#typing.delete(room)
    }
    this.#announceTyping(room)
  }

  /** Expiry (or a disconnect) ends typing without a membership check. */
  setTypingQuietly(userId: string, room: string): void {
    const users = this.#typing.get(room)
    const timer = users?.get(userId)
    if (!timer) return
    clearTimeout(timer)
    users!.delete(userId)
    if (users!.size === 0) this.#typing.delete(room)
    this.#announceTyping(room)
  }

  #announceTyping(room: string): void {
    const users = [...(this.#typing.get(room)?.keys() ?? [])]
    this.hub.sendToUsers(this.members.joined(room), JSON.stringify({ type: 'typing', room, user_ids: users }))
  }

  /** Moves the user's read receipt forward to `eventId` and tells the room. */
  receipt(userId: string, room: string, eventId: string, fromPeer = false): void {
    const joined = this.#requireJoined(room, userId)
    this.#limit(this.#receiptRate, userId, 'read receipt')
    const event = this.repos.events.get(eventId)
    if (!event || event.room_id !== room) throw new ParleyError('P_NOT_FOUND', 'event not found')
    if (!this.repos.receipts.advance(room, userId, event.seq, eventId, this.clock.now())) return
    if (!fromPeer) this.relay?.receipt(userId, room, eventId)
    this.setTypingQuietly(userId, room)
    this.hub.sendToUsers(
      joined,
      JSON.stringify({ type: 'receipt', room, user_id: userId, event_id: eventId, seq: event.seq }),
    )
  }

  presenceOf(userId: string): PresenceStatus {
    return this.#presence.get(userId) ?? (this.hub.isOnline(userId) ? 'online' : 'offline')
  }

  /**
   * Presence of `users` as `requester` may see it: the status of people who share a joined room with
   * them (or themselves), `offline` for anyone else, so the answer tells strangers nothing.
   */
  presenceFor(requester: string, users: readonly string[]): Record<string, PresenceStatus> {
    const rooms = this.repos.memberships
      .forUser(requester)
      .filter((m) => m.membership === 'join')
      .map((m) => this.members.joined(m.room_id))
    return Object.fromEntries(
      users.map((u) => [u, u === requester || rooms.some((r) => r.has(u)) ? this.presenceOf(u) : 'offline']),
    )
  }

  /** A client asked to change its presence (rate-limited; connect and disconnect are not). */
  requestPresence(userId: string, status: PresenceStatus): void {
    if (this.#presence.get(userId) === status) return
    this.#limit(this.#presenceRate, userId, 'presence')
    this.setPresence(userId, status)
  }

  /**
   * Presence of another server's user, from that server: the same rate limit, and only for a user
   * joined to a room where someone else is joined or invited (nobody else's presence is our business,
   * nor stored here). Invited counts: a room's owner announces its members' presence when someone
   * joins, which can arrive before our replica has applied that join.
   */
  remotePresence(userId: string, status: PresenceStatus): void {
    const shared = this.repos.memberships
      .forUser(userId)
      .some(
        (m) =>
          m.membership === 'join' &&
          this.repos.memberships
            .forRoom(m.room_id)
            .some((o) => o.user_id !== userId && (o.membership === 'join' || o.membership === 'invite')),
      )
    if (!shared) throw notMember()
    if (this.#presence.get(userId) === status) return
    this.#limit(this.#presenceRate, userId, 'presence')
    this.setPresence(userId, status, true)
  }

  /** Sets presence and tells everyone who shares a room with the user. */
  setPresence(userId: string, status: PresenceStatus, fromPeer = false): void {
    if (this.#presence.get(userId) === status) return
    if (!fromPeer) this.relay?.presence(userId, status)
    if (status === 'offline') this.#presence.delete(userId)
    else this.#presence.set(userId, status)
    const audience = new Set<string>()
    for (const m of this.repos.memberships.forUser(userId)) {
      if (m.membership === 'join') for (const u of this.members.joined(m.room_id)) audience.add(u)
    }
    this.hub.sendToUsers(audience, JSON.stringify({ type: 'presence', user_id: userId, status }))
  }

  /** The link to `server` went down: its users we knew as online or away are offline now. */
  peerDown(server: string): void {
    const suffix = `:${server}`
    for (const userId of [...this.#presence.keys()])
      if (userId.endsWith(suffix)) this.setPresence(userId, 'offline', true)
  }

  /** A user's last connection closed: they are offline and typing nowhere. */
  disconnected(userId: string): void {
    for (const [room, users] of this.#typing) if (users.has(userId)) this.setTypingQuietly(userId, room)
    this.setPresence(userId, 'offline')
  }
}
