/**
 * How folded timeline items are laid out (renderer process, pure): day separators, sender grouping
 * and where the unread messages start. Each answer for row `i` looks only at its neighbours, so a
 * virtualised list asks it for the rows it renders and never walks the whole room.
 */
import type { TimelineItem } from './timeline.ts'

/** Consecutive messages of one sender closer than this show the sender once. */
export const GROUP_WINDOW_MS = 5 * 60_000

const tsOf = (item: TimelineItem): number =>
  item.kind === 'message' ? item.view.event.origin_ts : item.event.origin_ts

/** The local calendar day of a timestamp, as a comparable key. */
export function dayKey(ts: number): string {
  const d = new Date(ts)
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`
}

/** Whether item `i` is the first of its (local) day among the loaded items: it gets a day separator. */
export function startsDay(items: readonly TimelineItem[], i: number): boolean {
  return i === 0 || dayKey(tsOf(items[i - 1]!)) !== dayKey(tsOf(items[i]!))
}

/**
 * Whether message `i` continues the previous one's group: the item before it is a message of the same
 * sender, sent at most {@link GROUP_WINDOW_MS} earlier on the same day. Notices end a group.
 */
export function isGrouped(items: readonly TimelineItem[], i: number): boolean {
  const item = items[i]
  const prev = items[i - 1]
  if (i === 0 || item?.kind !== 'message' || prev?.kind !== 'message') return false
  const a = prev.view.event
  const b = item.view.event
  const gap = b.origin_ts - a.origin_ts
  return a.sender === b.sender && gap >= 0 && gap <= GROUP_WINDOW_MS && !startsDay(items, i)
}

/**
 * What was unread when the room was opened, taken before opening it marks the room read.
 * - `count`: the room summary's `unread` (the server's count of messages from others, not deleted,
 *   after the user's stored read receipt);
 * - `receiptSeq`: the user's own read position, if a receipt of theirs arrived in this session;
 * - `lastSeq`: the newest seq the count covers (the summary's `last_seq`): later messages arrived
 *   while the room was open and are not "unread".
 */
export interface UnreadMark {
  readonly count: number
  readonly receiptSeq: number | null
  readonly lastSeq: number
}

const countsAsUnread = (item: TimelineItem, me: string | null): boolean =>
  item.kind === 'message' && item.view.event.sender !== me && !item.view.deleted

/**
 * The index of the first unread message, `null` when nothing is unread, or `'unknown'` when it lies
 * before the loaded items (page older history in and ask again). `loaded.oldestSeq` is the seq of the
 * oldest loaded event (shown or not; `Infinity` when none), `loaded.atStart` whether the room's start is loaded.
 *
 * The rule: with the user's own receipt known, the first message from someone else after it; else,
 * counting back from `lastSeq`, the `count`-th message from someone else that is not deleted — the
 * same messages the server counted for the summary, so the divider and the "N new messages" control
 * agree. If the room's start is loaded and fewer such messages exist, the oldest of them.
 */
export function firstUnread(
  items: readonly TimelineItem[],
  mark: UnreadMark,
  me: string | null,
  loaded: { readonly atStart: boolean; readonly oldestSeq: number },
): number | null | 'unknown' {
  const { atStart } = loaded
  if (mark.count <= 0) return null
  const seqAt = (i: number) => {
    const item = items[i]!
    return item.kind === 'message' ? item.view.event.seq : item.event.seq
  }
  if (mark.receiptSeq !== null) {
    const { receiptSeq } = mark
    // Every loaded item is newer than the receipt and older ones may exist: the first unread is older.
    if (!atStart && loaded.oldestSeq > receiptSeq + 1) return 'unknown'
    for (let i = 0; i < items.length && seqAt(i) <= mark.lastSeq; i++)
      if (seqAt(i) > receiptSeq && countsAsUnread(items[i]!, me)) return i
    return null
  }
  let seen = 0
  let oldest = -1
  for (let i = items.length - 1; i >= 0; i--) {
    if (seqAt(i) > mark.lastSeq || !countsAsUnread(items[i]!, me)) continue
    oldest = i
    if (++seen === mark.count) return i
  }
  return atStart ? (oldest >= 0 ? oldest : null) : 'unknown'
}
