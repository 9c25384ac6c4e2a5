/** Opens the homeserver's SQLite database: WAL, one writer, migrations in one transaction each. */
import BetterSqlite3, { type Database } from 'better-sqlite3'
import { MIGRATIONS, type Migration } from './migrations/index.ts'

export type { Database }

/** How hard a commit is made durable: FULL survives power loss, NORMAL survives a process crash. */
export type SyncMode = 'FULL' | 'NORMAL'

export interface OpenOptions {
  readonly synchronous?: SyncMode
  readonly readonly?: boolean
}

/** Thrown when the database was written by newer code than this. */
export class SchemaTooNewError extends Error {
  override name = 'SchemaTooNewError'
}

/** Opens (creating if needed) and migrates the database at `path`. */
export function openDatabase(path: string, options: OpenOptions = {}): Database {
  const db = new BetterSqlite3(path, { readonly: options.readonly ?? false })
  try {
    db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${options.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`)
    db.pragma('foreign_keys = ON')
    db.pragma('busy_timeout = 5000')
    // Checkpoint less often: 38k -> 54k rows/s on this machine kind (shared/PERF.md). The server
    // raises it further and checkpoints in a worker thread (db/checkpointer.ts).
    db.pragma('wal_autocheckpoint = 10000')
    if (!options.readonly) migrate(db, MIGRATIONS)
    return db
  } catch (err) {
    db.close()
    throw err
  }
}

/** Applies every migration newer than `user_version`, each in its own transaction. */
export function migrate(db: Database, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number
  const latest = migrations.at(-1)?.version ?? 0
  if (current > latest) {
    throw new SchemaTooNewError(`database schema ${current} is newer than this homeserver (${latest})`)
  }
  for (const migration of migrations) {
    if (migration.version <= current) continue
    db.transaction(() => {
      migration.up(db)
      db.pragma(`user_version = ${migration.version}`)
    })()
  }
}
