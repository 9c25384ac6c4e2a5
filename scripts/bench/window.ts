/**
 * What the orchestrator measures around a scenario's window (the load worker marks its start and end):
 * server and load-generator CPU time from /proc, per-core load of the whole box, and through the
 * inspector the server's event-loop delay and, with `--profile`, a CPU profile.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { topSelfTime, type ProfileSummary } from './profile.ts'
import { coreBusyPct, coreTimes, cpuMs, cpuTimes, statusKiB, type CoreTimes } from './procs.ts'
import type { Homeserver } from './server.ts'

export interface WindowStats {
  readonly wallMs: number
  readonly serverCpuMs: number
  /** Of one core. */
  readonly serverCpuPct: number
  /** The kernel part of it (socket writes, WAL writes and fsync), of one core. */
  readonly serverSysPct: number
  /** All load workers together, of one core. */
  readonly loadCpuPct: number
  /** Every core of the box, whoever used it (other engineers' jobs included). */
  readonly coreBusyPct: readonly number[]
  readonly serverRssKiB: number
  readonly eventLoopDelayMs: { p50: number; p99: number; max: number } | null
  readonly profile: (ProfileSummary & { file: string }) | null
}

interface Sample {
  readonly t: number
  readonly server: number
  readonly serverSys: number
  readonly load: number
  readonly cores: CoreTimes
}

export class Window {
  #start: Sample | null = null
  #stats: WindowStats | null = null

  constructor(
    private readonly server: Homeserver,
    private readonly loadPids: readonly number[],
    private readonly profile: { dir: string; label: string; root: string } | null,
  ) {}

  #sample(): Sample {
    const server = cpuTimes(this.server.pid)
    return {
      t: performance.now(),
      server: server.user + server.system,
      serverSys: server.system,
      load: this.loadPids.reduce((sum, pid) => sum + cpuMs(pid), 0),
      cores: coreTimes(),
    }
  }

  async start(): Promise<void> {
    const inspector = this.server.inspector
    if (inspector) {
      await inspector.eldStart()
      if (this.profile) await inspector.profileStart()
    }
    this.#start = this.#sample()
  }

  async end(): Promise<void> {
    const end = this.#sample()
    const start = this.#start
    if (!start) throw new Error('window ended before it started')
    const rss = statusKiB(this.server.pid, 'VmRSS')
    const inspector = this.server.inspector
    let eld: WindowStats['eventLoopDelayMs'] = null
    let profile: WindowStats['profile'] = null
    if (inspector) {
      eld = await inspector.eldStop()
      if (this.profile) {
        const raw = await inspector.profileStop()
        const file = join(this.profile.dir, `${this.profile.label}.cpuprofile`)
        await writeFile(file, JSON.stringify(raw))
        profile = { ...topSelfTime(raw, this.profile.root, 8), file }
      }
    }
    const wallMs = end.t - start.t
    const pct = (ms: number) => Math.round((ms * 1000) / wallMs) / 10
    this.#stats = {
      wallMs: Math.round(wallMs),
      serverCpuMs: Math.round(end.server - start.server),
      serverCpuPct: pct(end.server - start.server),
      serverSysPct: pct(end.serverSys - start.serverSys),
      loadCpuPct: pct(end.load - start.load),
      coreBusyPct: coreBusyPct(start.cores, end.cores),
      serverRssKiB: rss,
      eventLoopDelayMs: eld,
      profile,
    }
  }

  get stats(): WindowStats {
    if (!this.#stats) throw new Error('the scenario never marked its measured window')
    return this.#stats
  }
}

/**
 * Several windows as one (interleaved series): times and CPU added up, percentages weighted by wall
 * time, event-loop delay p50 weighted and p99 and max the worst of them; no profile.
 */
export function combined(windows: readonly WindowStats[]): WindowStats {
  const wallMs = windows.reduce((s, w) => s + w.wallMs, 0)
  const weighted = (pick: (w: WindowStats) => number) =>
    wallMs > 0 ? Math.round((windows.reduce((s, w) => s + pick(w) * w.wallMs, 0) / wallMs) * 10) / 10 : 0
  const cores = Math.max(0, ...windows.map((w) => w.coreBusyPct.length))
  const eld = windows.map((w) => w.eventLoopDelayMs).filter((e) => e !== null)
  return {
    wallMs,
    serverCpuMs: windows.reduce((s, w) => s + w.serverCpuMs, 0),
    serverCpuPct: weighted((w) => w.serverCpuPct),
    serverSysPct: weighted((w) => w.serverSysPct),
    loadCpuPct: weighted((w) => w.loadCpuPct),
    coreBusyPct: Array.from({ length: cores }, (_, i) => weighted((w) => w.coreBusyPct[i] ?? 0)),
    serverRssKiB: windows.at(-1)?.serverRssKiB ?? 0,
    eventLoopDelayMs:
      eld.length === windows.length && eld.length > 0
        ? {
            p50: weighted((w) => w.eventLoopDelayMs!.p50),
            p99: Math.max(...eld.map((e) => e.p99)),
            max: Math.max(...eld.map((e) => e.max)),
          }
        : null,
    profile: null,
  }
}
