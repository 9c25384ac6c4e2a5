import type { Database, Statement } from 'better-sqlite3'

export interface EventRow {
  stream_pos: number
  room_id: string
  seq: number
  event_id: string
  type: string
  state_key: string | null
  sender: string
  origin_ts: number
  v: number
  origin: string
  nonce: string
  content_hash: string
  prev: string
  owner_ts: number
  content: string | null
  owner_sig: string | null
  relates_to: string | null
  redacted_by: string | null
  origin_kid: string | null
  origin_sig: string | null
  owner_kid: string | null
}

/** The columns clients need (headers and envelopes stay on the server and in federation). */
export type ClientEventRow = Pick<
  EventRow,
  | 'stream_pos'
  | 'room_id'
  | 'seq'
  | 'event_id'
  | 'type'
  | 'state_key'
  | 'sender'
  | 'origin_ts'
  | 'content'
  | 'redacted_by'
>

export class EventsRepo {
  readonly #insert: Statement<
    [
      number,
      string,
      number,
      string,
      string,
      string | null,
      string,
      number,
      number,
      string,
      string,
      string,
      string,
      number,
      string | null,
      string | null,
      string | null,
      string | null,
    ]
  >
  readonly #setOwnerSig: Statement<[string, string, string]>
  readonly #range: Statement<[string, number, number, number], EventRow>
  readonly #atSeq: Statement<[string, number], EventRow>
  readonly #redact: Statement<[string, string]>
  readonly #redactEdits: Statement<[string, string]>
  readonly #byId: Statement<[string], EventRow>
  readonly #maxStream: Statement<[], { m: number | null }>
  readonly #history: Statement<[string, number, number, number], ClientEventRow>
  readonly #visibleSince: Statement<[string, number, number, number], ClientEventRow>
  readonly #txn: Statement<[string, string], { event_id: string; seq: number; room_id: string }>
  readonly #insertTxn: Statement<[string, string, string, number]>
  readonly #unread: Statement<[string, number, string, number], { n: number }>
  readonly #lastMessage: Statement<[string, number], ClientEventRow>
  readonly #lastSeq: Statement<[string, number], { seq: number }>
  readonly #reactionExists: Statement<[string, string, string], { event_id: string; content: string | null }>
  readonly #seqAtStream: Statement<[string, number], { seq: number }>
  readonly #firstOfType: Statement<[string, string], EventRow>

