import type { Database } from 'better-sqlite3'

/** Accounts, devices (one per login, holding its token hashes), rooms, memberships, events, receipts, media. */
export function up(db: Database): void {
  db.exec(`
    CREATE TABLE users (
      user_id       TEXT PRIMARY KEY,
      localpart     TEXT NOT NULL UNIQUE,
      password_hash TEXT NOT NULL,
      display_name  TEXT NOT NULL DEFAULT '',
      created_ts    INTEGER NOT NULL,
      deactivated   INTEGER NOT NULL DEFAULT 0
    ) STRICT;

    CREATE TABLE devices (
      device_id          TEXT PRIMARY KEY,
      user_id            TEXT NOT NULL REFERENCES users(user_id),
      display_name       TEXT NOT NULL DEFAULT '',
      access_hash        BLOB NOT NULL UNIQUE,
      access_expires_ts  INTEGER NOT NULL,
      refresh_hash       BLOB NOT NULL,
      refresh_expires_ts INTEGER NOT NULL,
      created_ts         INTEGER NOT NULL,
      last_seen_ts       INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX devices_by_user ON devices(user_id);

    -- Every refresh token a device has used: presenting one again is theft (AUTH-4).
    CREATE TABLE spent_refresh_tokens (
      hash      BLOB PRIMARY KEY,
      device_id TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX spent_refresh_by_device ON spent_refresh_tokens(device_id);

    CREATE TABLE rooms (
      room_id    TEXT PRIMARY KEY,
      kind       TEXT NOT NULL CHECK (kind IN ('dm', 'group', 'broadcast')),
      creator    TEXT NOT NULL,
      name       TEXT NOT NULL DEFAULT '',
      topic      TEXT NOT NULL DEFAULT '',
      encrypted  INTEGER NOT NULL DEFAULT 0,
      created_ts INTEGER NOT NULL,
      last_seq   INTEGER NOT NULL DEFAULT 0,
      head_hash  TEXT NOT NULL
    ) STRICT;

    CREATE TABLE memberships (
      room_id     TEXT NOT NULL,
      user_id     TEXT NOT NULL,
      membership  TEXT NOT NULL CHECK (membership IN ('invite', 'join', 'leave', 'ban')),
      level       INTEGER NOT NULL DEFAULT 0,
      -- Stream position where the user's last period as a joined member ended (0: never left one).
      -- A former member reads the room up to here and no further (AC-3).
      left_pos    INTEGER NOT NULL DEFAULT 0,
      stream_pos  INTEGER NOT NULL,
      PRIMARY KEY (room_id, user_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX memberships_by_user ON memberships(user_id, membership);

    CREATE TABLE events (
      stream_pos  INTEGER PRIMARY KEY,
      room_id     TEXT NOT NULL,
      seq         INTEGER NOT NULL,
      event_id    TEXT NOT NULL UNIQUE,
      type        TEXT NOT NULL,
      state_key   TEXT,
      sender      TEXT NOT NULL,
      origin_ts   INTEGER NOT NULL,
      -- The rest of the signed header and of the owner's envelope (both are rebuilt from the columns,
      -- canonical JSON being deterministic): storing them as JSON repeated room, sender, type, times.
      v            INTEGER NOT NULL,
      origin       TEXT NOT NULL,
      nonce        TEXT NOT NULL,
      content_hash TEXT NOT NULL,
      prev         TEXT NOT NULL,
      owner_ts     INTEGER NOT NULL,
      content     TEXT,
      owner_sig   TEXT,
      relates_to  TEXT,
      redacted_by TEXT,
      UNIQUE (room_id, seq)
    ) STRICT;
    -- Sync: a user's rooms, each range-scanned by stream position within the page window.
    CREATE INDEX events_by_room_stream ON events(room_id, stream_pos);
    CREATE INDEX events_by_relation ON events(relates_to) WHERE relates_to IS NOT NULL;

    CREATE TABLE txns (
      device_id  TEXT NOT NULL,
      txn_id     TEXT NOT NULL,
      event_id   TEXT NOT NULL,
      created_ts INTEGER NOT NULL,
      PRIMARY KEY (device_id, txn_id)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE receipts (
      room_id  TEXT NOT NULL,
      user_id  TEXT NOT NULL,
      seq      INTEGER NOT NULL,
      event_id TEXT NOT NULL,
      ts       INTEGER NOT NULL,
      PRIMARY KEY (room_id, user_id)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE media (
      media_id     TEXT PRIMARY KEY,
      owner        TEXT NOT NULL,
      room_id      TEXT NOT NULL,
      sha256       TEXT NOT NULL,
      size         INTEGER NOT NULL,
      content_type TEXT NOT NULL,
      filename     TEXT NOT NULL,
      created_ts   INTEGER NOT NULL
    ) STRICT;
  `)
}
