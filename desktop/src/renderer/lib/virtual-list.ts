/**
 * The arithmetic of a virtualised list with rows of different heights (renderer process; no DOM):
 * prefix sums of row heights, which rows a scroll position shows, and the anchor that keeps a row
 * still on screen while rows are added above it or change height. Rendered rows are measured; the
 * others count at an estimate until they have been on screen once.
 */

/** Prefix sums of row heights in a Fenwick tree: offsets and the row at a position in O(log n). */
export class HeightIndex {
  #heights: number[] = []
  /** 1-based Fenwick tree over #heights. */
  #tree: number[] = [0]

  get count(): number {
    return this.#heights.length
  }

  /** The height of all rows together. */
  get total(): number {
    return this.#prefix(this.#heights.length)
  }

  /** Replaces every row (O(n)). */
  reset(heights: readonly number[]): void {
    this.#heights = [...heights]
    const n = heights.length
    const tree = new Array<number>(n + 1).fill(0)
    for (let i = 1; i <= n; i++) {
      tree[i]! += heights[i - 1]!
      const j = i + (i & -i)
      if (j <= n) tree[j]! += tree[i]!
    }
    this.#tree = tree
  }

  /** Adds a row at the end (O(log n)). */
  push(height: number): void {
    this.#heights.push(height)
    const i = this.#heights.length
    // Node i covers rows (i - lowbit(i), i]: this row plus the sum of the ones before it in that span.
    this.#tree.push(height + this.#prefix(i - 1) - this.#prefix(i - (i & -i)))
  }

  get(index: number): number {
    return this.#heights[index]!
  }

  /** Changes one row's height (O(log n)). */
  set(index: number, height: number): void {
    const delta = height - this.#heights[index]!
    if (delta === 0) return
    this.#heights[index] = height
    for (let i = index + 1; i < this.#tree.length; i += i & -i) this.#tree[i]! += delta
  }

  /** Where row `index` starts: the height of the rows before it. `offsetOf(count)` is the total. */
  offsetOf(index: number): number {
    return this.#prefix(Math.max(0, Math.min(index, this.#heights.length)))
  }

  /** The row that contains position `y` (clamped to the first and last rows); -1 when empty. */
  indexAt(y: number): number {
    const n = this.#heights.length
    if (n === 0) return -1
    if (y <= 0) return 0
    // Fenwick descent: the most rows whose heights sum to <= y lie wholly above y.
    let pos = 0
    let rest = y
    for (let step = 1 << Math.floor(Math.log2(n)); step > 0; step >>= 1) {
      const next = pos + step
      if (next <= n && this.#tree[next]! <= rest) {
        pos = next
        rest -= this.#tree[next]!
      }
    }
    return Math.min(pos, n - 1)
  }

  #prefix(count: number): number {
    let sum = 0
    for (let i = count; i > 0; i -= i & -i) sum += this.#tree[i]!
    return sum
  }
}

/** How the rows changed since the last {@link RowHeights.sync}. */
export type RowsChange = 'same' | 'append' | 'prepend' | 'rebuild'

/**
 * Row heights by row key: measured heights survive rows being added before them (older history) and
 * rows leaving and re-entering the window; unmeasured rows count at `estimate`.
 */
export class RowHeights {
  readonly index = new HeightIndex()
  readonly #measured = new Map<string, number>()
  #first: string | null = null
  #last: string | null = null

  constructor(readonly estimate: number) {}

  /**
   * Brings the index in line with the rows now shown: `count` rows, `keyAt(i)` the key of row `i`
   * (keys are unique and rows keep their relative order); unmeasured rows count at `estimateAt(i)` if
   * given, else at the estimate. Appending costs O(k log n), anything else one O(n) rebuild.
   */
  sync(count: number, keyAt: (i: number) => string, estimateAt?: (i: number) => number): RowsChange {
    const old = this.index.count
    const first = count > 0 ? keyAt(0) : null
    const last = count > 0 ? keyAt(count - 1) : null
    const height = (i: number) => this.#measured.get(keyAt(i)) ?? estimateAt?.(i) ?? this.estimate
    let change: RowsChange
    if (count === old && first === this.#first && last === this.#last) change = 'same'
    else if (old > 0 && count > old && first === this.#first && keyAt(old - 1) === this.#last) {
      for (let i = old; i < count; i++) this.index.push(height(i))
      change = 'append'
    } else if (old > 0 && count > old && last === this.#last && keyAt(count - old) === this.#first) {
      const added = Array.from({ length: count - old }, (_, i) => height(i))
      const kept = Array.from({ length: old }, (_, i) => this.index.get(i))
      this.index.reset(added.concat(kept))
      change = 'prepend'
    } else {
      this.index.reset(Array.from({ length: count }, (_, i) => height(i)))
      change = 'rebuild'
    }
    this.#first = first
    this.#last = last
    return change
  }

  /** Whether the row with this key has been rendered and measured (else its height is a guess). */
  isMeasured(key: string): boolean {
    return this.#measured.has(key)
  }

  /** Records the rendered height of row `index` (key `key`); true if it differs from what was counted. */
  measure(index: number, key: string, height: number): boolean {
    this.#measured.set(key, height)
    if (Math.abs(this.index.get(index) - height) < 0.5) return false
    this.index.set(index, height)
    return true
  }
}

/** The rows to render (`end` exclusive) for a viewport at `top` of `height`, plus `overscan` px each side. */
export function visibleRange(
  index: HeightIndex,
  top: number,
  height: number,
  overscan: number,
): { start: number; end: number } {
  if (index.count === 0) return { start: 0, end: 0 }
  const start = index.indexAt(Math.max(0, top - overscan))
  const end = index.indexAt(top + height + overscan) + 1
  return { start, end: Math.min(end, index.count) }
}

/**
 * A row that stays put on screen: `delta` is the distance from the viewport's top to the row's
 * bottom edge. The bottom (not the top) is kept so that a row whose own top part changes (a day
 * separator or a sender name appearing or going once older rows arrive above it) moves nothing below it.
 */
export interface Anchor {
  readonly index: number
  readonly delta: number
}

/** The anchor for a viewport at `top`: the first row at or after `minIndex` whose bottom is below `top`. */
export function anchorAt(index: HeightIndex, top: number, minIndex = 0): Anchor | null {
  if (index.count <= minIndex) return null
  let i = Math.max(index.indexAt(top), minIndex)
  // A row ending exactly at the viewport's top is not on screen: take the next one.
  while (i < index.count - 1 && index.offsetOf(i + 1) <= top) i++
  return { index: i, delta: index.offsetOf(i + 1) - top }
}

/** The scroll position that puts the anchor row back where it was. */
export function scrollTopFor(index: HeightIndex, anchor: Anchor): number {
  return Math.max(0, index.offsetOf(anchor.index + 1) - anchor.delta)
}

/** Whether a scroller is at (within `slack` px of) its bottom. */
export function atBottom(scrollTop: number, clientHeight: number, scrollHeight: number, slack = 4): boolean {
  return scrollHeight - clientHeight - scrollTop <= slack
}
