import type { Database } from 'better-sqlite3'

/**
 * To-device messages (DESIGN.md section 5; E2E key sharing): per-device inboxes, emptied by the
 * device's acknowledgement; an outbox and a seen-list for those that cross servers.
 */
export function up(db: Database): void {
  db.exec(`
    -- AUTOINCREMENT: ids never come back after deletions, so "everything after id N" stays exact
    -- (a connection's delivery window and the outbox's send position rely on it).
    CREATE TABLE to_device_inbox (
      id            INTEGER PRIMARY KEY AUTOINCREMENT,
      device_id     TEXT NOT NULL,
      sender        TEXT NOT NULL,
      sender_device TEXT NOT NULL,
      event_type    TEXT NOT NULL,
      content       TEXT NOT NULL,
      created_ts    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX to_device_by_device ON to_device_inbox (device_id, id);

    -- A device's to_device txn ids: a retried frame is stored once.
    CREATE TABLE to_device_txns (
      device_id  TEXT NOT NULL,
      txn_id     TEXT NOT NULL,
      created_ts INTEGER NOT NULL,
      PRIMARY KEY (device_id, txn_id)
    ) STRICT, WITHOUT ROWID;

    -- Messages for users of other servers, until that server acknowledges them.
    CREATE TABLE to_device_outbox (
      id         INTEGER PRIMARY KEY AUTOINCREMENT,
      peer       TEXT NOT NULL,
      message_id TEXT NOT NULL UNIQUE,
      frame      TEXT NOT NULL,
      created_ts INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX to_device_outbox_by_peer ON to_device_outbox (peer, id);

    -- Messages other servers relayed to us: a re-sent one is stored once.
    CREATE TABLE to_device_seen (
      origin     TEXT NOT NULL,
      message_id TEXT NOT NULL,
      created_ts INTEGER NOT NULL,
      PRIMARY KEY (origin, message_id)
    ) STRICT, WITHOUT ROWID;
  `)
}
