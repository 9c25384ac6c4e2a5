import type { Database, Statement } from 'better-sqlite3'

/** A local user's newest device list. */
export interface DeviceListRow {
  user_id: string
  uik: string
  version: number
  /** `H(DL)` as the crypto core computes it (base64url): the next list's `prev_hash`. */
  hash: string
  /** Canonical JSON of the signed list. */
  document: string
  updated_ts: number
}

/** The last answer a remote user's server gave about them. */
export interface RemoteKeysRow {
  user_id: string
  device_list: string | null
  /** JSON object: device id -> signed prekey. */
  prekeys: string
  fetched_ts: number
}

export interface BackupRow {
  user_id: string
  version: string
  metadata: string
  updated_ts: number
}

export interface BackupSessionRow {
  room_id: string
  session_id: string
  record: string
}

export class KeysRepo {
  readonly #deviceList: Statement<[string], DeviceListRow>
  readonly #putDeviceList: Statement<[string, string, number, string, string, number]>
  readonly #prekeysOf: Statement<[string], { device_id: string; document: string }>
  readonly #putPrekey: Statement<[string, string, string, number]>
  readonly #shares: Statement<[string, string], { one: number }>
  readonly #sharesWithServer: Statement<[string, number, string], { one: number }>
  readonly #coMembers: Statement<[string], { user_id: string }>
  readonly #remote: Statement<[string], RemoteKeysRow>
  readonly #putRemote: Statement<[string, string | null, string, number]>
  readonly #dropRemote: Statement<[string]>
  readonly #backup: Statement<[string], BackupRow>
  readonly #putBackup: Statement<[string, string, string, number]>
  readonly #dropSessions: Statement<[string]>
  readonly #sessions: Statement<[string], BackupSessionRow>
  readonly #putSession: Statement<[string, string, string, string, number]>
  readonly #sessionStats: Statement<[string], { n: number; bytes: number }>
  readonly #session: Statement<[string, string, string], { record: string }>
  readonly #secretStorage: Statement<[string], { document: string }>
  readonly #putSecretStorage: Statement<[string, string, number]>

