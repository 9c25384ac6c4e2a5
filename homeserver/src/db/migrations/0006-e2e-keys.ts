import type { Database } from 'better-sqlite3'

/**
 * End-to-end encryption keys (E2E.md sections 2.1, 2.2 and 2.5; docs/protocol.md, "Keys"): our users'
 * signed device lists and per-device signed prekeys, the last answer about each remote user (served
 * while their server cannot be reached), and opaque key backups. Documents are stored as the canonical
 * JSON the schema accepted; the server never holds a private key.
 */
export function up(db: Database): void {
  db.exec(`
    -- The newest device list of each local user; version and hash make rollback checks one lookup.
    CREATE TABLE device_lists (
      user_id    TEXT PRIMARY KEY,
      uik        TEXT NOT NULL,
      version    INTEGER NOT NULL CHECK (version >= 1),
      hash       TEXT NOT NULL,
      document   TEXT NOT NULL,
      updated_ts INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    -- The current signed prekey of each local device (a new one replaces it).
    CREATE TABLE signed_prekeys (
      device_id  TEXT PRIMARY KEY,
      user_id    TEXT NOT NULL,
      document   TEXT NOT NULL,
      updated_ts INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX signed_prekeys_by_user ON signed_prekeys (user_id, device_id);

    -- The last answer a remote user's server gave about them (device list may be absent).
    CREATE TABLE remote_keys (
      user_id     TEXT PRIMARY KEY,
      device_list TEXT,
      prekeys     TEXT NOT NULL,
      fetched_ts  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    -- One key backup per user: its current version and UIK-signed metadata (opaque to us).
    CREATE TABLE key_backups (
      user_id    TEXT PRIMARY KEY,
      version    TEXT NOT NULL,
      metadata   TEXT NOT NULL,
      updated_ts INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    -- Encrypted session records of the current backup version (a new version drops them).
    CREATE TABLE key_backup_sessions (
      user_id    TEXT NOT NULL,
      room_id    TEXT NOT NULL,
      session_id TEXT NOT NULL,
      record     TEXT NOT NULL,
      updated_ts INTEGER NOT NULL,
      PRIMARY KEY (user_id, room_id, session_id)
    ) STRICT, WITHOUT ROWID;
  `)
}
