import type { Database, Statement } from 'better-sqlite3'

export interface UserRow {
  user_id: string
  localpart: string
  password_hash: string
  display_name: string
  created_ts: number
  deactivated: number
}

export class UsersRepo {
  readonly #insert: Statement<[string, string, string, string, number]>
  readonly #byId: Statement<[string], UserRow>
  readonly #setPassword: Statement<[string, string]>
  readonly #setDisplayName: Statement<[string, string]>
  readonly #deactivate: Statement<[string]>
  readonly #search: Statement<[string, string, string, number], Pick<UserRow, 'user_id' | 'display_name'>>
  readonly #count: Statement<[], { n: number }>

  constructor(db: Database) {
    this.#insert = db.prepare(
      'INSERT INTO users (user_id, localpart, password_hash, display_name, created_ts) VALUES (?, ?, ?, ?, ?)',
    )
    this.#byId = db.prepare('SELECT * FROM users WHERE user_id = ?')
    this.#setPassword = db.prepare('UPDATE users SET password_hash = ? WHERE user_id = ?')
    this.#setDisplayName = db.prepare('UPDATE users SET display_name = ? WHERE user_id = ?')
    this.#deactivate = db.prepare('UPDATE users SET deactivated = 1 WHERE user_id = ?')
    // Prefix search on the localpart or the display name; LIKE patterns are escaped by the caller.
    this.#search = db.prepare(
      `SELECT user_id, display_name FROM users
       WHERE deactivated = 0 AND (localpart LIKE ? ESCAPE '\\' OR display_name LIKE ? ESCAPE '\\' OR display_name LIKE ? ESCAPE '\\')
       ORDER BY localpart LIMIT ?`,
    )
    this.#count = db.prepare('SELECT COUNT(*) AS n FROM users')
  }

  insert(userId: string, localpart: string, passwordHash: string, displayName: string, now: number): void {
    this.#insert.run(userId, localpart, passwordHash, displayName, now)
  }
  get(userId: string): UserRow | undefined {
    return this.#byId.get(userId)
  }
  setPassword(userId: string, hash: string): boolean {
    return this.#setPassword.run(hash, userId).changes > 0
  }
  setDisplayName(userId: string, name: string): void {
    this.#setDisplayName.run(name, userId)
  }
  deactivate(userId: string): boolean {
    return this.#deactivate.run(userId).changes > 0
  }
  /** Users whose localpart or display name (or a word of it) starts with `prefix`. */
  search(prefix: string, limit: number): Array<Pick<UserRow, 'user_id' | 'display_name'>> {
    const escaped = prefix.replace(/[\\%_]/g, (ch) => '\\' + ch)
    return this.#search.all(`${escaped.toLowerCase()}%`, `${escaped}%`, `% ${escaped}%`, limit)
  }
  count(): number {
    return this.#count.get()!.n
  }
}