  constructor(db: Database) {
    this.#insert = db.prepare(
      `INSERT INTO events (stream_pos, room_id, seq, event_id, type, state_key, sender, origin_ts, v, origin, nonce,
         content_hash, prev, owner_ts, content, relates_to, origin_kid, origin_sig)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    this.#setOwnerSig = db.prepare('UPDATE events SET owner_kid = ?, owner_sig = ? WHERE event_id = ?')
    this.#range = db.prepare(
      'SELECT * FROM events WHERE room_id = ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?',
    )
    this.#atSeq = db.prepare('SELECT * FROM events WHERE room_id = ? AND seq = ?')
    this.#redact = db.prepare('UPDATE events SET content = NULL, redacted_by = ? WHERE event_id = ?')
    this.#redactEdits = db.prepare(
      "UPDATE events SET content = NULL, redacted_by = ? WHERE relates_to = ? AND type = 'm.edit' AND redacted_by IS NULL",
    )
    this.#byId = db.prepare('SELECT * FROM events WHERE event_id = ?')
    this.#maxStream = db.prepare('SELECT MAX(stream_pos) AS m FROM events')
    this.#history = db.prepare(
      `SELECT e.stream_pos, e.room_id, e.seq, e.event_id, e.type, e.state_key, e.sender, e.origin_ts, e.content, e.redacted_by FROM events e WHERE e.room_id = ? AND e.seq < ? AND e.stream_pos <= ? ORDER BY e.seq DESC LIMIT ?`,
    )
    // Walks the server-wide stream in order and keeps what the user may see: everything in rooms the
    // user is joined to; in rooms the user left after joining, everything up to the leave; and the
    // user's own latest membership event (an invite, a kick). The caller bounds the window, so one page
    // costs at most one window of index probes however busy the server is.
    this.#visibleSince = db.prepare(
      `SELECT e.stream_pos, e.room_id, e.seq, e.event_id, e.type, e.state_key, e.sender, e.origin_ts, e.content, e.redacted_by FROM events e
       JOIN memberships m ON m.room_id = e.room_id AND m.user_id = ?
       WHERE e.stream_pos > ? AND e.stream_pos <= ?
         AND (m.membership = 'join'
              OR e.stream_pos = m.stream_pos
              OR e.stream_pos <= m.left_pos)
       ORDER BY e.stream_pos LIMIT ?`,
    )
    this.#txn = db.prepare(
      `SELECT t.event_id, e.seq, e.room_id FROM txns t JOIN events e ON e.event_id = t.event_id
       WHERE t.device_id = ? AND t.txn_id = ?`,
    )
    this.#insertTxn = db.prepare(
      'INSERT INTO txns (device_id, txn_id, event_id, created_ts) VALUES (?, ?, ?, ?)',
    )
    this.#unread = db.prepare(
      // `+stream_pos`: the durable bound must not steer the planner to the stream index (which would
      // walk the room's whole history); the (room_id, seq) range covers only the unread part.
      `SELECT COUNT(*) AS n FROM events WHERE room_id = ? AND seq > ? AND type IN ('m.message', 'm.encrypted')
         AND sender != ? AND redacted_by IS NULL AND +stream_pos <= ?`,
    )
    this.#lastMessage = db.prepare(
      `SELECT e.stream_pos, e.room_id, e.seq, e.event_id, e.type, e.state_key, e.sender, e.origin_ts, e.content, e.redacted_by FROM events e WHERE e.room_id = ? AND e.type IN ('m.message', 'm.encrypted') AND e.stream_pos <= ? ORDER BY e.stream_pos DESC LIMIT 1`,
    )
    this.#lastSeq = db.prepare(
      'SELECT seq FROM events WHERE room_id = ? AND stream_pos <= ? ORDER BY stream_pos DESC LIMIT 1',
    )
    this.#reactionExists = db.prepare(
      `SELECT event_id, content FROM events WHERE relates_to = ? AND type = 'm.reaction' AND sender = ?
         AND redacted_by IS NULL AND room_id = ?`,
    )
    this.#seqAtStream = db.prepare('SELECT seq FROM events WHERE room_id = ? AND stream_pos = ?')
    this.#firstOfType = db.prepare('SELECT * FROM events WHERE room_id = ? AND type = ? ORDER BY seq LIMIT 1')
  }

  insert(row: Omit<EventRow, 'owner_sig' | 'owner_kid' | 'redacted_by'>): void {
    this.#insert.run(
      row.stream_pos,
      row.room_id,
      row.seq,
      row.event_id,
      row.type,
      row.state_key,
      row.sender,
      row.origin_ts,
      row.v,
      row.origin,
      row.nonce,
      row.content_hash,
      row.prev,
      row.owner_ts,
      row.content,
      row.relates_to,
      row.origin_kid,
      row.origin_sig,
    )
  }
  setOwnerSig(eventId: string, kid: string, sig: string): void {
    this.#setOwnerSig.run(kid, sig, eventId)
  }
  /** Full rows of a room from `fromSeq` to `toSeq` (inclusive), in seq order (federation). */
  range(roomId: string, fromSeq: number, toSeq: number, limit: number): EventRow[] {
    return this.#range.all(roomId, fromSeq, toSeq, limit)
  }
  /** The event at `seq` in a room, if this server holds it. */
  atSeq(roomId: string, seq: number): EventRow | undefined {
    return this.#atSeq.get(roomId, seq)
  }
  /** Drops an event's content; its header (and so its id and signatures) stays verifiable. */
  redact(eventId: string, redactedBy: string): void {
    this.#redact.run(redactedBy, eventId)
  }
  /** Drops the content of every edit of `target` (they carry its text). */
  redactEdits(target: string, redactedBy: string): void {
    this.#redactEdits.run(redactedBy, target)
  }
  get(eventId: string): EventRow | undefined {
    return this.#byId.get(eventId)
  }
  maxStreamPos(): number {
    return this.#maxStream.get()!.m ?? 0
  }
  /** Events of a room before `beforeSeq` and at most at stream position `upto`, newest first. */
  history(roomId: string, beforeSeq: number, upto: number, limit: number): ClientEventRow[] {
    return this.#history.all(roomId, beforeSeq, upto, limit)
  }
  visibleSince(userId: string, since: number, upto: number, limit: number): ClientEventRow[] {
    return this.#visibleSince.all(userId, since, upto, limit)
  }
  txn(deviceId: string, txnId: string): { event_id: string; seq: number; room_id: string } | undefined {
    return this.#txn.get(deviceId, txnId)
  }
  insertTxn(deviceId: string, txnId: string, eventId: string, now: number): void {
    this.#insertTxn.run(deviceId, txnId, eventId, now)
  }
  /** Messages from others after `afterSeq`, up to stream position `upto`. */
  unreadCount(roomId: string, afterSeq: number, userId: string, upto: number): number {
    return this.#unread.get(roomId, afterSeq, userId, upto)!.n
  }
  /** The seq of the room's newest event at or before stream position `upto` (0 if none). */
  lastSeq(roomId: string, upto: number): number {
    return this.#lastSeq.get(roomId, upto)?.seq ?? 0
  }
  lastMessage(roomId: string, upto: number): ClientEventRow | undefined {
    return this.#lastMessage.get(roomId, upto)
  }
  /** The sender's live reactions to `target` in `roomId`. */
  reactions(
    roomId: string,
    target: string,
    sender: string,
  ): Array<{ event_id: string; content: string | null }> {
    return this.#reactionExists.all(target, sender, roomId)
  }
  /** The seq of the event of `roomId` at stream position `streamPos`. */
  /** The room's first event of a type (a scan of the room's events: callers cache the answer). */
  firstOfType(roomId: string, type: string): EventRow | undefined {
    return this.#firstOfType.get(roomId, type)
  }
  seqAtStream(roomId: string, streamPos: number): number | undefined {
    return this.#seqAtStream.get(roomId, streamPos)?.seq
  }
}
