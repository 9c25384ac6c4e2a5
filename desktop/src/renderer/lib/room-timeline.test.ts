import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import type { ClientEvent } from '@parley/protocol/schema'
import { RoomTimeline } from './room-timeline.ts'
import { foldTimeline } from './timeline.ts'

const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
const ALICE = '@alice:acme.example'
const BOB = '@bob:globex.example'
const idOf = (seq: number) => `$${String(seq).padStart(43, 'a')}`
const ev = (seq: number, type: string, sender: string, content: Record<string, unknown>): ClientEvent => ({
  event_id: idOf(seq),
  room: ROOM,
  seq,
  stream_pos: seq,
  type,
  sender,
  origin_ts: seq * 1000,
  content,
})

/** Event `seq` of a random room: its kind and target are drawn, pointing only at earlier events. */
const eventSpec = fc.record({
  kind: fc.constantFrom('message', 'message', 'message', 'edit', 'reaction', 'redaction', 'member', 'reply'),
  sender: fc.constantFrom(ALICE, BOB),
  target: fc.nat(),
  key: fc.constantFrom('👍', '🎉'),
  redacted: fc.boolean(),
})

type Spec = typeof eventSpec extends fc.Arbitrary<infer T> ? T : never

function roomOf(specs: readonly Spec[]): ClientEvent[] {
  const events: ClientEvent[] = [ev(1, 'm.room.create', ALICE, {})]
  for (const [i, s] of specs.entries()) {
    const seq = i + 2
    // Mostly a recent event, so chains (a reaction to a message, then its deletion) are common.
    const target = idOf(seq - 1 - (s.target % Math.min(seq - 1, 6)))
    let e: ClientEvent
    switch (s.kind) {
      case 'edit':
        e = ev(seq, 'm.edit', s.sender, { target, body: `edit ${seq}` })
        break
      case 'reaction':
        e = ev(seq, 'm.reaction', s.sender, { target, key: s.key })
        break
      case 'redaction':
        e = ev(seq, 'm.redaction', s.sender, { target })
        break
      case 'member':
        e = ev(seq, 'm.member', s.sender, { membership: 'join' })
        break
      case 'reply':
        e = ev(seq, 'm.message', s.sender, { body: `reply ${seq}`, reply_to: target })
        break
      default:
        e = ev(seq, 'm.message', s.sender, { body: `message ${seq}` })
    }
    // Some events come from the server already redacted (history of a room with deletions).
    if (s.redacted && s.kind !== 'redaction') e = { ...e, redacted_by: idOf(seq + 1000) }
    events.push(e)
  }
  return events
}

