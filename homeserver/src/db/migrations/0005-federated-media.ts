import type { Database } from 'better-sqlite3'

/**
 * Federated media (docs/federation.md, "Media"): each local upload records the stream position it was
 * made at (a member who left after it may still read it, one who left before may not), and copies of
 * other servers' media are kept in their own table, keyed by (origin, media_id): media ids are only
 * unique on the server that minted them, and a peer must never be able to shadow one of ours.
 */
export function up(db: Database): void {
  db.exec(`
    ALTER TABLE media ADD COLUMN stream_pos INTEGER NOT NULL DEFAULT 0;
    -- Uploads from before this migration: as if made now (members who already left keep no access).
    UPDATE media SET stream_pos = (SELECT COALESCE(MAX(stream_pos), 0) FROM events);

    CREATE TABLE remote_media (
      origin       TEXT NOT NULL,
      media_id     TEXT NOT NULL,
      room_id      TEXT NOT NULL,
      sha256       TEXT NOT NULL,
      size         INTEGER NOT NULL,
      content_type TEXT NOT NULL,
      filename     TEXT NOT NULL,
      -- Our stream position when the copy arrived: a local member who left before it may not read it.
      stream_pos   INTEGER NOT NULL,
      fetched_ts   INTEGER NOT NULL,
      PRIMARY KEY (origin, media_id)
    ) STRICT, WITHOUT ROWID;
  `)
}
