import type { Database } from 'better-sqlite3'

/**
 * Owner-sequenced replication across servers (DESIGN.md sections 4 and 6; docs/federation.md,
 * "Replication"). Signatures record their key id, so a rotation never orphans what the old key signed.
 */
export function up(db: Database): void {
  db.exec(`
    -- The origin's signature over the header, kept for events another server originated, so this server
    -- can hand them on to a third verifiably. NULL where origin = owner (the owner's chain covers it).
    ALTER TABLE events ADD COLUMN origin_kid TEXT;
    ALTER TABLE events ADD COLUMN origin_sig TEXT;
    -- Key id of owner_sig (which exists on the newest envelope of each committed batch).
    ALTER TABLE events ADD COLUMN owner_kid TEXT;

    -- A replica that started from a snapshot holds the room's log after this seq only.
    ALTER TABLE rooms ADD COLUMN base_seq INTEGER NOT NULL DEFAULT 0;

    -- Owner side: the peers that replicate each room we own and the highest seq each acknowledged (after
    -- its commit). A peer that is away costs one integer per room, never a growing queue. A row is
    -- written in the transaction of the membership event that gives the peer's server its first
    -- member; when its last member goes, until_seq is that event's seq: the peer still gets the events up
    -- to it (so it learns of the leave), then the row is deleted.
    CREATE TABLE peer_cursors (
      peer      TEXT NOT NULL,
      room_id   TEXT NOT NULL,
      acked_seq INTEGER NOT NULL DEFAULT 0,
      until_seq INTEGER,
      PRIMARY KEY (peer, room_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX peer_cursors_by_room ON peer_cursors (room_id);

    -- Origin side: events our users sent to rooms another server owns, signed and kept until the owner
    -- answers. state: pending (not acknowledged), acked (sequenced at seq), rejected (errcode, error).
    -- AUTOINCREMENT: ids are never reused after a purge, so a link's send position stays valid.
    CREATE TABLE outbox (
      id         INTEGER PRIMARY KEY AUTOINCREMENT,
      owner      TEXT NOT NULL,
      room_id    TEXT NOT NULL,
      event_id   TEXT NOT NULL UNIQUE,
      device_id  TEXT NOT NULL,
      txn_id     TEXT NOT NULL,
      header     TEXT NOT NULL,
      content    TEXT NOT NULL,
      origin_kid TEXT NOT NULL,
      origin_sig TEXT NOT NULL,
      state      TEXT NOT NULL CHECK (state IN ('pending', 'acked', 'rejected')),
      seq        INTEGER,
      errcode    TEXT,
      error      TEXT,
      created_ts INTEGER NOT NULL,
      UNIQUE (device_id, txn_id)
    ) STRICT;
    CREATE INDEX outbox_pending ON outbox (owner, id) WHERE state = 'pending';
  `)
}
