import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import { HeightIndex, RowHeights, anchorAt, atBottom, scrollTopFor, visibleRange } from './virtual-list.ts'

/** The obvious O(n) answers the Fenwick tree must agree with. */
const naiveOffset = (heights: readonly number[], i: number) => heights.slice(0, i).reduce((a, b) => a + b, 0)
const naiveIndexAt = (heights: readonly number[], y: number) => {
  let sum = 0
  for (let i = 0; i < heights.length; i++) {
    sum += heights[i]!
    if (y < sum) return i
  }
  return heights.length - 1
}

const height = fc.integer({ min: 1, max: 300 })

describe('HeightIndex', () => {
  test.prop([
    fc.array(height, { minLength: 1, maxLength: 200 }),
    fc.array(height, { maxLength: 50 }),
    fc.array(fc.tuple(fc.nat(), height), { maxLength: 30 }),
  ])(
    'offsets and the row at a position match the naive sums after pushes and changes',
    (initial, pushed, sets) => {
      const index = new HeightIndex()
      index.reset(initial)
      const heights = [...initial]
      for (const h of pushed) {
        index.push(h)
        heights.push(h)
      }
      for (const [at, h] of sets) {
        index.set(at % heights.length, h)
        heights[at % heights.length] = h
      }
      expect(index.count).toBe(heights.length)
      expect(index.total).toBe(naiveOffset(heights, heights.length))
      for (let i = 0; i <= heights.length; i++) expect(index.offsetOf(i)).toBe(naiveOffset(heights, i))
      const total = index.total
      for (const y of [0, 1, total / 3, total / 2, total - 1, total, total + 50])
        expect(index.indexAt(y)).toBe(naiveIndexAt(heights, y))
      // A row's own start belongs to it.
      for (let i = 0; i < heights.length; i++) expect(index.indexAt(naiveOffset(heights, i))).toBe(i)
    },
  )

  it('is empty before any rows', () => {
    const index = new HeightIndex()
    expect(index.total).toBe(0)
    expect(index.indexAt(10)).toBe(-1)
    expect(visibleRange(index, 0, 500, 100)).toEqual({ start: 0, end: 0 })
  })

  it('handles 100,000 rows: build, appends and lookups stay cheap', () => {
    const index = new HeightIndex()
    index.reset(Array.from({ length: 100_000 }, (_, i) => 40 + (i % 7)))
    for (let i = 0; i < 1000; i++) index.push(50)
    expect(index.count).toBe(101_000)
    expect(index.indexAt(index.offsetOf(77_777) + 1)).toBe(77_777)
  })
})

describe('visibleRange', () => {
  it('covers the viewport plus the overscan on each side, clamped to the rows', () => {
    const index = new HeightIndex()
    index.reset(Array.from({ length: 100 }, () => 50))
    expect(visibleRange(index, 1000, 500, 100)).toEqual({ start: 18, end: 33 })
    expect(visibleRange(index, 0, 500, 100)).toEqual({ start: 0, end: 13 })
    expect(visibleRange(index, 4600, 500, 100)).toEqual({ start: 90, end: 100 })
  })
})

describe('RowHeights', () => {
  const keys = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `k${from + i}`)

  it('appends new rows at the end and keeps measured heights when older rows arrive in front', () => {
    const rows = new RowHeights(40)
    let shown = keys(100, 110)
    expect(rows.sync(shown.length, (i) => shown[i]!)).toBe('rebuild')
    expect(rows.isMeasured('k103')).toBe(false)
    expect(rows.measure(3, 'k103', 90)).toBe(true)
    expect(rows.isMeasured('k103')).toBe(true)
    expect(rows.measure(3, 'k103', 90)).toBe(false)
    shown = keys(100, 112)
    expect(rows.sync(shown.length, (i) => shown[i]!)).toBe('append')
    expect(rows.index.total).toBe(11 * 40 + 90)
    shown = keys(95, 112)
    expect(rows.sync(shown.length, (i) => shown[i]!)).toBe('prepend')
    expect(rows.index.get(8)).toBe(90)
    expect(rows.sync(shown.length, (i) => shown[i]!)).toBe('same')
    // Something inserted in the middle: rebuilt from the measured heights by key.
    shown = [...keys(95, 103), 'k103.5', ...keys(103, 112)]
    expect(rows.sync(shown.length, (i) => shown[i]!)).toBe('rebuild')
    expect(rows.index.get(9)).toBe(90)
  })

  it('counts unmeasured rows at their own estimate when given one (an image box is known up front)', () => {
    const rows = new RowHeights(40)
    const shown = keys(0, 4)
    const estimateAt = (i: number) => (i === 2 ? 240 : 40)
    rows.sync(shown.length, (i) => shown[i]!, estimateAt)
    expect(rows.index.total).toBe(3 * 40 + 240)
    rows.measure(2, 'k2', 250)
    rows.sync(
      shown.length + 1,
      (i) => `k${i}`,
      (i) => (i === 4 ? 100 : 40),
    )
    expect(rows.index.total).toBe(3 * 40 + 250 + 100)
  })
})

describe('anchoring', () => {
  test.prop([
    fc.array(height, { minLength: 5, maxLength: 100 }),
    fc.array(height, { minLength: 1, maxLength: 50 }),
    fc.double({ min: 0, max: 1, noNaN: true }),
  ])('a row stays at the same place on screen when rows are added above it', (initial, older, at) => {
    const index = new HeightIndex()
    index.reset(initial)
    const top = at * (index.total - 1)
    const anchor = anchorAt(index, top)!
    const screenBottom = index.offsetOf(anchor.index + 1) - top
    index.reset([...older, ...initial])
    const moved = { index: anchor.index + older.length, delta: anchor.delta }
    const newTop = scrollTopFor(index, moved)
    expect(index.offsetOf(moved.index + 1) - newTop).toBeCloseTo(screenBottom, 6)
  })

  it('keeps the anchor row bottom still when the anchor row itself grows at its top', () => {
    const index = new HeightIndex()
    index.reset([100, 100, 100, 100])
    const anchor = anchorAt(index, 150)!
    expect(anchor).toEqual({ index: 1, delta: 50 })
    index.set(1, 130) // a day separator appeared in it
    expect(scrollTopFor(index, anchor)).toBe(180)
  })

  it('skips rows before minIndex (a loading row at the top is no anchor) and rows ending at the top', () => {
    const index = new HeightIndex()
    index.reset([30, 100, 100])
    expect(anchorAt(index, 0, 1)).toEqual({ index: 1, delta: 130 })
    expect(anchorAt(index, 130)).toEqual({ index: 2, delta: 100 })
  })

  it('knows when a scroller is at its bottom', () => {
    expect(atBottom(500, 400, 900)).toBe(true)
    expect(atBottom(497, 400, 900)).toBe(true)
    expect(atBottom(450, 400, 900)).toBe(false)
  })
})
