import type { Database } from 'better-sqlite3'

/**
 * Secret storage (E2E.md section 2.5; docs/protocol.md, "Keys"): one opaque document per user holding
 * their identity key and backup key sealed under a key derived from their recovery key, so a new
 * device can recover the identity with the recovery key alone. The server never holds that key.
 */
export function up(db: Database): void {
  db.exec(`
    CREATE TABLE secret_storage (
      user_id    TEXT PRIMARY KEY,
      document   TEXT NOT NULL,
      updated_ts INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
  `)
}
