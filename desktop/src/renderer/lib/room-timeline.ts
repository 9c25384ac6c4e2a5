/**
 * One room's events, kept ordered by seq, and their fold (lib/timeline.ts) kept up to date as events
 * arrive, so a room with 100,000 events costs O(log n) per event instead of a copy, a sort and a
 * whole-room fold each time. Renderer process; plain TypeScript (the Svelte state that makes it
 * reactive is a version number in chat.svelte.ts).
 *
 * Events mostly arrive in seq order (sync and live pushes): those are appended. Older history pages
 * arrive newest first and are merged in one pass. The folded items are the same as
 * `foldTimeline(events, me)` would give for the whole list (a property test checks that for any
 * arrival order); an item object is replaced only when its message changes (an edit, a deletion, a
 * reaction), so a keyed list re-renders just that row.
 */
import type { ClientEvent } from '@parley/protocol/schema'
import { isMessageRow, type MessageView, type Reaction, type TimelineItem } from './timeline.ts'

const targetOf = (e: ClientEvent): string | null =>
  typeof e.content.target === 'string' ? e.content.target : null
const seqOf = (item: TimelineItem): number => (item.kind === 'message' ? item.view.event.seq : item.event.seq)
const isShown = (e: ClientEvent): boolean =>
  isMessageRow(e) || e.type === 'm.member' || e.type === 'm.room.create'

/** Index of the first element whose seq is >= `seq` (binary search over a seq-ordered list). */
function lowerBound<T>(list: readonly T[], seq: number, seqAt: (x: T) => number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (seqAt(list[mid]!) < seq) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Inserts `x` into a seq-ordered list: appended when it is the newest (the usual case). */
function insertOrdered<T>(list: T[], x: T, seqAt: (x: T) => number): void {
  const seq = seqAt(x)
  if (list.length === 0 || seqAt(list[list.length - 1]!) < seq) list.push(x)
  else list.splice(lowerBound(list, seq, seqAt), 0, x)
}

/** Merges two seq-ordered lists into a new one in O(a + b); cheap cases (disjoint ranges) first. */
function mergeOrdered<T>(a: readonly T[], b: readonly T[], seqAt: (x: T) => number): T[] {
  if (b.length === 0) return a as T[]
  if (a.length === 0 || seqAt(b[b.length - 1]!) < seqAt(a[0]!)) return [...b, ...a]
  if (seqAt(b[0]!) > seqAt(a[a.length - 1]!)) return [...a, ...b]
  const out: T[] = []
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) out.push(seqAt(a[i]!) <= seqAt(b[j]!) ? a[i++]! : b[j++]!)
  while (i < a.length) out.push(a[i++]!)
  while (j < b.length) out.push(b[j++]!)
  return out
}

const eventSeq = (e: ClientEvent) => e.seq

export class RoomTimeline {
  /** Bumped on every change (the reactive layer watches it). */
  version = 0
  /** The start of the room is loaded (or the server has nothing older): no more history to page in. */
  atStart = false
  /** An older page is being fetched. */
  loadingOlder = false

  #events: ClientEvent[] = []
  readonly #byId = new Map<string, ClientEvent>()
  readonly #deleted = new Set<string>()
  /** target -> its edits / reactions, each ordered by seq (they may arrive before their target). */
  readonly #edits = new Map<string, ClientEvent[]>()
  readonly #reactions = new Map<string, ClientEvent[]>()
  /** target -> messages replying to it (their view shows it once it is loaded). */
  readonly #replies = new Map<string, Set<string>>()
  #items: TimelineItem[] = []

  constructor(private readonly me: string | null) {}

  /** Every event, ordered by seq. Read-only: it changes in place as events arrive. */
  get events(): readonly ClientEvent[] {
    return this.#events
  }

  /** What the timeline shows (messages and notices), ordered by seq; same as `foldTimeline(events)`. */
  get items(): readonly TimelineItem[] {
    return this.#items
  }

  has(eventId: string): boolean {
    return this.#byId.has(eventId)
  }

