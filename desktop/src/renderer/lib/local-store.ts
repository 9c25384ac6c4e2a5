/**
 * A {@link ClientStore} on `localStorage` for the web client: the session, cursor, outbox (so pending
 * messages survive a reload) and drafts. What is read back is validated (it is untrusted input).
 * The desktop issue's encrypted IndexedDB store replaces it; this one is clearly weaker (see
 * docs/desktop.md): anything with access to the browser profile can read it.
 */
import { OutboxEntry, Session, type ClientStore } from '@parley/protocol/client'

const PREFIX = 'parley:'

export class LocalStorageStore implements ClientStore {
  constructor(private readonly storage: Storage = localStorage) {}

  #get(key: string): unknown {
    const raw = this.storage.getItem(PREFIX + key)
    if (raw === null) return null
    try {
      return JSON.parse(raw) as unknown
    } catch {
      return null
    }
  }
  #set(key: string, value: unknown): void {
    this.storage.setItem(PREFIX + key, JSON.stringify(value))
  }

  async getSession() {
    const parsed = Session.safeParse(this.#get('session'))
    return parsed.success ? parsed.data : null
  }
  async setSession(session: Session | null) {
    if (session === null) this.storage.removeItem(PREFIX + 'session')
    else this.#set('session', session)
  }
  async getCursor() {
    const value = this.#get('cursor')
    return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0
  }
  async setCursor(cursor: number) {
    this.#set('cursor', cursor)
  }
  #outbox(): OutboxEntry[] {
    const value = this.#get('outbox')
    if (!Array.isArray(value)) return []
    return value.flatMap((e) => {
      const parsed = OutboxEntry.safeParse(e)
      return parsed.success ? [parsed.data] : []
    })
  }
  async putOutbox(entry: OutboxEntry) {
    const list = this.#outbox()
    const at = list.findIndex((e) => e.txn_id === entry.txn_id)
    if (at >= 0) list[at] = entry
    else list.push(entry)
    this.#set('outbox', list)
  }
  async listOutbox() {
    return this.#outbox()
  }
  async removeOutbox(txnId: string) {
    this.#set(
      'outbox',
      this.#outbox().filter((e) => e.txn_id !== txnId),
    )
  }
  async getItem(key: string) {
    return this.storage.getItem(PREFIX + 'item:' + key)
  }
  async setItem(key: string, value: string) {
    this.storage.setItem(PREFIX + 'item:' + key, value)
  }
  async removeItem(key: string) {
    this.storage.removeItem(PREFIX + 'item:' + key)
  }
  async clear() {
    for (const key of Object.keys(this.storage)) if (key.startsWith(PREFIX)) this.storage.removeItem(key)
  }
}