  constructor(db: Database) {
    this.#deviceList = db.prepare('SELECT * FROM device_lists WHERE user_id = ?')
    this.#putDeviceList = db.prepare(
      `INSERT INTO device_lists (user_id, uik, version, hash, document, updated_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET uik = excluded.uik, version = excluded.version,
         hash = excluded.hash, document = excluded.document, updated_ts = excluded.updated_ts`,
    )
    // Devices that still exist only: a signed-out device's prekey is never served again.
    this.#prekeysOf = db.prepare(
      `SELECT p.device_id, p.document FROM signed_prekeys p JOIN devices d ON d.device_id = p.device_id
       WHERE p.user_id = ? ORDER BY p.device_id`,
    )
    this.#putPrekey = db.prepare(
      `INSERT INTO signed_prekeys (device_id, user_id, document, updated_ts) VALUES (?, ?, ?, ?)
       ON CONFLICT (device_id) DO UPDATE SET document = excluded.document, updated_ts = excluded.updated_ts`,
    )
    // The key directory's visibility rule: a room in common, joined or invited on both sides.
    this.#shares = db.prepare(
      `SELECT 1 AS one FROM memberships me JOIN memberships them ON them.room_id = me.room_id
       WHERE me.user_id = ? AND me.membership IN ('join', 'invite')
         AND them.user_id = ? AND them.membership IN ('join', 'invite') LIMIT 1`,
    )
    // User ids end in ':' + server (ASCII): a suffix compare, no LIKE (no wildcards to escape).
    this.#sharesWithServer = db.prepare(
      `SELECT 1 AS one FROM memberships me JOIN memberships them ON them.room_id = me.room_id
       WHERE me.user_id = ? AND me.membership IN ('join', 'invite')
         AND substr(them.user_id, -?) = ? AND them.membership IN ('join', 'invite') LIMIT 1`,
    )
    this.#coMembers = db.prepare(
      `SELECT DISTINCT them.user_id FROM memberships me JOIN memberships them ON them.room_id = me.room_id
       WHERE me.user_id = ? AND me.membership IN ('join', 'invite') AND them.membership IN ('join', 'invite')`,
    )
    this.#remote = db.prepare('SELECT * FROM remote_keys WHERE user_id = ?')
    this.#putRemote = db.prepare(
      `INSERT INTO remote_keys (user_id, device_list, prekeys, fetched_ts) VALUES (?, ?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET device_list = excluded.device_list, prekeys = excluded.prekeys,
         fetched_ts = excluded.fetched_ts`,
    )
    this.#dropRemote = db.prepare('DELETE FROM remote_keys WHERE user_id = ?')
    this.#backup = db.prepare('SELECT * FROM key_backups WHERE user_id = ?')
    this.#putBackup = db.prepare(
      `INSERT INTO key_backups (user_id, version, metadata, updated_ts) VALUES (?, ?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, metadata = excluded.metadata,
         updated_ts = excluded.updated_ts`,
    )
    this.#dropSessions = db.prepare('DELETE FROM key_backup_sessions WHERE user_id = ?')
    this.#sessions = db.prepare(
      'SELECT room_id, session_id, record FROM key_backup_sessions WHERE user_id = ? ORDER BY room_id, session_id',
    )
    this.#putSession = db.prepare(
      `INSERT INTO key_backup_sessions (user_id, room_id, session_id, record, updated_ts) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (user_id, room_id, session_id) DO UPDATE SET record = excluded.record,
         updated_ts = excluded.updated_ts`,
    )
    this.#sessionStats = db.prepare(
      'SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(record)), 0) AS bytes FROM key_backup_sessions WHERE user_id = ?',
    )
    this.#session = db.prepare(
      'SELECT record FROM key_backup_sessions WHERE user_id = ? AND room_id = ? AND session_id = ?',
    )
    this.#secretStorage = db.prepare('SELECT document FROM secret_storage WHERE user_id = ?')
    this.#putSecretStorage = db.prepare(
      `INSERT INTO secret_storage (user_id, document, updated_ts) VALUES (?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET document = excluded.document, updated_ts = excluded.updated_ts`,
    )
  }

  deviceList(userId: string): DeviceListRow | undefined {
    return this.#deviceList.get(userId)
  }
  putDeviceList(row: DeviceListRow): void {
    this.#putDeviceList.run(row.user_id, row.uik, row.version, row.hash, row.document, row.updated_ts)
  }
  /** Signed prekeys of a user's existing devices, as stored JSON. */
  prekeysOf(userId: string): Array<{ device_id: string; document: string }> {
    return this.#prekeysOf.all(userId)
  }
  putPrekey(deviceId: string, userId: string, document: string, now: number): void {
    this.#putPrekey.run(deviceId, userId, document, now)
  }
  /** Whether two users share a room, joined or invited on both sides. */
  sharesRoom(userId: string, otherId: string): boolean {
    return this.#shares.get(userId, otherId) !== undefined
  }
  /** Whether `userId` shares a room (joined or invited, both sides) with some user of `server`. */
  sharesRoomWithServer(userId: string, server: string): boolean {
    const suffix = `:${server}`
    return this.#sharesWithServer.get(userId, suffix.length, suffix) !== undefined
  }
  /** Everyone who shares a room with the user (joined or invited, both sides), the user included. */
  coMembers(userId: string): string[] {
    return this.#coMembers.all(userId).map((r) => r.user_id)
  }
  remote(userId: string): RemoteKeysRow | undefined {
    return this.#remote.get(userId)
  }
  putRemote(row: RemoteKeysRow): void {
    this.#putRemote.run(row.user_id, row.device_list, row.prekeys, row.fetched_ts)
  }
  dropRemote(userId: string): void {
    this.#dropRemote.run(userId)
  }
  backup(userId: string): BackupRow | undefined {
    return this.#backup.get(userId)
  }
  /** A new backup version: its metadata replaces the old, whose records can no longer be opened. */
  replaceBackup(row: BackupRow): void {
    this.#putBackup.run(row.user_id, row.version, row.metadata, row.updated_ts)
    this.#dropSessions.run(row.user_id)
  }
  sessions(userId: string): BackupSessionRow[] {
    return this.#sessions.all(userId)
  }
  session(userId: string, roomId: string, sessionId: string): string | undefined {
    return this.#session.get(userId, roomId, sessionId)?.record
  }
  putSession(userId: string, row: BackupSessionRow, now: number): void {
    this.#putSession.run(userId, row.room_id, row.session_id, row.record, now)
  }
  /** Records and bytes of record text a user's backup holds. */
  sessionStats(userId: string): { n: number; bytes: number } {
    return this.#sessionStats.get(userId)!
  }
  /** The user's secret storage document (opaque JSON), if any. */
  secretStorage(userId: string): string | undefined {
    return this.#secretStorage.get(userId)?.document
  }
  putSecretStorage(userId: string, document: string, now: number): void {
    this.#putSecretStorage.run(userId, document, now)
  }
}
