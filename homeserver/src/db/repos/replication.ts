import type { Database, Statement } from 'better-sqlite3'

/** Owner side: one peer's replication state for one room we own. */
export interface CursorRow {
  peer: string
  room_id: string
  acked_seq: number
  /** Seq of the event that removed the peer's last member; `null` while it has members. */
  until_seq: number | null
}

/** Origin side: an event of one of our users waiting for (or answered by) the room's owner. */
export interface OutboxRow {
  id: number
  owner: string
  room_id: string
  event_id: string
  device_id: string
  txn_id: string
  header: string
  content: string
  origin_kid: string
  origin_sig: string
  state: 'pending' | 'acked' | 'rejected'
  seq: number | null
  errcode: string | null
  error: string | null
  created_ts: number
}

export type NewOutboxRow = Omit<OutboxRow, 'id' | 'state' | 'seq' | 'errcode' | 'error'>

export class ReplicationRepo {
  readonly #cursor: Statement<[string, string], CursorRow>
  readonly #cursors: Statement<[], CursorRow>
  readonly #open: Statement<[string, string]>
  readonly #closeAt: Statement<[number, string, string]>
  readonly #ack: Statement<[number, string, string]>
  readonly #setAcked: Statement<[number, string, string]>
  readonly #drop: Statement<[string, string]>
  readonly #dropIfDone: Statement<[string, string, number]>
  readonly #outboxInsert: Statement<
    [string, string, string, string, string, string, string, string, string, number]
  >
  readonly #outboxByTxn: Statement<[string, string], OutboxRow>
  readonly #outboxByEvent: Statement<[string], OutboxRow>
  readonly #outboxPending: Statement<[string, number, number, number], OutboxRow>
  readonly #outboxOwners: Statement<[], { owner: string }>
  readonly #outboxMaxId: Statement<[], { m: number | null }>
  readonly #outboxSettle: Statement<[string, number | null, string | null, string | null, string]>
  readonly #outboxPurge: Statement<[number]>
  readonly #acknowledgedJoin: Statement<[string, string], { n: number }>

