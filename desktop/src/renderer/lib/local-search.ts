/**
 * Message search on this device (issue 5: the server cannot search encrypted rooms, so the client
 * indexes what it decrypted). Every message the app shows is indexed with its latest text (edits
 * applied, deletions removed), per room, in the app's sealed store (lib/cache: nothing readable on
 * disk). Searching is a case-insensitive substring match over the index, newest first: a linear scan
 * of a few thousand entries per room is a few milliseconds, and no plaintext tokens are kept anywhere.
 */
import type { ClientStore } from '@parley/protocol/client'
import type { ClientEvent } from '@parley/protocol/schema'
import { z } from 'zod'

/** Messages kept per room (the newest): bounds the store and a search's cost. */
export const MAX_PER_ROOM = 5_000
/** Results per search. */
const MAX_RESULTS = 50
const ITEM = (room: string) => `search:${room}`

const Entry = z.object({
  event_id: z.string(),
  seq: z.number().int(),
  sender: z.string(),
  ts: z.number(),
  text: z.string(),
})
export type SearchEntry = z.infer<typeof Entry>
const Entries = z.array(Entry)

export interface SearchHit extends SearchEntry {
  readonly room: string
}

export class LocalSearch {
  /** Each room's entries by event id, loaded from the store on first use. */
  readonly #rooms = new Map<string, Map<string, SearchEntry>>()
  readonly #loading = new Map<string, Promise<Map<string, SearchEntry>>>()
  readonly #dirty = new Set<string>()
  #timer: ReturnType<typeof setTimeout> | null = null
  /** Bumped by {@link reset}: work started for a signed-out account must not land in the next one. */
  #generation = 0

  constructor(
    private readonly store: ClientStore,
    /** Rooms whose index exists on disk (to search rooms not loaded in this run). */
    private readonly knownRooms: () => readonly string[],
    private readonly saveDelayMs = 2_000,
  ) {}

  /** Indexes events as the timeline got them (decrypted ones as what they carry); resolves when done. */
  add(room: string, events: readonly ClientEvent[]): Promise<void> {
    const relevant = events
      .filter(
        (e) => e.type === 'm.message' || e.type === 'm.edit' || e.type === 'm.redaction' || e.redacted_by,
      )
      // A page of history comes newest first: originals before their edits.
      .sort((a, b) => a.seq - b.seq)
    if (relevant.length === 0) return Promise.resolve()
    const generation = this.#generation
    return this.#room(room).then((entries) => {
      if (generation !== this.#generation) return
      let changed = false
      for (const e of relevant) changed = apply(entries, e) || changed
      if (!changed) return
      trim(entries)
      this.#dirty.add(room)
      this.#timer ??= setTimeout(() => void this.flush(), this.saveDelayMs)
    })
  }

  /** Writes what changed since the last write. */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    const rooms = [...this.#dirty]
    this.#dirty.clear()
    const generation = this.#generation
    for (const room of rooms) {
      const entries = this.#rooms.get(room)
      if (generation !== this.#generation) return
      if (entries) await this.store.setItem(ITEM(room), JSON.stringify([...entries.values()]))
    }
  }

  /** Messages containing `query` (case-insensitive), newest first, at most 50. */
  async search(query: string): Promise<SearchHit[]> {
    const needle = query.trim().toLocaleLowerCase()
    if (needle === '') return []
    const rooms = new Set([...this.knownRooms(), ...this.#rooms.keys()])
    const hits: SearchHit[] = []
    for (const room of rooms)
      for (const entry of (await this.#room(room)).values())
        if (entry.text.toLocaleLowerCase().includes(needle)) hits.push({ ...entry, room })
    return hits.sort((a, b) => b.ts - a.ts || b.seq - a.seq).slice(0, MAX_RESULTS)
  }

  /** Forgets the in-memory index (sign-out; the store is cleared separately). */
  reset(): void {
    this.#generation++
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    this.#dirty.clear()
    this.#rooms.clear()
    this.#loading.clear()
  }

  #room(room: string): Promise<Map<string, SearchEntry>> {
    const known = this.#rooms.get(room)
    if (known) return Promise.resolve(known)
    let loading = this.#loading.get(room)
    if (!loading) {
      loading = this.#load(room)
      this.#loading.set(room, loading)
    }
    return loading
  }

  async #load(room: string): Promise<Map<string, SearchEntry>> {
    const generation = this.#generation
    let entries = new Map<string, SearchEntry>()
    try {
      const parsed = Entries.safeParse(JSON.parse((await this.store.getItem(ITEM(room))) ?? '[]'))
      // A damaged index counts as empty: it fills again as messages are shown.
      if (parsed.success) entries = new Map(parsed.data.map((e) => [e.event_id, e]))
    } catch {
      // Unreadable: start from none.
    }
    // Signed out meanwhile: hand back a detached map, keep nothing.
    if (generation !== this.#generation) return entries
    // Events indexed while the store was read win over what it held.
    const raced = this.#rooms.get(room)
    if (raced) for (const [id, e] of raced) entries.set(id, e)
    this.#rooms.set(room, entries)
    this.#loading.delete(room)
    return entries
  }
}

/** What one event changes in a room's entries; true if anything did. */
function apply(entries: Map<string, SearchEntry>, e: ClientEvent): boolean {
  const target = typeof e.content.target === 'string' ? e.content.target : null
  if (e.redacted_by) return entries.delete(e.event_id)
  if (e.type === 'm.redaction') return target !== null && entries.delete(target)
  if (e.type === 'm.edit') {
    const original = target ? entries.get(target) : undefined
    // Only the author's own edits count (as on screen), and only the latest.
    if (!original || original.sender !== e.sender || typeof e.content.body !== 'string') return false
    entries.set(original.event_id, { ...original, text: e.content.body })
    return true
  }
  if (entries.has(e.event_id)) return false
  const attachment = e.content.attachment as { name?: unknown } | undefined
  const text = [e.content.body, attachment?.name].filter((x) => typeof x === 'string').join('\n')
  if (text === '') return false
  entries.set(e.event_id, { event_id: e.event_id, seq: e.seq, sender: e.sender, ts: e.origin_ts, text })
  return true
}

/** Keeps the newest {@link MAX_PER_ROOM} entries of a room. */
function trim(entries: Map<string, SearchEntry>): void {
  if (entries.size <= MAX_PER_ROOM) return
  const oldest = [...entries.values()].sort((a, b) => a.seq - b.seq).slice(0, entries.size - MAX_PER_ROOM)
  for (const e of oldest) entries.delete(e.event_id)
}
