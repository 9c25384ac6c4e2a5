import type { Database, Statement } from 'better-sqlite3'

export interface MediaRow {
  media_id: string
  owner: string
  room_id: string
  sha256: string
  size: number
  content_type: string
  filename: string
  created_ts: number
}

export class MediaRepo {
  readonly #insert: Statement<[string, string, string, string, number, string, string, number]>
  readonly #get: Statement<[string], MediaRow>

  constructor(db: Database) {
    this.#insert = db.prepare(
      `INSERT INTO media (media_id, owner, room_id, sha256, size, content_type, filename, created_ts)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    this.#get = db.prepare('SELECT * FROM media WHERE media_id = ?')
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
    )
  }
  get(mediaId: string): MediaRow | undefined {
    return this.#get.get(mediaId)
  }
}
