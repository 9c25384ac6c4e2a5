/**
 * Client-side persistence behind one interface: the session, the sync cursor, the durable outbox of
 * unacknowledged sends, and a small key/value space (drafts). {@link MemoryStore} keeps it in memory;
 * the desktop app implements {@link ClientStore} on IndexedDB. Records read back from a durable store
 * are untrusted input: validate them with {@link Session} and {@link OutboxEntry} (STYLE.md rule 4).
 */
import { z } from 'zod'
import { Cursor, DeviceId, JsonObjectSchema, RoomId, TxnId, UserId } from '../schema/index.ts'

/** A signed-in device: what the client needs to call the homeserver and refresh its token. */
export const Session = z.object({
  user_id: UserId,
  device_id: DeviceId,
  access_token: z.string().min(1),
  refresh_token: z.string().min(1),
  /** When the access token expires, in ms since the epoch (client clock). */
  expires_at: z.number().int(),
  /** The homeserver's base URL, e.g. `https://chat.acme.example`. */
  base_url: z.string().min(1),
})
/** A signed-in device (see the {@link Session} schema). */
export type Session = z.infer<typeof Session>

/** One send waiting for its `sent` acknowledgement. Resent with the same `txn_id` until acknowledged. */
export const OutboxEntry = z.object({
  txn_id: TxnId,
  room: RoomId,
  event_type: z.string().min(1).max(128),
  content: JsonObjectSchema,
  /** When the send was first requested, in ms since the epoch. */
  created_ts: Cursor,
})
/** One send waiting for its acknowledgement (see the {@link OutboxEntry} schema). */
export type OutboxEntry = z.infer<typeof OutboxEntry>

/**
 * Everything the client persists. All methods are async so that an IndexedDB implementation fits;
 * implementations must apply writes in call order and return copies, never live references.
 */
export interface ClientStore {
  /** The current session, or `null` when signed out. */
  getSession(): Promise<Session | null>
  /** Replaces the session; `null` signs out (the cursor, outbox and items are kept). */
  setSession(session: Session | null): Promise<void>
  /** The stream position up to which events were delivered; 0 when nothing was synced yet. */
  getCursor(): Promise<number>
  /** Persists the stream position. */
  setCursor(cursor: number): Promise<void>
  /** Adds an outbox entry, or replaces the one with the same `txn_id` keeping its position. */
  putOutbox(entry: OutboxEntry): Promise<void>
  /** Every outbox entry, in insertion order. */
  listOutbox(): Promise<OutboxEntry[]>
  /** Removes the outbox entry with this `txn_id`; unknown ids are ignored. */
  removeOutbox(txnId: string): Promise<void>
  /** A stored string (drafts and other small client state), or `null`. */
  getItem(key: string): Promise<string | null>
  /** Stores a string under `key`. */
  setItem(key: string, value: string): Promise<void>
  /** Removes `key`; unknown keys are ignored. */
  removeItem(key: string): Promise<void>
  /** Forgets everything: session, cursor, outbox and items (used when another account signs in). */
  clear(): Promise<void>
}

/** A {@link ClientStore} in memory: for tests, bots, benchmarks and short-lived sessions. */
export class MemoryStore implements ClientStore {
  #session: Session | null = null
  #cursor = 0
  readonly #outbox = new Map<string, OutboxEntry>()
  readonly #items = new Map<string, string>()

  /** {@inheritDoc ClientStore.getSession} */
  async getSession(): Promise<Session | null> {
    return this.#session === null ? null : structuredClone(this.#session)
  }
  /** {@inheritDoc ClientStore.setSession} */
  async setSession(session: Session | null): Promise<void> {
    this.#session = session === null ? null : structuredClone(session)
  }
  /** {@inheritDoc ClientStore.getCursor} */
  async getCursor(): Promise<number> {
    return this.#cursor
  }
  /** {@inheritDoc ClientStore.setCursor} */
  async setCursor(cursor: number): Promise<void> {
    this.#cursor = cursor
  }
  /** {@inheritDoc ClientStore.putOutbox} */
  async putOutbox(entry: OutboxEntry): Promise<void> {
    this.#outbox.set(entry.txn_id, structuredClone(entry))
  }
  /** {@inheritDoc ClientStore.listOutbox} */
  async listOutbox(): Promise<OutboxEntry[]> {
    return [...this.#outbox.values()].map((entry) => structuredClone(entry))
  }
  /** {@inheritDoc ClientStore.removeOutbox} */
  async removeOutbox(txnId: string): Promise<void> {
    this.#outbox.delete(txnId)
  }
  /** {@inheritDoc ClientStore.getItem} */
  async getItem(key: string): Promise<string | null> {
    return this.#items.get(key) ?? null
  }
  /** {@inheritDoc ClientStore.setItem} */
  async setItem(key: string, value: string): Promise<void> {
    this.#items.set(key, value)
  }
  /** {@inheritDoc ClientStore.removeItem} */
  async removeItem(key: string): Promise<void> {
    this.#items.delete(key)
  }
  /** {@inheritDoc ClientStore.clear} */
  async clear(): Promise<void> {
    this.#session = null
    this.#cursor = 0
    this.#outbox.clear()
    this.#items.clear()
  }
}
