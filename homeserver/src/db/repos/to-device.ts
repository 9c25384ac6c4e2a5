import type { Database, Statement } from 'better-sqlite3'

export interface ToDeviceRow {
  id: number
  device_id: string
  sender: string
  sender_device: string
  event_type: string
  content: string
  created_ts: number
}

export interface ToDeviceOutboxRow {
  id: number
  peer: string
  message_id: string
  frame: string
  created_ts: number
}

export class ToDeviceRepo {
  readonly #insert: Statement<[string, string, string, string, string, number]>
  readonly #pending: Statement<[string, number, number], ToDeviceRow>
  readonly #count: Statement<[string], { n: number }>
  readonly #ack: Statement<[string, number]>
  readonly #orphans: Statement<[]>
  readonly #txn: Statement<[string, string, number]>
  readonly #devicesOf: Statement<[string], { device_id: string }>
  readonly #outboxInsert: Statement<[string, string, string, number]>
  readonly #outboxFor: Statement<[string, number, number], ToDeviceOutboxRow>
  readonly #outboxDelete: Statement<[string, string]>
  readonly #outboxPeers: Statement<[], { peer: string }>
  readonly #seen: Statement<[string, string, number]>

  constructor(db: Database) {
    this.#insert = db.prepare(
      `INSERT INTO to_device_inbox (device_id, sender, sender_device, event_type, content, created_ts)
       VALUES (?, ?, ?, ?, ?, ?)`,
    )
    this.#pending = db.prepare(
      'SELECT * FROM to_device_inbox WHERE device_id = ? AND id > ? ORDER BY id LIMIT ?',
    )
    this.#count = db.prepare('SELECT COUNT(*) AS n FROM to_device_inbox WHERE device_id = ?')
    this.#ack = db.prepare('DELETE FROM to_device_inbox WHERE device_id = ? AND id <= ?')
    this.#orphans = db.prepare(
      'DELETE FROM to_device_inbox WHERE device_id NOT IN (SELECT device_id FROM devices)',
    )
    this.#txn = db.prepare(
      'INSERT OR IGNORE INTO to_device_txns (device_id, txn_id, created_ts) VALUES (?, ?, ?)',
    )
    this.#devicesOf = db.prepare(
      `SELECT d.device_id FROM devices d JOIN users u ON u.user_id = d.user_id
       WHERE d.user_id = ? AND u.deactivated = 0 ORDER BY d.device_id`,
    )
    this.#outboxInsert = db.prepare(
      'INSERT INTO to_device_outbox (peer, message_id, frame, created_ts) VALUES (?, ?, ?, ?)',
    )
    this.#outboxFor = db.prepare(
      'SELECT * FROM to_device_outbox WHERE peer = ? AND id > ? ORDER BY id LIMIT ?',
    )
    this.#outboxDelete = db.prepare('DELETE FROM to_device_outbox WHERE peer = ? AND message_id = ?')
    this.#outboxPeers = db.prepare('SELECT DISTINCT peer FROM to_device_outbox')
    this.#seen = db.prepare(
      'INSERT OR IGNORE INTO to_device_seen (origin, message_id, created_ts) VALUES (?, ?, ?)',
    )
  }

  /** Stores one message for one device; returns its id. */
  insert(
    deviceId: string,
    sender: string,
    senderDevice: string,
    eventType: string,
    content: string,
    now: number,
  ): number {
    return Number(this.#insert.run(deviceId, sender, senderDevice, eventType, content, now).lastInsertRowid)
  }
  /** Messages for a device after `afterId`, oldest first. */
  pending(deviceId: string, afterId: number, limit: number): ToDeviceRow[] {
    return this.#pending.all(deviceId, afterId, limit)
  }
  count(deviceId: string): number {
    return this.#count.get(deviceId)!.n
  }
  /** The device stored everything up to `upto`: delete it. */
  ack(deviceId: string, upto: number): number {
    return this.#ack.run(deviceId, upto).changes
  }
  /** Drops messages of devices that no longer exist (logged out). */
  purgeOrphans(): number {
    return this.#orphans.run().changes
  }
  /** Records a txn; false if the device used it before. */
  claimTxn(deviceId: string, txnId: string, now: number): boolean {
    return this.#txn.run(deviceId, txnId, now).changes === 1
  }
  /** Devices of an active user. */
  devicesOf(userId: string): string[] {
    return this.#devicesOf.all(userId).map((r) => r.device_id)
  }
  outboxInsert(peer: string, messageId: string, frame: string, now: number): void {
    this.#outboxInsert.run(peer, messageId, frame, now)
  }
  outboxFor(peer: string, afterId: number, limit: number): ToDeviceOutboxRow[] {
    return this.#outboxFor.all(peer, afterId, limit)
  }
  outboxDelete(peer: string, messageId: string): boolean {
    return this.#outboxDelete.run(peer, messageId).changes === 1
  }
  outboxPeers(): string[] {
    return this.#outboxPeers.all().map((r) => r.peer)
  }
  /** Records a relayed message id; false if we had it already. */
  markSeen(origin: string, messageId: string, now: number): boolean {
    return this.#seen.run(origin, messageId, now).changes === 1
  }
}
