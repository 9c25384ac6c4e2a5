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
  /** A replica that started from a snapshot holds the log after this seq only (0: all of it). */
  base_seq: number
}

export class RoomsRepo {
  readonly #insert: Statement<[string, string, string, number, number, string]>
  readonly #get: Statement<[string], RoomRow>
  readonly #setHead: Statement<[number, string, string]>
  readonly #setName: Statement<[string, string]>
  readonly #setTopic: Statement<[string, string]>
  readonly #setEncrypted: Statement<[string]>
  readonly #insertReplica: Statement<
    [string, string, string, number, string, string, number, number, string, number]
  >
  readonly #ownedBy: Statement<[string], { room_id: string; last_seq: number }>

  constructor(db: Database) {
    this.#insert = db.prepare(
      'INSERT INTO rooms (room_id, kind, creator, encrypted, created_ts, head_hash) VALUES (?, ?, ?, ?, ?, ?)',
    )
    this.#get = db.prepare('SELECT * FROM rooms WHERE room_id = ?')
    this.#setHead = db.prepare('UPDATE rooms SET last_seq = ?, head_hash = ? WHERE room_id = ?')
    this.#setName = db.prepare('UPDATE rooms SET name = ? WHERE room_id = ?')
    this.#setTopic = db.prepare('UPDATE rooms SET topic = ? WHERE room_id = ?')
    this.#setEncrypted = db.prepare('UPDATE rooms SET encrypted = 1 WHERE room_id = ?')
    this.#insertReplica = db.prepare(
      `INSERT INTO rooms (room_id, kind, creator, encrypted, name, topic, created_ts, last_seq, head_hash, base_seq)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    // Room ids end in ':' + owner; the owner part never contains ':' (server names have no port here).
    this.#ownedBy = db.prepare(`SELECT room_id, last_seq FROM rooms WHERE room_id LIKE '%:' || ?`)
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
  /** A replica's copy of a room, created from the owner's snapshot. */
  insertReplica(row: Omit<RoomRow, 'created_ts'>, now: number): void {
    this.#insertReplica.run(
      row.room_id,
      row.kind,
      row.creator,
      row.encrypted,
      row.name,
      row.topic,
      now,
      row.last_seq,
      row.head_hash,
      row.base_seq,
    )
  }
  /** Rooms of one owner server that this server holds (a replica's resume list). */
  ownedBy(server: string): Array<{ room_id: string; last_seq: number }> {
    return this.#ownedBy.all(server).filter((r) => r.room_id.endsWith(':' + server))
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
  /** End-to-end encryption is on for good (there is no way back). */
  setEncrypted(roomId: string): void {
    this.#setEncrypted.run(roomId)
  }
}
