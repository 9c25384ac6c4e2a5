import type { Database, Statement } from 'better-sqlite3'

/** One of this server's keys. The private seed is in the data directory, not here. */
export interface ServerKeyRow {
  kid: string
  /** Raw 32-byte Ed25519 public key. */
  public_key: Uint8Array
  created_ts: number
  /** `null` while current. */
  expired_ts: number | null
}

export class ServerKeysRepo {
  readonly #all: Statement<[], ServerKeyRow>
  readonly #get: Statement<[string], ServerKeyRow>
  readonly #insert: Statement<[string, Uint8Array, number, number | null]>
  readonly #expireCurrent: Statement<[number]>
  readonly #rotate: (kid: string, publicKey: Uint8Array, now: number) => void

  constructor(db: Database) {
    this.#all = db.prepare('SELECT * FROM server_keys ORDER BY created_ts, kid')
    this.#get = db.prepare('SELECT * FROM server_keys WHERE kid = ?')
    this.#insert = db.prepare(
      'INSERT INTO server_keys (kid, public_key, created_ts, expired_ts) VALUES (?, ?, ?, ?)',
    )
    this.#expireCurrent = db.prepare('UPDATE server_keys SET expired_ts = ? WHERE expired_ts IS NULL')
    this.#rotate = db.transaction((kid: string, publicKey: Uint8Array, now: number) => {
      this.#expireCurrent.run(now)
      this.#insert.run(kid, publicKey, now, null)
    })
  }

  /** Every key, oldest first. */
  all(): ServerKeyRow[] {
    return this.#all.all().map(normalise)
  }
  get(kid: string): ServerKeyRow | undefined {
    const row = this.#get.get(kid)
    return row && normalise(row)
  }
  insert(row: ServerKeyRow): void {
    this.#insert.run(row.kid, row.public_key, row.created_ts, row.expired_ts)
  }
  /** In one transaction: the current key expires at `now` and `kid` becomes current. */
  rotate(kid: string, publicKey: Uint8Array, now: number): void {
    this.#rotate(kid, publicKey, now)
  }
}

// better-sqlite3 returns BLOBs as Buffers; hand out plain Uint8Arrays like the rest of the code.
function normalise<T extends { public_key: Uint8Array }>(row: T): T {
  return { ...row, public_key: new Uint8Array(row.public_key) }
}
