/**
 * The app's local cache on IndexedDB, every record sealed (seal.ts): the client library's
 * {@link ClientStore} (session, sync cursor, outbox of unsent messages, drafts) plus what the app
 * renders before the network answers (the room list, the tail of each room's timeline).
 *
 * Writes are applied in call order (ClientStore's contract): every operation runs through one queue,
 * because sealing is asynchronous and two writes sealed concurrently could otherwise land in the
 * wrong order. Everything read back is validated with its schema; a record that fails to open or
 * validate is treated as absent (the server is the source of truth: it is fetched again).
 */
import { OutboxEntry, Session, type ClientStore } from '@parley/protocol/client'
import { ClientEvent } from '@parley/protocol/schema'
import { z } from 'zod'
import { ListedRoom } from '../preview.ts'
import {
  deriveCacheKeys,
  generateSecret,
  importSecret,
  openValue,
  recordName,
  sealValue,
  type CacheKeys,
} from './seal.ts'

const DB_NAME = 'parley-cache'
const RECORDS = 'records'
/** Web mode only: the profile's base key, a non-extractable CryptoKey (IndexedDB clones it as such). */
const KEYS = 'keys'
/** How many of a room's latest events are kept for the next start. */
export const CACHED_EVENTS_PER_ROOM = 100

const Cursor = z.number().int().nonnegative()
const Outbox = z.array(OutboxEntry)
const Rooms = z.array(ListedRoom)
const Events = z.array(ClientEvent)

/** Where the cache key comes from: the shell's safeStorage secret, or (web) one kept in the profile. */
export type SecretSource = () => Promise<string | null>

export class EncryptedStore implements ClientStore {
  #queue: Promise<unknown> = Promise.resolve()

  private constructor(
    private readonly db: IDBDatabase,
    private readonly keys: CacheKeys,
  ) {}

  /**
   * Opens the cache. `secret` is the shell's key (32 bytes base64url) or null in web mode, where a
   * random base key is generated once and kept, non-extractable, in the same database. A different
   * shell key (a new keychain) makes old records unreadable: they count as absent.
   */
  static async open(secret: SecretSource, name = DB_NAME): Promise<EncryptedStore> {
    const db = await openDatabase(name)
    const shellSecret = await secret()
    const base = shellSecret !== null ? await importSecret(fromBase64Url(shellSecret)) : await profileKey(db)
    return new EncryptedStore(db, await deriveCacheKeys(base))
  }

