import { describe, expect, it } from 'vitest'
import type { ClientEvent } from '@parley/protocol/schema'
import { RoomTimeline } from './room-timeline.ts'
import { GROUP_WINDOW_MS, dayKey, firstUnread, isGrouped, startsDay } from './timeline-layout.ts'

const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
const ME = '@me:acme.example'
const BOB = '@bob:globex.example'
const CAROL = '@carol:acme.example'
const idOf = (seq: number) => `$${String(seq).padStart(43, 'a')}`
const DAY = 24 * 3600_000
// Noon, local time: a few minutes either way stays on the same day in any time zone.
const NOON = new Date(2025, 2, 10, 12).getTime()

const ev = (seq: number, sender: string, ts: number, type = 'm.message', content = {}): ClientEvent => ({
  event_id: idOf(seq),
  room: ROOM,
  seq,
  stream_pos: seq,
  type,
  sender,
  origin_ts: ts,
  content: type === 'm.message' ? { body: `m${seq}`, ...content } : content,
})

function itemsOf(events: ClientEvent[]) {
  const timeline = new RoomTimeline(ME)
  timeline.insert(events)
  return timeline.items
}

describe('day separators and sender groups', () => {
  const items = itemsOf([
    ev(1, BOB, NOON - DAY),
    ev(2, BOB, NOON),
    ev(3, BOB, NOON + 60_000),
    ev(4, BOB, NOON + 60_000 + GROUP_WINDOW_MS + 1), // too long after: new group
    ev(5, CAROL, NOON + 20 * 60_000),
    ev(6, CAROL, NOON + 21 * 60_000, 'm.member', { membership: 'join' }),
    ev(7, CAROL, NOON + 22 * 60_000), // after a notice: new group
    ev(8, CAROL, NOON + DAY), // next day: new group, with a separator
  ])

  it('puts a separator before the first item of each local day', () => {
    expect(items.map((_, i) => startsDay(items, i))).toEqual([
      true,
      true,
      false,
      false,
      false,
      false,
      false,
      true,
    ])
    expect(dayKey(NOON)).toBe(dayKey(NOON + 3600_000))
    expect(dayKey(NOON)).not.toBe(dayKey(NOON + DAY))
  })

  it('groups consecutive messages of one sender within five minutes on the same day', () => {
    expect(items.map((_, i) => isGrouped(items, i))).toEqual([
      false,
      false,
      true,
      false,
      false,
      false,
      false,
      false,
    ])
  })
})

describe('firstUnread', () => {
  // 1: bob, 2: me, 3: bob, 4: bob (deleted), 5: carol, 6: bob
  const events = [
    ev(1, BOB, NOON),
    ev(2, ME, NOON + 1),
    ev(3, BOB, NOON + 2),
    ev(4, BOB, NOON + 3),
    ev(5, CAROL, NOON + 4),
    ev(6, BOB, NOON + 5),
    ev(7, BOB, NOON + 6, 'm.redaction', { target: idOf(4) }),
  ]
  const items = itemsOf(events)
  const all = { atStart: true, oldestSeq: 1 }

  it('is nothing when nothing is unread', () => {
    expect(firstUnread(items, { count: 0, receiptSeq: null, lastSeq: 7 }, ME, all)).toBeNull()
  })

  it("is the first message of someone else after the user's own receipt, when known", () => {
    expect(firstUnread(items, { count: 3, receiptSeq: 2, lastSeq: 7 }, ME, all)).toBe(2)
    expect(firstUnread(items, { count: 1, receiptSeq: 5, lastSeq: 7 }, ME, all)).toBe(5)
  })

  it('otherwise counts back the unread count over messages of others that are not deleted', () => {
    // Unread: 6 (bob), 5 (carol), 3 (bob); 4 is deleted and 2 is mine, so neither counts.
    expect(firstUnread(items, { count: 3, receiptSeq: null, lastSeq: 7 }, ME, all)).toBe(2)
    expect(firstUnread(items, { count: 1, receiptSeq: null, lastSeq: 7 }, ME, all)).toBe(5)
  })

  it('ignores messages that arrived after the room was opened', () => {
    const later = itemsOf([...events, ev(8, BOB, NOON + 7), ev(9, BOB, NOON + 8)])
    expect(firstUnread(later, { count: 1, receiptSeq: null, lastSeq: 7 }, ME, all)).toBe(5)
  })

  it('is unknown while the unread messages reach past the loaded history, and the oldest at the start', () => {
    const partial = { atStart: false, oldestSeq: 3 }
    expect(firstUnread(items.slice(2), { count: 5, receiptSeq: null, lastSeq: 7 }, ME, partial)).toBe(
      'unknown',
    )
    expect(firstUnread(items.slice(2), { count: 1, receiptSeq: 1, lastSeq: 7 }, ME, partial)).toBe('unknown')
    expect(firstUnread(items, { count: 9, receiptSeq: null, lastSeq: 7 }, ME, all)).toBe(0)
  })
})
