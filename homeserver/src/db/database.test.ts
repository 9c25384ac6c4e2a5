import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import BetterSqlite3 from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { migrate, openDatabase, SchemaTooNewError, type Database } from './database.ts'
import { MIGRATIONS } from './migrations/index.ts'

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})
async function freshPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'parley-db-'))
  dirs.push(dir)
  return join(dir, 'test.db')
}

describe('migrations', () => {
  it('numbers migrations 1..n without gaps', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1))
  })

  /** A database migrated up to `version` only. */
  async function migratedTo(version: number): Promise<Database> {
    const db = new BetterSqlite3(await freshPath())
    db.pragma('foreign_keys = ON')
    migrate(db, MIGRATIONS.slice(0, version))
    return db
  }
  const tablesOf = (db: Database) =>
    db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{
      name: string
      sql: string
    }>

  it('opens in WAL mode with synchronous FULL and applies every migration', async () => {
    const db = openDatabase(await freshPath())
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length)
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(db.pragma('synchronous', { simple: true })).toBe(2) // FULL
    db.close()
  })

  it('0001 creates STRICT tables and sets user_version', async () => {
    const db = await migratedTo(1)
    expect(db.pragma('user_version', { simple: true })).toBe(1)
    const tables = tablesOf(db)
    expect(tables.map((t) => t.name)).toEqual([
      'devices',
      'events',
      'media',
      'memberships',
      'receipts',
      'rooms',
      'spent_refresh_tokens',
      'txns',
      'users',
    ])
    for (const t of tables) expect(t.sql, t.name).toMatch(/STRICT/)
    db.close()
  })

  it('0002 adds STRICT server_keys, peers and peer_keys tables', async () => {
    const db = await migratedTo(2)
    expect(db.pragma('user_version', { simple: true })).toBe(2)
    const added = tablesOf(db).filter((t) => ['server_keys', 'peers', 'peer_keys'].includes(t.name))
    expect(added.map((t) => t.name)).toEqual(['peer_keys', 'peers', 'server_keys'])
    for (const t of added) expect(t.sql, t.name).toMatch(/STRICT/)
    db.close()
  })

  it('0002 upgrades a v1 database that holds data without losing it', async () => {
    const db = await migratedTo(1)
    db.prepare(
      "INSERT INTO users (user_id, localpart, password_hash, created_ts) VALUES ('@a:acme.example', 'a', 'h', 1)",
    ).run()
    db.prepare(
      `INSERT INTO rooms (room_id, kind, creator, created_ts, head_hash)
       VALUES ('!AAAAAAAAAAAAAAAAAAAAAA:acme.example', 'group', '@a:acme.example', 2, 'x')`,
    ).run()
    migrate(db, MIGRATIONS)
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length)
    expect(db.prepare('SELECT user_id, localpart FROM users').all()).toEqual([
      { user_id: '@a:acme.example', localpart: 'a' },
    ])
    expect(db.prepare('SELECT room_id, kind FROM rooms').all()).toEqual([
      { room_id: '!AAAAAAAAAAAAAAAAAAAAAA:acme.example', kind: 'group' },
    ])
    expect(db.prepare('SELECT COUNT(*) AS n FROM server_keys').get()).toEqual({ n: 0 })
    db.close()
  })

  it('0002 allows one current server key and 32-byte public keys only', async () => {
    const db = await migratedTo(2)
    const insert = db.prepare(
      'INSERT INTO server_keys (kid, public_key, created_ts, expired_ts) VALUES (?, ?, ?, ?)',
    )
    insert.run('ed25519:a', Buffer.alloc(32), 1, 5)
    insert.run('ed25519:b', Buffer.alloc(32), 5, null)
    expect(() => insert.run('ed25519:c', Buffer.alloc(32), 6, null)).toThrow(/UNIQUE/)
    expect(() => insert.run('ed25519:d', Buffer.alloc(31), 6, 7)).toThrow(/CHECK/)
    expect(() => insert.run('ed25519:e', 'not a blob', 6, 7)).toThrow()
    db.close()
  })

  it('0002 keeps peer keys only for known peers and drops them with the peer', async () => {
    const db = await migratedTo(2)
    const pin = db.prepare(
      "INSERT INTO peer_keys (server_name, kid, public_key, pinned_ts) VALUES ('beta.example', ?, ?, 1)",
    )
    expect(() => pin.run('ed25519:a', Buffer.alloc(32))).toThrow(/FOREIGN KEY/)
    db.prepare(
      "INSERT INTO peers (server_name, state, first_seen_ts, updated_ts) VALUES ('beta.example', 'trusted', 1, 1)",
    ).run()
    pin.run('ed25519:a', Buffer.alloc(32))
    expect(() =>
      db.prepare("UPDATE peers SET state = 'maybe' WHERE server_name = 'beta.example'").run(),
    ).toThrow(/CHECK/)
    db.prepare("DELETE FROM peers WHERE server_name = 'beta.example'").run()
    expect(db.prepare('SELECT COUNT(*) AS n FROM peer_keys').get()).toEqual({ n: 0 })
    db.close()
  })

  it('0005 records when media was uploaded (existing uploads: now) and adds a STRICT remote_media table', async () => {
    const db = await migratedTo(4)
    const room = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
    db.prepare(
      `INSERT INTO events (stream_pos, room_id, seq, event_id, type, sender, origin_ts, v, origin, nonce,
         content_hash, prev, owner_ts) VALUES (7, ?, 1, '$e', 'm.message', '@a:acme.example', 1, 1, 'acme.example', 'n', 'h', 'p', 1)`,
    ).run(room)
    db.prepare(
      `INSERT INTO media (media_id, owner, room_id, sha256, size, content_type, filename, created_ts)
       VALUES ('MMMMMMMMMMMMMMMMMMMMMM', '@a:acme.example', ?, 'h', 1, 'image/png', 'a.png', 1)`,
    ).run(room)
    migrate(db, MIGRATIONS.slice(0, 5))
    expect(db.pragma('user_version', { simple: true })).toBe(5)
    expect(db.prepare('SELECT media_id, stream_pos FROM media').all()).toEqual([
      { media_id: 'MMMMMMMMMMMMMMMMMMMMMM', stream_pos: 7 },
    ])
    const table = tablesOf(db).find((t) => t.name === 'remote_media')!
    expect(table.sql).toMatch(/STRICT/)
    const insert = db.prepare(
      `INSERT INTO remote_media (origin, media_id, room_id, sha256, size, content_type, filename, stream_pos, fetched_ts)
       VALUES (?, 'MMMMMMMMMMMMMMMMMMMMMM', ?, 'h', 1, 'image/png', 'a.png', 0, 0)`,
    )
    // The same id from two servers is two media; twice from one server is one.
    insert.run('beta.example', room)
    insert.run('gamma.example', room)
    expect(() => insert.run('beta.example', room)).toThrow(/UNIQUE/)
    db.close()
  })

  it('0006 adds STRICT key directory and backup tables; one list per user, versions from 1', async () => {
    const db = await migratedTo(6)
    expect(db.pragma('user_version', { simple: true })).toBe(6)
    const names = ['device_lists', 'key_backup_sessions', 'key_backups', 'remote_keys', 'signed_prekeys']
    const added = tablesOf(db).filter((t) => names.includes(t.name))
    expect(added.map((t) => t.name)).toEqual(names)
    for (const t of added) expect(t.sql, t.name).toMatch(/STRICT/)
    const insert = db.prepare(
      "INSERT INTO device_lists (user_id, uik, version, hash, document, updated_ts) VALUES ('@a:x', 'k', ?, 'h', '{}', 1)",
    )
    expect(() => insert.run(0)).toThrow(/CHECK/)
    insert.run(1)
    expect(() => insert.run(2)).toThrow(/UNIQUE|PRIMARY/)
    const session = db.prepare(
      "INSERT INTO key_backup_sessions (user_id, room_id, session_id, record, updated_ts) VALUES ('@a:x', 'r', 's', '{}', 1)",
    )
    session.run()
    expect(() => session.run()).toThrow(/UNIQUE|PRIMARY/)
    db.close()
  })

  it('0007 adds a STRICT secret_storage table with one document per user', async () => {
    const db = await migratedTo(7)
    expect(db.pragma('user_version', { simple: true })).toBe(7)
    const added = tablesOf(db).filter((t) => t.name === 'secret_storage')
    expect(added).toHaveLength(1)
    expect(added[0]!.sql).toMatch(/STRICT/)
    const insert = db.prepare(
      "INSERT INTO secret_storage (user_id, document, updated_ts) VALUES ('@a:x', '{}', ?)",
    )
    insert.run(1)
    expect(() => insert.run(2)).toThrow(/UNIQUE|PRIMARY/)
    expect(() => insert.run('late')).toThrow()
    db.close()
  })

  it('is idempotent: reopening runs nothing twice', async () => {
    const path = await freshPath()
    openDatabase(path).close()
    const db = openDatabase(path)
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length)
    db.close()
  })

  it('refuses a database written by newer code', async () => {
    const path = await freshPath()
    const raw = new BetterSqlite3(path)
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`)
    raw.close()
    expect(() => openDatabase(path)).toThrow(SchemaTooNewError)
  })

  it('rolls back a failing migration entirely', async () => {
    const db = new BetterSqlite3(await freshPath())
    const broken = [
      ...MIGRATIONS,
      {
        version: MIGRATIONS.length + 1,
        name: 'broken',
        up(d: Database) {
          d.exec('CREATE TABLE half_done (x INTEGER) STRICT')
          throw new Error('boom')
        },
      },
    ]
    expect(() => migrate(db, broken)).toThrow('boom')
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length)
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half_done'").get()).toBeUndefined()
    db.close()
  })
})

describe('query plans (every hot query uses an index)', () => {
  const plan = (db: Database, sql: string) =>
    // eslint-disable-next-line no-restricted-syntax -- fixed SQL from this file's table, not input
    (db.prepare('EXPLAIN QUERY PLAN ' + sql).all() as Array<{ detail: string }>)
      .map((r) => r.detail)
      .join(' | ')

  it.each([
    [
      'history page',
      "SELECT * FROM events WHERE room_id = 'r' AND seq < 5 ORDER BY seq DESC LIMIT 5",
      /SEARCH events USING INDEX .*\(room_id=\? AND seq<\?\)/,
    ],
    [
      'sync window',
      `SELECT e.* FROM events e JOIN memberships m ON m.room_id = e.room_id AND m.user_id = 'u'
       WHERE e.stream_pos > 1 AND e.stream_pos <= 5 AND (m.membership = 'join' OR e.stream_pos = m.stream_pos
         OR e.stream_pos <= m.left_pos) ORDER BY e.stream_pos LIMIT 5`,
      /SEARCH e USING INDEX events_by_room_stream \(room_id=\? AND stream_pos>\? AND stream_pos<\?\)/,
    ],
    [
      'unread count (only the unread part of the room, whatever its history)',
      `SELECT COUNT(*) FROM events WHERE room_id = 'r' AND seq > 1 AND type = 'm.message'
         AND sender != 'u' AND redacted_by IS NULL AND +stream_pos <= 9`,
      /SEARCH events USING INDEX .*\(room_id=\? AND seq>\?\)/,
    ],
    [
      'last message of a room (walks back from the head, no sort)',
      `SELECT * FROM events e WHERE e.room_id = 'r' AND e.type = 'm.message' AND e.stream_pos <= 9
         ORDER BY e.stream_pos DESC LIMIT 1`,
      /^SEARCH e USING INDEX events_by_room_stream \(room_id=\? AND stream_pos<\?\)$/,
    ],
    [
      'reactions of an event',
      "SELECT event_id FROM events WHERE relates_to = 'x' AND type = 'm.reaction'",
      /USING INDEX events_by_relation/,
    ],
    ['rooms of a user', "SELECT * FROM memberships WHERE user_id = 'u'", /USING INDEX memberships_by_user/],
    [
      'txn lookup',
      "SELECT * FROM txns t JOIN events e ON e.event_id = t.event_id WHERE t.device_id = 'd' AND t.txn_id = 't'",
      /SEARCH t USING PRIMARY KEY.*SEARCH e USING INDEX/,
    ],
    ['token lookup', "SELECT * FROM devices WHERE access_hash = x'00'", /SEARCH devices USING INDEX/],
    [
      'current server key',
      'SELECT * FROM server_keys WHERE expired_ts IS NULL',
      /USING INDEX server_keys_one_current/,
    ],
    [
      'pinned key of a peer',
      "SELECT * FROM peer_keys WHERE server_name = 'b' AND kid = 'k'",
      /SEARCH peer_keys USING PRIMARY KEY \(server_name=\? AND kid=\?\)/,
    ],
    [
      'a copy of remote media',
      "SELECT * FROM remote_media WHERE origin = 'b' AND media_id = 'm'",
      /SEARCH remote_media USING PRIMARY KEY \(origin=\? AND media_id=\?\)/,
    ],
    [
      'media access of a peer server (members of one room only)',
      `SELECT 1 AS one FROM memberships WHERE room_id = 'r' AND substr(user_id, -3) = ':b'
         AND (membership = 'join' OR left_pos > 5) LIMIT 1`,
      /^SEARCH memberships USING PRIMARY KEY \(room_id=\?\)$/,
    ],
    [
      'signed prekeys of a user (existing devices only)',
      `SELECT p.device_id, p.document FROM signed_prekeys p JOIN devices d ON d.device_id = p.device_id
       WHERE p.user_id = 'u' ORDER BY p.device_id`,
      /SEARCH p USING INDEX signed_prekeys_by_user \(user_id=\?\).*SEARCH d USING/,
    ],
    [
      'two users share a room, joined or invited (the key directory rule)',
      `SELECT 1 AS one FROM memberships me JOIN memberships them ON them.room_id = me.room_id
       WHERE me.user_id = 'u' AND me.membership IN ('join', 'invite')
         AND them.user_id = 'v' AND them.membership IN ('join', 'invite') LIMIT 1`,
      /SEARCH me USING (COVERING )?INDEX memberships_by_user \(user_id=\? AND membership=\?\).*SEARCH them USING (PRIMARY KEY|COVERING INDEX memberships_by_user) \(/,
    ],
    [
      'co-members of a user (keys_changed fan-out)',
      `SELECT DISTINCT them.user_id FROM memberships me JOIN memberships them ON them.room_id = me.room_id
       WHERE me.user_id = 'u' AND me.membership IN ('join', 'invite') AND them.membership IN ('join', 'invite')`,
      /SEARCH me USING (COVERING )?INDEX memberships_by_user \(user_id=\? AND membership=\?\).*SEARCH them USING PRIMARY KEY \(room_id=\?\)/,
    ],
    [
      "a user shares a room with a server (the user's rooms, then their members)",
      `SELECT 1 AS one FROM memberships me JOIN memberships them ON them.room_id = me.room_id
       WHERE me.user_id = 'u' AND me.membership = 'join' AND substr(them.user_id, -3) = ':b' LIMIT 1`,
      /SEARCH me USING (COVERING )?INDEX memberships_by_user \(user_id=\? AND membership=\?\).*SEARCH them USING PRIMARY KEY \(room_id=\?\)/,
    ],
  ])('%s', async (_name, sql, expected) => {
    const db = openDatabase(await freshPath())
    const p = plan(db, sql)
    expect(p).toMatch(expected)
    expect(p).not.toMatch(/SCAN events/)
    db.close()
  })
})
