import type { Database, Statement } from 'better-sqlite3'

export interface RoomRow {
  room_id: string
  kind: 'dm' | 'group' | 'broadcast'
  creator: string
  name: string
  topic: string
  encrypted: number
  created_ts: number
  last_seq: number
  head_hash: string
}

export class RoomsRepo {
  readonly #insert: Statement<[string, string, string, number, number, string]>
  readonly #get: Statement<[string], RoomRow>
  readonly #setHead: Statement<[number, string, string]>
  readonly #setName: Statement<[string, string]>
  readonly #setTopic: Statement<[string, string]>

  constructor(db: Database) {
    this.#insert = db.prepare(
      'INSERT INTO rooms (room_id, kind, creator, encrypted, created_ts, head_hash) VALUES (?, ?, ?, ?, ?, ?)',
    )
    this.#get = db.prepare('SELECT * FROM rooms WHERE room_id = ?')
    this.#setHead = db.prepare('UPDATE rooms SET last_seq = ?, head_hash = ? WHERE room_id = ?')
    this.#setName = db.prepare('UPDATE rooms SET name = ? WHERE room_id = ?')
    this.#setTopic = db.prepare('UPDATE rooms SET topic = ? WHERE room_id = ?')
  }

  insert(
    roomId: string,
    kind: string,
    creator: string,
    encrypted: boolean,
    now: number,
    headHash: string,
  ): void {
    this.#insert.run(roomId, kind, creator, encrypted ? 1 : 0, now, headHash)
  }
  get(roomId: string): RoomRow | undefined {
    return this.#get.get(roomId)
  }
  setHead(roomId: string, seq: number, headHash: string): void {
    this.#setHead.run(seq, headHash, roomId)
  }
  setName(roomId: string, name: string): void {
    this.#setName.run(name, roomId)
  }
  setTopic(roomId: string, topic: string): void {
    this.#setTopic.run(topic, roomId)
  }
}
