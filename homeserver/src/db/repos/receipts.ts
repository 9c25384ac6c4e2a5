import type { Database, Statement } from 'better-sqlite3'

export class ReceiptsRepo {
  readonly #upsert: Statement<[string, string, number, string, number]>
  readonly #get: Statement<[string, string], { seq: number; event_id: string }>

  constructor(db: Database) {
    // A receipt only ever moves forward.
    this.#upsert = db.prepare(
      `INSERT INTO receipts (room_id, user_id, seq, event_id, ts) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (room_id, user_id) DO UPDATE SET seq = excluded.seq, event_id = excluded.event_id, ts = excluded.ts
       WHERE excluded.seq > receipts.seq`,
    )
    this.#get = db.prepare('SELECT seq, event_id FROM receipts WHERE room_id = ? AND user_id = ?')
  }

  /** Returns true if the receipt moved forward. */
  advance(roomId: string, userId: string, seq: number, eventId: string, now: number): boolean {
    return this.#upsert.run(roomId, userId, seq, eventId, now).changes > 0
  }
  get(roomId: string, userId: string): { seq: number; event_id: string } | undefined {
    return this.#get.get(roomId, userId)
  }
}