  /** Runs `op` after every earlier operation settled (so writes land in call order). */
  #enqueue<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op, op)
    this.#queue = run.catch(() => {})
    return run
  }

  async #read<T>(slot: string, schema: z.ZodType<T>): Promise<T | undefined> {
    const name = await recordName(this.keys, slot)
    const record = await request(this.db.transaction(RECORDS).objectStore(RECORDS).get(name))
    const parsed = schema.safeParse(await openValue(this.keys, slot, record))
    return parsed.success ? parsed.data : undefined
  }

  async #write(slot: string, value: unknown): Promise<void> {
    const [name, sealed] = await Promise.all([recordName(this.keys, slot), sealValue(this.keys, slot, value)])
    await done(this.#tx(RECORDS, (s) => s.put(sealed, name)))
  }

  async #delete(slot: string): Promise<void> {
    const name = await recordName(this.keys, slot)
    await done(this.#tx(RECORDS, (s) => s.delete(name)))
  }

  #tx(store: string, use: (s: IDBObjectStore) => void): IDBTransaction {
    // Durability 'strict': a pending message or the cursor must survive a crash right after the write.
    const tx = this.db.transaction(store, 'readwrite', { durability: 'strict' })
    use(tx.objectStore(store))
    return tx
  }

  // ---- ClientStore ----

  getSession(): Promise<Session | null> {
    return this.#enqueue(async () => (await this.#read('session', Session)) ?? null)
  }
  setSession(session: Session | null): Promise<void> {
    return this.#enqueue(() => (session === null ? this.#delete('session') : this.#write('session', session)))
  }
  getCursor(): Promise<number> {
    return this.#enqueue(async () => (await this.#read('cursor', Cursor)) ?? 0)
  }
  setCursor(cursor: number): Promise<void> {
    return this.#enqueue(() => this.#write('cursor', cursor))
  }
  /**
   * The outbox is one record: it is short (what is unsent right now) and its order must hold. Its
   * read-modify-write holds a Web Lock, so two windows of the app cannot drop each other's entries.
   */
  putOutbox(entry: OutboxEntry): Promise<void> {
    return this.#enqueue(() =>
      withLock('parley-outbox', async () => {
        const list = (await this.#read('outbox', Outbox)) ?? []
        const at = list.findIndex((e) => e.txn_id === entry.txn_id)
        if (at >= 0) list[at] = entry
        else list.push(entry)
        await this.#write('outbox', list)
      }),
    )
  }
  listOutbox(): Promise<OutboxEntry[]> {
    return this.#enqueue(async () => (await this.#read('outbox', Outbox)) ?? [])
  }
  removeOutbox(txnId: string): Promise<void> {
    return this.#enqueue(() =>
      withLock('parley-outbox', async () => {
        const list = (await this.#read('outbox', Outbox)) ?? []
        const kept = list.filter((e) => e.txn_id !== txnId)
        if (kept.length !== list.length) await this.#write('outbox', kept)
      }),
    )
  }
  getItem(key: string): Promise<string | null> {
    return this.#enqueue(async () => (await this.#read(`item:${key}`, z.string())) ?? null)
  }
  setItem(key: string, value: string): Promise<void> {
    return this.#enqueue(() => this.#write(`item:${key}`, value))
  }
  removeItem(key: string): Promise<void> {
    return this.#enqueue(() => this.#delete(`item:${key}`))
  }
  /** Forgets every record (another account signs in, or sign-out); the profile key stays. */
  clear(): Promise<void> {
    return this.#enqueue(() => done(this.#tx(RECORDS, (s) => s.clear())))
  }

  // ---- what the app renders first ----

  /** The room list as last seen, or null. */
  getRooms(): Promise<ListedRoom[] | null> {
    return this.#enqueue(async () => (await this.#read('rooms', Rooms)) ?? null)
  }
  /** Kept as the list shows it: a preview of each room's last message, not the whole event. */
  putRooms(rooms: readonly ListedRoom[]): Promise<void> {
    return this.#enqueue(() => this.#write('rooms', rooms))
  }
  /** A room's latest events as last seen (oldest first), or null. */
  getTimeline(room: string): Promise<ClientEvent[] | null> {
    return this.#enqueue(async () => (await this.#read(`timeline:${room}`, Events)) ?? null)
  }
  /** Keeps the last {@link CACHED_EVENTS_PER_ROOM} of `events` (ordered by seq) for the next start. */
  putTimeline(room: string, events: readonly ClientEvent[]): Promise<void> {
    return this.#enqueue(() => this.#write(`timeline:${room}`, events.slice(-CACHED_EVENTS_PER_ROOM)))
  }

  close(): void {
    this.db.close()
  }
}

async function openDatabase(name: string): Promise<IDBDatabase> {
  const open = indexedDB.open(name, 1)
  open.onupgradeneeded = () => {
    open.result.createObjectStore(RECORDS)
    open.result.createObjectStore(KEYS)
  }
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    open.onsuccess = () => resolve(open.result)
    open.onerror = () => reject(open.error ?? new Error('IndexedDB open failed'))
    // Another window holds an older version open and will not let go: fail (the app then runs from
    // memory and says so) rather than hang with a blank window.
    open.onblocked = () => reject(new Error('the local cache is held by another window of an older version'))
  })
  // A newer version of the app wants to upgrade the schema: step aside instead of blocking it.
  db.onversionchange = () => db.close()
  return db
}

/** Runs `op` under a Web Lock shared by every window of the app (where the API exists). */
function withLock<T>(name: string, op: () => Promise<T>): Promise<T> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks
  return locks ? (locks.request(name, op) as Promise<T>) : op()
}

/** Web mode's base key: created on first use, stored as a non-extractable CryptoKey. */
async function profileKey(db: IDBDatabase): Promise<CryptoKey> {
  const stored: unknown = await request(db.transaction(KEYS).objectStore(KEYS).get('base'))
  if (stored instanceof CryptoKey && stored.algorithm.name === 'HKDF') return stored
  const key = await generateSecret()
  const tx = db.transaction(KEYS, 'readwrite', { durability: 'strict' })
  // add, not put: if another tab created one meanwhile, this fails and we use theirs.
  tx.objectStore(KEYS).add(key, 'base')
  try {
    await done(tx)
    return key
  } catch {
    const theirs: unknown = await request(db.transaction(KEYS).objectStore(KEYS).get('base'))
    if (theirs instanceof CryptoKey) return theirs
    throw new Error('cache key unavailable')
  }
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'))
  })
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve()
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'))
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'))
  })
}

function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) throw new Error('cache key must be 32 bytes base64url')
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '=')
  return Uint8Array.from(binary, (c) => c.charCodeAt(0))
}
