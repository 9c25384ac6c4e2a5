import type { Database, Statement } from 'better-sqlite3'

/** Media uploaded here. */
export interface MediaRow {
  media_id: string
  owner: string
  room_id: string
  sha256: string
  size: number
  content_type: string
  filename: string
  created_ts: number
  /** Our stream position when it was uploaded. */
  stream_pos: number
}

/** A copy of media another server holds (`origin`), fetched over federation. */
export interface RemoteMediaRow {
  origin: string
  media_id: string
  room_id: string
  sha256: string
  size: number
  content_type: string
  filename: string
  /** Our stream position when the copy arrived. */
  stream_pos: number
  fetched_ts: number
}

export class MediaRepo {
  readonly #insert: Statement<[string, string, string, string, number, string, string, number, number]>
  readonly #get: Statement<[string], MediaRow>
  readonly #insertRemote: Statement<[string, string, string, string, number, string, string, number, number]>
  readonly #getRemote: Statement<[string, string], RemoteMediaRow>

  constructor(db: Database) {
    this.#insert = db.prepare(
      `INSERT INTO media (media_id, owner, room_id, sha256, size, content_type, filename, created_ts, stream_pos)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    this.#get = db.prepare('SELECT * FROM media WHERE media_id = ?')
    // A copy that raced another fetch of the same media is the same media: keep the first.
    this.#insertRemote = db.prepare(
      `INSERT INTO remote_media (origin, media_id, room_id, sha256, size, content_type, filename, stream_pos, fetched_ts)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, media_id) DO NOTHING`,
    )
    this.#getRemote = db.prepare('SELECT * FROM remote_media WHERE origin = ? AND media_id = ?')
  }

  insert(m: MediaRow): void {
    this.#insert.run(
      m.media_id,
      m.owner,
      m.room_id,
      m.sha256,
      m.size,
      m.content_type,
      m.filename,
      m.created_ts,
      m.stream_pos,
    )
  }
  get(mediaId: string): MediaRow | undefined {
    return this.#get.get(mediaId)
  }

  insertRemote(m: RemoteMediaRow): void {
    this.#insertRemote.run(
      m.origin,
      m.media_id,
      m.room_id,
      m.sha256,
      m.size,
      m.content_type,
      m.filename,
      m.stream_pos,
      m.fetched_ts,
    )
  }
  getRemote(origin: string, mediaId: string): RemoteMediaRow | undefined {
    return this.#getRemote.get(origin, mediaId)
  }
}
