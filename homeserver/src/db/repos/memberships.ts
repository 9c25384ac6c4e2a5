import type { Database, Statement } from 'better-sqlite3'
import type { Membership } from '@parley/protocol/schema'

export interface MembershipRow {
  room_id: string
  user_id: string
  membership: Membership
  level: number
  /** Stream position where the last joined period ended; 0 if the user never left a joined state. */
  left_pos: number
  /** Stream position of the event that set this membership. */
  stream_pos: number
}

/** A membership with the `m.member` event that set it, if this server holds that event. */
export interface MembershipWithEvent extends MembershipRow {
  sender: string | null
  seq: number | null
  content: string | null
}

export class MembershipsRepo {
  readonly #get: Statement<[string, string], MembershipRow>
  readonly #upsert: Statement<[string, string, string, number, number]>
  readonly #setLevel: Statement<[number, string, string]>
  readonly #forRoom: Statement<[string], MembershipRow>
  readonly #forUser: Statement<[string], MembershipRow>
  readonly #joinedCount: Statement<[string], { n: number }>
  readonly #serverMemberSince: Statement<[string, number, string, number], { one: number }>
  readonly #sharesRoomWith: Statement<[string, number, string], { one: number }>
  readonly #withEvents: Statement<[string], MembershipWithEvent>

  constructor(db: Database) {
    this.#get = db.prepare('SELECT * FROM memberships WHERE room_id = ? AND user_id = ?')
    this.#upsert = db.prepare(
      `INSERT INTO memberships (room_id, user_id, membership, level, stream_pos) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, stream_pos = excluded.stream_pos,
         left_pos = CASE WHEN membership = 'join' AND excluded.membership != 'join' THEN excluded.stream_pos ELSE left_pos END,
         level = CASE WHEN excluded.membership = 'join' THEN level ELSE 0 END`,
    )
    this.#setLevel = db.prepare('UPDATE memberships SET level = ? WHERE room_id = ? AND user_id = ?')
    this.#forRoom = db.prepare('SELECT * FROM memberships WHERE room_id = ?')
    this.#forUser = db.prepare('SELECT * FROM memberships WHERE user_id = ?')
    this.#joinedCount = db.prepare(
      "SELECT COUNT(*) AS n FROM memberships WHERE room_id = ? AND membership = 'join'",
    )
    // User ids end in ':' + server (ASCII): a suffix compare, no LIKE (no wildcards to escape).
    this.#serverMemberSince = db.prepare(
      `SELECT 1 AS one FROM memberships WHERE room_id = ? AND substr(user_id, -?) = ?
         AND (membership = 'join' OR left_pos > ?) LIMIT 1`,
    )
    this.#sharesRoomWith = db.prepare(
      `SELECT 1 AS one FROM memberships me JOIN memberships them ON them.room_id = me.room_id
       WHERE me.user_id = ? AND me.membership = 'join' AND substr(them.user_id, -?) = ? LIMIT 1`,
    )
    // stream_pos is the events table's primary key: one lookup per member. A server that started the
    // room from a snapshot may not hold an old member's event (then the event columns are null).
    this.#withEvents = db.prepare(
      `SELECT m.*, e.sender AS sender, e.seq AS seq, e.content AS content FROM memberships m
       LEFT JOIN events e ON e.stream_pos = m.stream_pos AND e.type = 'm.member' AND e.state_key = m.user_id
       WHERE m.room_id = ?`,
    )
  }

  get(roomId: string, userId: string): MembershipRow | undefined {
    return this.#get.get(roomId, userId)
  }
  /** Records a membership change. Leaving resets the level; the level of a (re)joining user is kept at 0 unless set. */
  set(roomId: string, userId: string, membership: Membership, streamPos: number): void {
    this.#upsert.run(roomId, userId, membership, 0, streamPos)
  }
  setLevel(roomId: string, userId: string, level: number): void {
    this.#setLevel.run(level, roomId, userId)
  }
  forRoom(roomId: string): MembershipRow[] {
    return this.#forRoom.all(roomId)
  }
  forUser(userId: string): MembershipRow[] {
    return this.#forUser.all(userId)
  }
  /**
   * Whether a user of `server` is joined to the room, or left it (was kicked, banned) after stream
   * position `sincePos`: that server had a member while something of that moment was shared.
   */
  serverMemberSince(roomId: string, server: string, sincePos: number): boolean {
    const suffix = `:${server}`
    return this.#serverMemberSince.get(roomId, suffix.length, suffix, sincePos) !== undefined
  }
  /** Whether `userId` is joined to some room in which a user of `server` has a membership row. */
  sharesRoomWith(userId: string, server: string): boolean {
    const suffix = `:${server}`
    return this.#sharesRoomWith.get(userId, suffix.length, suffix) !== undefined
  }
  /** Every membership of a room (any state) with its `m.member` event's sender, seq and content. */
  withEvents(roomId: string): MembershipWithEvent[] {
    return this.#withEvents.all(roomId)
  }
  joinedCount(roomId: string): number {
    return this.#joinedCount.get(roomId)!.n
  }
}
