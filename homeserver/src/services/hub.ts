/**
 * Live delivery: who is connected, and which room members get which frame. Frames are serialised
 * once per event and written to each recipient's sockets; a reader that falls too far behind is
 * disconnected by its connection (see {@link LiveConnection.send}) and catches up with `sync`.
 */
import { MemberContent } from '@parley/protocol/schema'
import type { Repos } from '../db/repos/index.ts'
import { eventFrameJson } from './event-json.ts'
import type { CommittedEvent } from './sequencer.ts'

/** A client connection as the services see it (the WebSocket gateway implements it). */
export interface LiveConnection {
  readonly userId: string
  readonly deviceId: string
  /** True once the connection's catch-up sync has finished; only live connections get pushed events. */
  readonly live: boolean
  /** Queues a frame. The connection closes itself if its buffer is over the limit. */
  send(frame: string): void
  close(code: number, reason: string): void
}

/** Joined local members of each room, kept current from committed membership events. */
export class RoomMembers {
  readonly #joined = new Map<string, Set<string>>()

  constructor(private readonly repos: Repos) {}

  /** Joined members of a room (loaded once, then maintained). */
  joined(room: string): ReadonlySet<string> {
    let set = this.#joined.get(room)
    if (!set) {
      set = new Set(
        this.repos.memberships
          .forRoom(room)
          .filter((m) => m.membership === 'join')
          .map((m) => m.user_id),
      )
      // Only rooms with members are remembered: made-up room ids in typing frames must not grow memory.
      if (set.size > 0) this.#joined.set(room, set)
    }
    return set
  }

  /** Applies a committed membership event. */
  apply(event: CommittedEvent): void {
    if (event.type !== 'm.member') return
    const set = this.#joined.get(event.room_id)
    if (!set) return // not loaded yet: the next load reads the committed state
    // Stored content was validated on the way in; parse it with its schema all the same.
    const membership = MemberContent.parse(JSON.parse(event.content)).membership
    if (membership === 'join') set.add(event.state_key!)
    else set.delete(event.state_key!)
  }
}

export class Hub {
  readonly #byUser = new Map<string, Set<LiveConnection>>()

  constructor(private readonly members: RoomMembers) {}

  add(conn: LiveConnection): void {
    let set = this.#byUser.get(conn.userId)
    if (!set) this.#byUser.set(conn.userId, (set = new Set()))
    set.add(conn)
  }

  remove(conn: LiveConnection): void {
    const set = this.#byUser.get(conn.userId)
    if (!set) return
    set.delete(conn)
    if (set.size === 0) this.#byUser.delete(conn.userId)
  }

  connectionsOf(userId: string): ReadonlySet<LiveConnection> {
    return this.#byUser.get(userId) ?? new Set()
  }

  /** Users with at least one live connection. */
  onlineUsers(): IterableIterator<string> {
    return this.#byUser.keys()
  }

  isOnline(userId: string): boolean {
    return this.#byUser.has(userId)
  }

  /** Sends a frame to every live connection of the given users. */
  sendToUsers(users: Iterable<string>, frame: string): void {
    for (const user of users) {
      const conns = this.#byUser.get(user)
      if (!conns) continue
      for (const c of conns) if (c.live) c.send(frame)
    }
  }

  /** Fans out a batch of committed events in stream order; membership changes apply before the next event. */
  publish(events: readonly CommittedEvent[]): void {
    for (const event of events) {
      this.members.apply(event)
      const frame = eventFrameJson(event)
      const recipients = this.members.joined(event.room_id)
      this.sendToUsers(recipients, frame)
      // The subject of a membership change hears about it even when it removes them (invite, kick, ban).
      if (event.type === 'm.member' && !recipients.has(event.state_key!))
        this.sendToUsers([event.state_key!], frame)
    }
  }

  /** Closes every connection of the given devices (revoked sessions). */
  closeDevices(deviceIds: readonly string[], code: number, reason: string): void {
    const wanted = new Set(deviceIds)
    for (const set of this.#byUser.values()) {
      for (const c of [...set]) if (wanted.has(c.deviceId)) c.close(code, reason)
    }
  }

  /** Closes everything (shutdown). */
  closeAll(code: number, reason: string): void {
    for (const set of [...this.#byUser.values()]) for (const c of [...set]) c.close(code, reason)
  }
}
