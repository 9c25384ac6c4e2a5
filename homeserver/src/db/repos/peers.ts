import type { Database, Statement } from 'better-sqlite3'

export type PeerState = 'trusted' | 'quarantined'

/** A federation peer whose keys we fetched. */
export interface PeerRow {
  server_name: string
  state: PeerState
  /** Why the peer is quarantined (or was last re-trusted); `null` when there is nothing to say. */
  reason: string | null
  first_seen_ts: number
  updated_ts: number
}

/** A key pinned for a peer. */
export interface PeerKeyRow {
  server_name: string
  kid: string
  /** Raw 32-byte Ed25519 public key. */
  public_key: Uint8Array
  pinned_ts: number
  /** `null` while the peer uses it; otherwise it verifies only what was signed before this time. */
  expired_ts: number | null
}

export class PeersRepo {
  readonly #get: Statement<[string], PeerRow>
  readonly #list: Statement<[], PeerRow>
  readonly #upsert: Statement<[string, PeerState, string | null, number, number]>
  readonly #forget: Statement<[string]>
  readonly #keys: Statement<[string], PeerKeyRow>
  readonly #key: Statement<[string, string], PeerKeyRow>
  readonly #pinKey: Statement<[string, string, Uint8Array, number, number | null]>
  readonly #expireKey: Statement<[number, string, string]>

  constructor(db: Database) {
    this.#get = db.prepare('SELECT * FROM peers WHERE server_name = ?')
    this.#list = db.prepare('SELECT * FROM peers ORDER BY server_name')
    this.#upsert = db.prepare(
      `INSERT INTO peers (server_name, state, reason, first_seen_ts, updated_ts) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (server_name) DO UPDATE SET state = excluded.state, reason = excluded.reason,
         updated_ts = excluded.updated_ts`,
    )
    this.#forget = db.prepare('DELETE FROM peers WHERE server_name = ?')
    this.#keys = db.prepare('SELECT * FROM peer_keys WHERE server_name = ? ORDER BY pinned_ts, kid')
    this.#key = db.prepare('SELECT * FROM peer_keys WHERE server_name = ? AND kid = ?')
    this.#pinKey = db.prepare(
      `INSERT INTO peer_keys (server_name, kid, public_key, pinned_ts, expired_ts) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (server_name, kid) DO UPDATE SET public_key = excluded.public_key,
         expired_ts = excluded.expired_ts, pinned_ts = excluded.pinned_ts`,
    )
    this.#expireKey = db.prepare('UPDATE peer_keys SET expired_ts = ? WHERE server_name = ? AND kid = ?')
  }

  get(server: string): PeerRow | undefined {
    return this.#get.get(server)
  }
  list(): PeerRow[] {
    return this.#list.all()
  }
  /** Creates the peer (first seen `now`) or sets its state and reason. */
  setState(server: string, state: PeerState, reason: string | null, now: number): void {
    this.#upsert.run(server, state, reason, now, now)
  }
  /** Deletes the peer and every key pinned for it. */
  forget(server: string): boolean {
    return this.#forget.run(server).changes > 0
  }
  keys(server: string): PeerKeyRow[] {
    return this.#keys.all(server).map(normalise)
  }
  key(server: string, kid: string): PeerKeyRow | undefined {
    const row = this.#key.get(server, kid)
    return row && normalise(row)
  }
  /** Pins (or re-pins) a key. The peer row must exist. */
  pinKey(server: string, kid: string, publicKey: Uint8Array, expiredTs: number | null, now: number): void {
    this.#pinKey.run(server, kid, publicKey, now, expiredTs)
  }
  expireKey(server: string, kid: string, expiredTs: number): void {
    this.#expireKey.run(expiredTs, server, kid)
  }
}

// better-sqlite3 returns BLOBs as Buffers; hand out plain Uint8Arrays like the rest of the code.
function normalise(row: PeerKeyRow): PeerKeyRow {
  return { ...row, public_key: new Uint8Array(row.public_key) }
}
