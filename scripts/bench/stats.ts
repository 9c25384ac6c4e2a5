/** Latency recording (HdrHistogram, microsecond resolution) and the summary every scenario reports. */
import { build, type Histogram } from 'hdr-histogram-js'

/** Percentiles in milliseconds. */
export interface LatencySummary {
  readonly count: number
  readonly mean: number
  readonly p50: number
  readonly p90: number
  readonly p95: number
  readonly p99: number
  readonly p999: number
  readonly max: number
}

const round3 = (x: number) => Math.round(x * 1000) / 1000

export class Latency {
  readonly #h: Histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  })

  /** Records one latency given in milliseconds (stored in whole microseconds, at least 1). */
  record(ms: number): void {
    this.#h.recordValue(Math.max(1, Math.round(ms * 1000)))
  }

  get count(): number {
    return this.#h.totalCount
  }

  summary(): LatencySummary {
    const h = this.#h
    const at = (p: number) => round3(h.getValueAtPercentile(p) / 1000)
    return {
      count: h.totalCount,
      mean: round3(h.mean / 1000),
      p50: at(50),
      p90: at(90),
      p95: at(95),
      p99: at(99),
      p999: at(99.9),
      max: round3(h.maxValue / 1000),
    }
  }
}

/** Counts by key (error codes, close codes). */
export type Counts = Record<string, number>

export function bump(counts: Counts, key: string | number): void {
  counts[key] = (counts[key] ?? 0) + 1
}

export function mergeCounts(...all: Counts[]): Counts {
  const out: Counts = {}
  for (const c of all) for (const [k, v] of Object.entries(c)) out[k] = (out[k] ?? 0) + v
  return out
}