  constructor(db: Database) {
    this.#cursor = db.prepare('SELECT * FROM peer_cursors WHERE peer = ? AND room_id = ?')
    this.#cursors = db.prepare('SELECT * FROM peer_cursors')
    this.#open = db.prepare(
      `INSERT INTO peer_cursors (peer, room_id) VALUES (?, ?)
       ON CONFLICT (peer, room_id) DO UPDATE SET until_seq = NULL`,
    )
    this.#closeAt = db.prepare('UPDATE peer_cursors SET until_seq = ? WHERE peer = ? AND room_id = ?')
    this.#ack = db.prepare(
      'UPDATE peer_cursors SET acked_seq = max(acked_seq, ?) WHERE peer = ? AND room_id = ?',
    )
    this.#setAcked = db.prepare('UPDATE peer_cursors SET acked_seq = ? WHERE peer = ? AND room_id = ?')
    this.#drop = db.prepare('DELETE FROM peer_cursors WHERE peer = ? AND room_id = ?')
    this.#dropIfDone = db.prepare(
      'DELETE FROM peer_cursors WHERE peer = ? AND room_id = ? AND until_seq IS NOT NULL AND until_seq <= ?',
    )
    this.#outboxInsert = db.prepare(
      `INSERT INTO outbox (owner, room_id, event_id, device_id, txn_id, header, content, origin_kid, origin_sig,
         state, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)`,
    )
    this.#outboxByTxn = db.prepare('SELECT * FROM outbox WHERE device_id = ? AND txn_id = ?')
    this.#outboxByEvent = db.prepare('SELECT * FROM outbox WHERE event_id = ?')
    this.#outboxPending = db.prepare(
      `SELECT * FROM outbox WHERE owner = ? AND state = 'pending' AND id > ? AND id <= ? ORDER BY id LIMIT ?`,
    )
    this.#outboxOwners = db.prepare(`SELECT DISTINCT owner FROM outbox WHERE state = 'pending'`)
    this.#outboxMaxId = db.prepare('SELECT MAX(id) AS m FROM outbox')
    this.#outboxSettle = db.prepare(
      `UPDATE outbox SET state = ?, seq = ?, errcode = ?, error = ? WHERE event_id = ? AND state = 'pending'`,
    )
    this.#outboxPurge = db.prepare(`DELETE FROM outbox WHERE state != 'pending' AND created_ts < ?`)
    this.#acknowledgedJoin = db.prepare(
      `SELECT COUNT(*) AS n FROM outbox WHERE room_id = ? AND state = 'acked'
         AND json_extract(header, '$.type') = 'm.member' AND json_extract(header, '$.state_key') = ?
         AND json_extract(content, '$.membership') = 'join'`,
    )
  }

  cursor(peer: string, roomId: string): CursorRow | undefined {
    return this.#cursor.get(peer, roomId)
  }
  /** Every cursor (start-up: which peers replicate which rooms). */
  cursors(): CursorRow[] {
    return this.#cursors.all()
  }
  /** The peer replicates the room (again): a new row starts at 0. */
  open(peer: string, roomId: string): void {
    this.#open.run(peer, roomId)
  }
  /** The peer's last member left at `seq`: it gets the room up to there. */
  closeAt(peer: string, roomId: string, seq: number): void {
    this.#closeAt.run(seq, peer, roomId)
  }
  /** Records an acknowledgement (never moves backwards). */
  ack(peer: string, roomId: string, seq: number): void {
    this.#ack.run(seq, peer, roomId)
  }
  /** Sets the cursor to what the replica says it holds (it may have lost data). */
  setAcked(peer: string, roomId: string, seq: number): void {
    this.#setAcked.run(seq, peer, roomId)
  }
  drop(peer: string, roomId: string): void {
    this.#drop.run(peer, roomId)
  }
  /** Deletes the cursor if the peer's users are gone and it holds the room up to their departure. */
  dropIfDone(peer: string, roomId: string, heldSeq: number): void {
    this.#dropIfDone.run(peer, roomId, heldSeq)
  }

  outboxInsert(row: NewOutboxRow): void {
    this.#outboxInsert.run(
      row.owner,
      row.room_id,
      row.event_id,
      row.device_id,
      row.txn_id,
      row.header,
      row.content,
      row.origin_kid,
      row.origin_sig,
      row.created_ts,
    )
  }
  outboxByTxn(deviceId: string, txnId: string): OutboxRow | undefined {
    return this.#outboxByTxn.get(deviceId, txnId)
  }
  outboxByEvent(eventId: string): OutboxRow | undefined {
    return this.#outboxByEvent.get(eventId)
  }
  /** Pending submissions to `owner` with `afterId` < id <= `maxId`, oldest first. */
  outboxPending(owner: string, afterId: number, maxId: number, limit: number): OutboxRow[] {
    return this.#outboxPending.all(owner, afterId, maxId, limit)
  }
  /** The newest outbox id (0 if none). */
  outboxMaxId(): number {
    return this.#outboxMaxId.get()!.m ?? 0
  }
  /** Owners with pending submissions (dialled at start-up). */
  outboxOwners(): string[] {
    return this.#outboxOwners.all().map((r) => r.owner)
  }
  /** Records the owner's answer; false if the row was not pending (a repeated answer). */
  outboxSettle(eventId: string, answer: { seq: number } | { errcode: string; error: string }): boolean {
    const result =
      'seq' in answer
        ? this.#outboxSettle.run('acked', answer.seq, null, null, eventId)
        : this.#outboxSettle.run('rejected', null, answer.errcode, answer.error, eventId)
    return result.changes === 1
  }
  /** Whether the owner acknowledged a membership event of `userId` that we sent for `roomId`. */
  acknowledgedJoin(roomId: string, userId: string): boolean {
    return this.#acknowledgedJoin.get(roomId, userId)!.n > 0
  }
  /** Forgets answered submissions older than `beforeTs` (their txn ids can no longer be retried). */
  outboxPurge(beforeTs: number): number {
    return this.#outboxPurge.run(beforeTs).changes
  }
}