describe('RoomTimeline', () => {
  it('clear() forgets every event, reaction and edit, and takes new ones as if fresh', () => {
    const t = new RoomTimeline(ALICE)
    t.insert([
      ev(5, 'm.message', BOB, { body: 'old' }),
      ev(6, 'm.reaction', ALICE, { target: idOf(5), key: '+' }),
    ])
    const before = t.version
    t.clear()
    expect(t.events).toEqual([])
    expect(t.items).toEqual([])
    expect(t.has(idOf(5))).toBe(false)
    expect(t.version).toBeGreaterThan(before)
    expect(t.insert([ev(5, 'm.message', BOB, { body: 'old' })])).toBe(1)
    expect(t.items).toEqual(foldTimeline(t.events, ALICE))
  })

  test.prop(
    [
      fc.array(eventSpec, { minLength: 1, maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 20 }),
    ],
    { numRuns: 500 },
  )(
    'folds to what foldTimeline gives for the whole room, whatever order and batches events arrive in',
    (specs, order, batches) => {
      const events = roomOf(specs)
      // A random arrival order (a permutation driven by `order`), delivered in random batch sizes.
      const arrival = [...events]
      for (const [i, n] of order.entries()) {
        const a = i % arrival.length
        const b = n % arrival.length
        ;[arrival[a], arrival[b]] = [arrival[b]!, arrival[a]!]
      }
      const timeline = new RoomTimeline(ALICE)
      let at = 0
      for (let b = 0; at < arrival.length; b++) {
        const size = batches[b % batches.length]!
        timeline.insert(arrival.slice(at, at + size))
        at += size
        // After every batch, not just at the end: a stale row would show until something refreshed it.
        const sofar = arrival.slice(0, at).sort((x, y) => x.seq - y.seq)
        expect(timeline.items).toEqual(foldTimeline(sofar, ALICE))
      }
      expect(timeline.events.map((e) => e.seq)).toEqual(events.map((e) => e.seq))
      expect(timeline.items).toEqual(foldTimeline(events, ALICE))
    },
  )

  it('drops a reaction chip when the reaction is deleted later', () => {
    const timeline = new RoomTimeline(ALICE)
    timeline.insert([ev(2, 'm.message', BOB, { body: 'hi' })])
    timeline.insert([ev(3, 'm.reaction', ALICE, { target: idOf(2), key: '👍' })])
    timeline.insert([ev(4, 'm.redaction', ALICE, { target: idOf(3) })])
    expect(timeline.items[0]).toMatchObject({ view: { reactions: [] } })
  })

  it('skips events it already has and counts only new ones', () => {
    const timeline = new RoomTimeline(ALICE)
    const m = ev(2, 'm.message', BOB, { body: 'hi' })
    expect(timeline.insert([m])).toBe(1)
    const version = timeline.version
    expect(timeline.insert([m])).toBe(0)
    expect(timeline.version).toBe(version)
    expect(timeline.items).toHaveLength(1)
  })

  it('replaces only the item an event changes, keeping the others (a keyed list re-renders one row)', () => {
    const timeline = new RoomTimeline(ALICE)
    timeline.insert([1, 2, 3].map((s) => ev(s, 'm.message', BOB, { body: `m${s}` })))
    const before = [...timeline.items]
    timeline.insert([ev(4, 'm.reaction', ALICE, { target: idOf(2), key: '👍' })])
    expect(timeline.items[0]).toBe(before[0])
    expect(timeline.items[2]).toBe(before[2])
    expect(timeline.items[1]).not.toBe(before[1])
    expect(timeline.items[1]).toMatchObject({
      view: { reactions: [{ key: '👍', senders: [ALICE], mine: idOf(4) }] },
    })
  })

  it('merges an older history page in front and finds items by seq', () => {
    const timeline = new RoomTimeline(ALICE)
    timeline.insert([101, 102].map((s) => ev(s, 'm.message', BOB, { body: `m${s}` })))
    // History pages come newest first.
    timeline.insert([100, 99, 98].map((s) => ev(s, 'm.message', BOB, { body: `m${s}` })))
    expect(timeline.items.map((i) => (i.kind === 'message' ? i.view.event.seq : 0))).toEqual([
      98, 99, 100, 101, 102,
    ])
    expect(timeline.indexOfSeq(100)).toBe(2)
    expect(timeline.indexOfSeq(97)).toBe(-1)
  })

  it('takes 100,000 events in seq order one at a time without slowing down (append, no copies)', () => {
    const timeline = new RoomTimeline(ALICE)
    const events = Array.from({ length: 100_000 }, (_, i) =>
      ev(i + 1, 'm.message', i % 3 ? BOB : ALICE, { body: `message ${i}` }),
    )
    const started = performance.now()
    for (const e of events) timeline.insert([e])
    const perEvent = (performance.now() - started) / events.length
    expect(timeline.items).toHaveLength(100_000)
    // The whole-room fold, for comparison (what a non-incremental timeline would do per event).
    const foldStarted = performance.now()
    foldTimeline(events, ALICE)
    const fold = performance.now() - foldStarted
    console.info(
      `RoomTimeline: ${(perEvent * 1000).toFixed(2)} µs per appended event; full fold of 100k: ${fold.toFixed(1)} ms`,
    )
  })
})