  /** The position of the shown item with this seq, or -1. */
  indexOfSeq(seq: number): number {
    const i = lowerBound(this.#items, seq, seqOf)
    return i < this.#items.length && seqOf(this.#items[i]!) === seq ? i : -1
  }

  /**
   * Adds events (any order; already known ones are skipped). Returns how many were new. One new event
   * newer than all others is an append; a batch is merged in one pass.
   */
  insert(events: readonly ClientEvent[]): number {
    const fresh: ClientEvent[] = []
    for (const e of events) {
      if (this.#byId.has(e.event_id)) continue
      this.#byId.set(e.event_id, e)
      fresh.push(e)
    }
    if (fresh.length === 0) return 0
    const dirty = new Set<string>()
    const shown: TimelineItem[] = []
    for (const e of fresh) this.#index(e, dirty, shown)
    if (fresh.length === 1) {
      insertOrdered(this.#events, fresh[0]!, eventSeq)
      if (shown.length === 1) insertOrdered(this.#items, shown[0]!, seqOf)
    } else {
      fresh.sort((a, b) => a.seq - b.seq)
      shown.sort((a, b) => seqOf(a) - seqOf(b))
      this.#events = mergeOrdered(this.#events, fresh, eventSeq)
      this.#items = mergeOrdered(this.#items, shown, seqOf)
    }
    for (const id of dirty) this.#refresh(id)
    // A room's first event has seq 1 (its creation): nothing older exists.
    if (this.#events[0]!.seq <= 1) this.atStart = true
    this.version++
    return fresh.length
  }

  /**
   * Forgets every event: for when what is loaded turned out not to join up with the server's history
   * (a stale cached tail). Paging starts again from whatever is inserted next.
   */
  clear(): void {
    this.#events = []
    this.#items = []
    this.#byId.clear()
    this.#deleted.clear()
    this.#edits.clear()
    this.#reactions.clear()
    this.#replies.clear()
    this.atStart = false
    this.version++
  }

  /** Marks the history state (paging) changed without new events. */
  touch(): void {
    this.version++
  }

  /** Records what `e` changes (deletions, edits, reactions, replies) and the item it adds, if any. */
  #index(e: ClientEvent, dirty: Set<string>, shown: TimelineItem[]): void {
    if (e.redacted_by) this.#deleteId(e.event_id, dirty)
    const target = targetOf(e)
    if (target) {
      if (e.type === 'm.redaction') this.#deleteId(target, dirty)
      else if (e.type === 'm.edit') this.#addTo(this.#edits, target, e, dirty)
      else if (e.type === 'm.reaction') this.#addTo(this.#reactions, target, e, dirty)
    }
    if (isMessageRow(e)) {
      const replyTo = typeof e.content.reply_to === 'string' ? e.content.reply_to : null
      if (replyTo) {
        let set = this.#replies.get(replyTo)
        if (!set) this.#replies.set(replyTo, (set = new Set()))
        set.add(e.event_id)
      }
      shown.push({ kind: 'message', view: this.#view(e) })
    } else if (isShown(e)) shown.push({ kind: 'notice', event: e })
    // Messages that reply to this event, or that were edited, reacted to or deleted before it arrived.
    for (const id of this.#replies.get(e.event_id) ?? []) dirty.add(id)
  }

  #deleteId(id: string, dirty: Set<string>): void {
    this.#deleted.add(id)
    dirty.add(id)
    // A deleted reaction: its target's chips change.
    const reaction = this.#byId.get(id)
    const target = reaction?.type === 'm.reaction' ? targetOf(reaction) : null
    if (target) dirty.add(target)
  }

  #addTo(map: Map<string, ClientEvent[]>, target: string, e: ClientEvent, dirty: Set<string>): void {
    let list = map.get(target)
    if (!list) map.set(target, (list = []))
    insertOrdered(list, e, eventSeq)
    dirty.add(target)
  }

  /** Rebuilds the view of one message if it is shown (a new object: its row re-renders). */
  #refresh(id: string): void {
    const e = this.#byId.get(id)
    if (!e || !isMessageRow(e)) return
    const i = this.indexOfSeq(e.seq)
    if (i >= 0) this.#items[i] = { kind: 'message', view: this.#view(e) }
  }

  #view(e: ClientEvent): MessageView {
    const deleted = this.#deleted.has(e.event_id)
    // The author's latest edit (by seq); edits by anyone else are ignored.
    const edit = this.#edits.get(e.event_id)?.findLast((x) => x.sender === e.sender)
    const replyId = typeof e.content.reply_to === 'string' ? e.content.reply_to : null
    const byKey = new Map<string, { senders: string[]; mine: string | null }>()
    for (const r of this.#reactions.get(e.event_id) ?? []) {
      if (this.#deleted.has(r.event_id)) continue
      const key = String(r.content.key ?? '')
      const entry = byKey.get(key) ?? { senders: [], mine: null }
      entry.senders.push(r.sender)
      if (r.sender === this.me) entry.mine = r.event_id
      byKey.set(key, entry)
    }
    const reactions: Reaction[] = [...byKey].map(([key, r]) => ({ key, ...r }))
    return {
      event: e,
      body: deleted ? '' : String((edit ?? e).content.body ?? ''),
      edited: edit !== undefined && !deleted,
      deleted,
      replyTo: replyId ? (this.#byId.get(replyId) ?? null) : null,
      reactions,
    }
  }
}
