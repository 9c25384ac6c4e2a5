import type { Database, Statement } from 'better-sqlite3'

export interface DeviceRow {
  device_id: string
  user_id: string
  display_name: string
  access_hash: Buffer
  access_expires_ts: number
  refresh_hash: Buffer
  refresh_expires_ts: number
  created_ts: number
  last_seen_ts: number
}

export interface NewDevice {
  deviceId: string
  userId: string
  displayName: string
  accessHash: Buffer
  accessExpiresTs: number
  refreshHash: Buffer
  refreshExpiresTs: number
  now: number
}

/** Devices and their token hashes: one row per login. Deleting the row revokes both tokens. */
export class DevicesRepo {
  readonly #insert: Statement<[string, string, string, Buffer, number, Buffer, number, number, number]>
  readonly #byAccess: Statement<[Buffer], DeviceRow>
  readonly #byId: Statement<[string], DeviceRow>
  readonly #rotate: Statement<[Buffer, number, Buffer, number, number, string]>
  readonly #delete: Statement<[string]>
  readonly #spend: Statement<[string]>
  readonly #spentBy: Statement<[Buffer], { device_id: string }>
  readonly #forgetSpent: Statement<[string]>
  readonly #forgetSpentForUser: Statement<[string]>
  readonly #expired: Statement<[number], { device_id: string }>
  readonly #deleteForUser: Statement<[string]>
  readonly #idsForUser: Statement<[string], { device_id: string }>

  constructor(db: Database) {
    this.#insert = db.prepare(
      `INSERT INTO devices (device_id, user_id, display_name, access_hash, access_expires_ts, refresh_hash,
         refresh_expires_ts, created_ts, last_seen_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    this.#byAccess = db.prepare('SELECT * FROM devices WHERE access_hash = ?')
    this.#byId = db.prepare('SELECT * FROM devices WHERE device_id = ?')
    this.#rotate = db.prepare(
      `UPDATE devices SET access_hash = ?, access_expires_ts = ?, refresh_hash = ?, refresh_expires_ts = ?,
         last_seen_ts = ? WHERE device_id = ?`,
    )
    this.#spend = db.prepare(
      'INSERT OR IGNORE INTO spent_refresh_tokens (hash, device_id) SELECT refresh_hash, device_id FROM devices WHERE device_id = ?',
    )
    this.#expired = db.prepare('SELECT device_id FROM devices WHERE refresh_expires_ts <= ?')
    this.#spentBy = db.prepare('SELECT device_id FROM spent_refresh_tokens WHERE hash = ?')
    this.#forgetSpent = db.prepare('DELETE FROM spent_refresh_tokens WHERE device_id = ?')
    this.#forgetSpentForUser = db.prepare(
      'DELETE FROM spent_refresh_tokens WHERE device_id IN (SELECT device_id FROM devices WHERE user_id = ?)',
    )
    this.#delete = db.prepare('DELETE FROM devices WHERE device_id = ?')
    this.#deleteForUser = db.prepare('DELETE FROM devices WHERE user_id = ?')
    this.#idsForUser = db.prepare('SELECT device_id FROM devices WHERE user_id = ?')
  }

  insert(d: NewDevice): void {
    this.#insert.run(
      d.deviceId,
      d.userId,
      d.displayName,
      d.accessHash,
      d.accessExpiresTs,
      d.refreshHash,
      d.refreshExpiresTs,
      d.now,
      d.now,
    )
  }
  byAccessHash(hash: Buffer): DeviceRow | undefined {
    return this.#byAccess.get(hash)
  }
  get(deviceId: string): DeviceRow | undefined {
    return this.#byId.get(deviceId)
  }
  rotate(
    deviceId: string,
    accessHash: Buffer,
    accessExp: number,
    refreshHash: Buffer,
    refreshExp: number,
    now: number,
  ) {
    // Remember the spent refresh token first: reuse of any earlier one is detected (AUTH-4).
    this.#spend.run(deviceId)
    this.#rotate.run(accessHash, accessExp, refreshHash, refreshExp, now, deviceId)
  }
  /** The device that once used this refresh token hash, if any. */
  spentBy(hash: Buffer): string | undefined {
    return this.#spentBy.get(hash)?.device_id
  }
  delete(deviceId: string): boolean {
    this.#forgetSpent.run(deviceId)
    return this.#delete.run(deviceId).changes > 0
  }
  /** Deletes every device of a user and returns their ids. */
  deleteForUser(userId: string): string[] {
    const ids = this.#idsForUser.all(userId).map((r) => r.device_id)
    this.#forgetSpentForUser.run(userId)
    this.#deleteForUser.run(userId)
    return ids
  }
  /** Devices whose refresh token has expired: their sessions can never come back. */
  expired(now: number): string[] {
    return this.#expired.all(now).map((r) => r.device_id)
  }
}
