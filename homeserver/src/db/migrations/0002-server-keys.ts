import type { Database } from 'better-sqlite3'

/**
 * Server keys and peers (DESIGN.md sections 6-7). Private seeds stay in files in the data directory
 * (`keys/`, mode 0600); the database holds public keys and trust decisions only.
 */
export function up(db: Database): void {
  db.exec(`
    -- Every key this server ever had. expired_ts is NULL while the key is current; a retired key is
    -- kept forever so that what it signed before expired_ts still verifies.
    CREATE TABLE server_keys (
      kid        TEXT PRIMARY KEY,
      public_key BLOB NOT NULL CHECK (length(public_key) = 32),
      created_ts INTEGER NOT NULL,
      expired_ts INTEGER
    ) STRICT;
    -- At most one current key.
    CREATE UNIQUE INDEX server_keys_one_current ON server_keys (ifnull(expired_ts, 0)) WHERE expired_ts IS NULL;

    -- Servers we fetched keys from: trusted, or quarantined (lookups fail) until an admin acts.
    CREATE TABLE peers (
      server_name   TEXT PRIMARY KEY,
      state         TEXT NOT NULL CHECK (state IN ('trusted', 'quarantined')),
      reason        TEXT,
      first_seen_ts INTEGER NOT NULL,
      updated_ts    INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;

    -- Keys pinned for a peer. expired_ts NULL: current; otherwise the key verifies only what was signed
    -- before it. Rows are never reused for another key: a peer's key ids are never reused.
    CREATE TABLE peer_keys (
      server_name TEXT NOT NULL REFERENCES peers (server_name) ON DELETE CASCADE,
      kid         TEXT NOT NULL,
      public_key  BLOB NOT NULL CHECK (length(public_key) = 32),
      pinned_ts   INTEGER NOT NULL,
      expired_ts  INTEGER,
      PRIMARY KEY (server_name, kid)
    ) STRICT, WITHOUT ROWID;
  `)
}
