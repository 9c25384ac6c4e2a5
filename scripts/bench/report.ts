/** What a scenario reports to the orchestrator (scripts/bench/index.ts): table rows, headline figures, raw data. */
import type { Problems } from './load.ts'
import type { LatencySummary } from './stats.ts'
import type { WindowStats } from './window.ts'

export interface Row {
  readonly scenario: string
  readonly result: string
  readonly latency: LatencySummary | null
  /** The measured server's window (federation: the owner's, acme; the other server's is in the notes). */
  readonly window: WindowStats
  /** Server CPU per message (us). */
  readonly cpuPerMsgUs: number | null
  readonly notes: string
}

/** Figures the targets are checked against. */
export interface Headline {
  latencyP50Ms?: number
  latencyP99Ms?: number
  msgPerS?: number
  deliveriesPerS?: number
  rssPerConnKB?: number
  /** Federation: send -> receive p50 with the receiver on the other server, and on the same one. */
  crossServerP50Ms?: number
  sameServerP50Ms?: number
  /** Federation: events per second one link carried (applied at the replica, steady state). */
  linkEventsPerS?: number
  /** Desktop: cold start to a complete 200-room list, p95, with the API held / with the server answering. */
  coldStartHeldP95Ms?: number | undefined
  coldStartServedP95Ms?: number | undefined
  /** Desktop: JS heap growth over the room switches, after forced GCs (MiB). */
  heapGrowthMiB?: number
  /** E2E: encrypted minus plain send -> decrypted p50 in a 2-member room (ms). */
  e2eAddedP50Ms?: number
  /** E2E: the slowest argon2id unlock at the default cost in Chromium, libsodium load included (ms). */
  argon2RendererMaxMs?: number
}

export interface ScenarioReport {
  readonly rows: Row[]
  readonly headline: Headline
  readonly data: Record<string, unknown>
  /** With `--profile`: what to print about profiles taken outside the server (desktop: the browser's). */
  readonly profileText?: readonly string[]
}

export const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
export const ms = (n: number | undefined) => (n === undefined ? '-' : n < 10 ? n.toFixed(3) : n.toFixed(1))

export function problemNotes(p: Problems & { undelivered?: number; unacked?: number }): string[] {
  const notes: string[] = []
  for (const [code, n] of Object.entries(p.errors)) notes.push(`${n} x ${code}`)
  for (const [code, n] of Object.entries(p.closes)) notes.push(`${n} closed ${code}`)
  if (p.undelivered) notes.push(`${p.undelivered} undelivered`)
  if (p.unacked) notes.push(`${p.unacked} unacked`)
  return notes
}

/**
 * Server CPU per message. The CPU window (orchestrator) and the counting window (worker) differ by
 * the IPC hops of the marks, so the CPU rate is applied to the worker's window.
 */
export function cpuPerUnitUs(window: WindowStats, countedMs: number, count: number): number | null {
  if (count <= 0 || window.wallMs <= 0) return null
  return (window.serverCpuMs * (countedMs / window.wallMs) * 1000) / count
}
