/** A ClientStore persisted to one JSON file (atomic rename on every write): for the CLI and bots. */
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { z } from 'zod'
import { OutboxEntry, Session, type ClientStore } from '@parley/protocol/client'

const FileShape = z.object({
  session: Session.nullable().default(null),
  cursor: z.number().int().min(0).default(0),
  outbox: z.array(OutboxEntry).default([]),
  items: z.record(z.string(), z.string()).default({}),
})
type FileShape = z.infer<typeof FileShape>

export class FileStore implements ClientStore {
  #data: FileShape

  constructor(private readonly path: string) {
    let raw: unknown = {}
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new Error(`cannot read ${path}: ${String(err)}`)
    }
    const parsed = FileShape.safeParse(raw)
    if (!parsed.success) throw new Error(`${path} is not a Parley CLI state file`)
    this.#data = parsed.data
  }

  #save(): void {
    const tmp = `${this.path}.tmp`
    writeFileSync(tmp, JSON.stringify(this.#data), { mode: 0o600 })
    renameSync(tmp, this.path)
  }

  async getSession() {
    return this.#data.session && { ...this.#data.session }
  }
  async setSession(session: Session | null) {
    this.#data.session = session && { ...session }
    this.#save()
  }
  async getCursor() {
    return this.#data.cursor
  }
  async setCursor(cursor: number) {
    this.#data.cursor = cursor
    this.#save()
  }
  async putOutbox(entry: OutboxEntry) {
    const i = this.#data.outbox.findIndex((e) => e.txn_id === entry.txn_id)
    if (i >= 0) this.#data.outbox[i] = structuredClone(entry)
    else this.#data.outbox.push(structuredClone(entry))
    this.#save()
  }
  async listOutbox() {
    return structuredClone(this.#data.outbox)
  }
  async removeOutbox(txnId: string) {
    this.#data.outbox = this.#data.outbox.filter((e) => e.txn_id !== txnId)
    this.#save()
  }
  async getItem(key: string) {
    return Object.hasOwn(this.#data.items, key) ? this.#data.items[key]! : null
  }
  async setItem(key: string, value: string) {
    this.#data.items[key] = value
    this.#save()
  }
  async removeItem(key: string) {
    delete this.#data.items[key]
    this.#save()
  }
  async clear() {
    this.#data = FileShape.parse({})
    this.#save()
  }
}
