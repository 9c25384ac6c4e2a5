/**
 * `npm run bench [-- --quick] [--only NAME[,NAME]] [--sync FULL|NORMAL] [--profile]`
 *
 * The orchestrator. It starts the homeserver as a child process pinned to core 0 and the load
 * generator as worker processes pinned to core 1 (itself pinned to core 1 too; it only starts
 * processes, reads /proc and talks to the server's inspector while the workers measure). Every
 * scenario gets a fresh temp data dir and a fresh server; clients use real sockets on 127.0.0.1.
 * Results go to stdout as a table and to bench-results/<date>.json. See docs/benchmarks.md.
 * The federation scenarios (federation.ts) start two servers instead, acme on core 0 and globex on core 1.
 * The desktop scenarios (desktop.ts) drive the web client in Chromium (on core 1) against one server.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { closeSync, fdatasyncSync, openSync, rmSync, statSync, writeSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { LatencyResult, LoadMethods, OpenLoopResult, Pair, PipelineResult, RoomFixture } from './load.ts'
import { cleanupNow, fdLimit, hasTaskset, pinSelf, removeDir, statusKiB, trackDir } from './procs.ts'
import {
  federationLatency,
  federationThroughput,
  FEDERATION_FULL,
  FEDERATION_QUICK,
  FEDERATION_SCENARIOS,
} from './federation.ts'
import { chromiumVersion } from './desktop-browser.ts'
import { E2E_FULL, E2E_QUICK, E2E_SCENARIOS, e2ePipeline } from './e2e.ts'
import { DESKTOP_FULL, DESKTOP_QUICK, DESKTOP_SCENARIOS, desktopColdStart, desktopHeap } from './desktop.ts'
import { LoadWorker, type Params, type Result } from './rpc.ts'
import { benchConfig, Homeserver, type SyncMode } from './server.ts'
import { cpuPerUnitUs, fmt, ms, problemNotes, type Row, type ScenarioReport } from './report.ts'
import { Latency, type LatencySummary } from './stats.ts'
import { Window, type WindowStats } from './window.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SERVER_CORE = 0
const LOAD_CORE = 1

// ---- options ----

const SCENARIOS = [
  'latency',
  'open-loop',
  'throughput',
  'fanout-100',
  'fanout-1000',
  'connections',
  ...FEDERATION_SCENARIOS,
  ...DESKTOP_SCENARIOS,
  ...E2E_SCENARIOS,
] as const
type ScenarioName = (typeof SCENARIOS)[number]

interface Options {
  readonly quick: boolean
  readonly sync: SyncMode
  readonly profile: boolean
  readonly only: readonly ScenarioName[]
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      sync: { type: 'string', default: 'FULL' },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    console.log(
      `usage: npm run bench -- [--quick] [--only ${SCENARIOS.join('|')}|fanout|federation|desktop[,...]] [--sync FULL|NORMAL] [--profile]`,
    )
    process.exit(0)
  }
  const sync = values.sync?.toUpperCase()
  if (sync !== 'FULL' && sync !== 'NORMAL')
    throw new Error(`--sync must be FULL or NORMAL, got ${values.sync}`)
  let only: ScenarioName[]
  if (values.only) {
    only = []
    for (const want of values.only.split(',').map((s) => s.trim())) {
      const hits = SCENARIOS.filter((s) => s === want || s.startsWith(want + '-'))
      if (hits.length === 0) throw new Error(`--only: no scenario ${want} (have ${SCENARIOS.join(', ')})`)
      only.push(...hits)
    }
  } else {
    // The quick smoke run leaves out the 1,000-member room (its set-up alone takes ~15 s).
    only = SCENARIOS.filter((s) => !(values.quick && s === 'fanout-1000'))
  }
  return { quick: values.quick ?? false, sync, profile: values.profile ?? false, only }
}

const FULL_SIZES = {
  latency: { warmup: 500, count: 5000, maxMs: 60_000 },
  openLoop: { rate: 1000, warmupMs: 1000, durationMs: 5000 },
  throughput: { inFlight: 100, warmupMs: 1000, durationMs: 5000, parallel: 4 },
  fanout: { inFlight: 10, warmupMs: 1000, durationMs: 5000 },
  connections: { count: 10_000, users: 1000 },
  federation: FEDERATION_FULL,
  desktop: DESKTOP_FULL,
  e2e: E2E_FULL,
}
const QUICK_SIZES: typeof FULL_SIZES = {
  latency: { warmup: 100, count: 300, maxMs: 10_000 },
  openLoop: { rate: 1000, warmupMs: 300, durationMs: 1500 },
  throughput: { inFlight: 100, warmupMs: 300, durationMs: 1500, parallel: 4 },
  fanout: { inFlight: 10, warmupMs: 300, durationMs: 1500 },
  connections: { count: 1000, users: 50 },
  federation: FEDERATION_QUICK,
  desktop: DESKTOP_QUICK,
  e2e: E2E_QUICK,
}

// ---- the harness ----

class Bench {
  readonly workers: LoadWorker[] = []
  readonly sizes: typeof FULL_SIZES

  constructor(
    readonly opts: Options,
    readonly outDir: string,
    readonly stamp: string,
  ) {
    this.sizes = opts.quick ? QUICK_SIZES : FULL_SIZES
  }

  worker(i: number): LoadWorker {
    while (this.workers.length <= i) this.workers.push(LoadWorker.spawn(LOAD_CORE))
    return this.workers[i]!
  }

  call<M extends keyof LoadMethods>(
    method: M,
    params: Params<M>,
    timeoutMs: number,
    w = 0,
  ): Promise<Result<M>> {
    return this.worker(w).call(method, params, timeoutMs)
  }

  /**
   * Fresh data dir; set-up (on a separate synchronous=NORMAL server when it registers hundreds of
   * users, since each registration is two commits); then the measured server; always cleaned up.
   */
  async scenario<F, R>(
    name: string,
    users: number,
    setup: (url: string) => Promise<F>,
    run: (server: Homeserver, fixture: F) => Promise<R>,
  ): Promise<{ result: R; walBytes: number; logProblems: number; setupMs: number }> {
    const dataDir = await mkdtemp(join(tmpdir(), `parley-bench-${name}-`))
    trackDir(dataDir)
    try {
      const started = performance.now()
      const separate = users >= 200 && this.opts.sync === 'FULL'
      let fixture: F | undefined
      if (separate) {
        const s = await Homeserver.start({ dataDir, sync: 'NORMAL', core: SERVER_CORE, inspect: false })
        try {
          fixture = await setup(s.url)
        } finally {
          await s.stop()
        }
      }
      const server = await Homeserver.start({
        dataDir,
        sync: this.opts.sync,
        core: SERVER_CORE,
        inspect: true,
      })
      try {
        if (!separate) fixture = await setup(server.url)
        const setupMs = Math.round(performance.now() - started)
        const result = await run(server, fixture!)
        const wal = statSync(join(dataDir, 'homeserver.db-wal'), { throwIfNoEntry: false })
        return { result, walBytes: wal?.size ?? 0, logProblems: server.logProblems, setupMs }
      } catch (err) {
        const out = server.output()
        throw new Error(`${(err as Error).message}${out ? `\n--- homeserver output ---\n${out}` : ''}`, {
          cause: err,
        })
      } finally {
        for (const w of this.workers) w.onMark = async () => {}
        await server.stop()
      }
    } finally {
      removeDir(dataDir)
    }
  }

  /** A measuring window around whatever happens between its start() and end(). */
  window(server: Homeserver, label: string): Window {
    return new Window(
      server,
      this.workers.map((w) => w.pid),
      this.opts.profile ? { dir: this.outDir, label: `${this.stamp}-${label}`, root: ROOT } : null,
    )
  }

  /** Runs `fn` (one worker call that marks its window) and returns what was measured around it. */
  async measured<T>(
    server: Homeserver,
    label: string,
    fn: () => Promise<T>,
  ): Promise<{ value: T; window: WindowStats }> {
    const window = this.window(server, label)
    for (const w of this.workers) w.onMark = (name) => (name === 'start' ? window.start() : window.end())
    const value = await fn()
    return { value, window: window.stats }
  }

  // ---- (1) ----
  async latency(): Promise<ScenarioReport> {
    const size = this.sizes.latency
    const { result, walBytes, logProblems, setupMs } = await this.scenario(
      'latency',
      2,
      (url) => this.call('setupPairs', { url, pairs: 1 }, 120_000),
      (server, pairs) =>
        this.measured(server, 'latency', () =>
          this.call('runLatency', { url: server.url, pair: pairs[0]!, ...size }, size.maxMs + 180_000),
        ),
    )
    const r: LatencyResult = result.value
    const notes = problemNotes(r)
    if (r.truncated) notes.push(`time cap: ${r.n} of ${size.count}`)
    notes.push(`ack p50 ${ms(r.ack.p50)} p99 ${ms(r.ack.p99)}`)
    return {
      rows: [
        {
          scenario: 'latency, one at a time',
          result: `n=${fmt(r.n)}, ${fmt((r.n * 1000) / r.elapsedMs)} msg/s`,
          latency: r.receive,
          window: result.window,
          cpuPerMsgUs: cpuPerUnitUs(result.window, r.elapsedMs, r.n),
          notes: notes.join('; '),
        },
      ],
      headline: { latencyP50Ms: r.receive.p50, latencyP99Ms: r.receive.p99 },
      data: { ...r, window: result.window, walBytes, logProblems, setupMs },
    }
  }

  // ---- (2) ----
  async openLoop(): Promise<ScenarioReport> {
    const size = this.sizes.openLoop
    const { result, walBytes, logProblems, setupMs } = await this.scenario(
      'open-loop',
      2,
      (url) => this.call('setupPairs', { url, pairs: 1 }, 120_000),
      (server, pairs) =>
        this.measured(server, 'open-loop', () =>
          this.call(
            'runOpenLoop',
            { url: server.url, pair: pairs[0]!, ...size },
            size.warmupMs + size.durationMs + 120_000,
          ),
        ),
    )
    const r: OpenLoopResult = result.value
    const notes = problemNotes(r)
    notes.push(`ack p50 ${ms(r.ack.p50)} p99 ${ms(r.ack.p99)}`, `max send lag ${ms(r.maxSendLagMs)}`)
    return {
      rows: [
        {
          scenario: 'latency, open loop',
          result: `${fmt(r.rate)}/s x ${(size.durationMs / 1000).toFixed(0)} s (+${size.warmupMs} ms warm-up)`,
          latency: r.receive,
          window: result.window,
          cpuPerMsgUs: (result.window.serverCpuMs * 1000) / r.sent,
          notes: notes.join('; '),
        },
      ],
      headline: {},
      data: { ...r, window: result.window, walBytes, logProblems, setupMs },
    }
  }

  // ---- (3) ----
  async throughput(): Promise<ScenarioReport> {
    const size = this.sizes.throughput
    const timeout = size.warmupMs + size.durationMs + 120_000
    const { result, walBytes, logProblems, setupMs } = await this.scenario(
      'throughput',
      2 * size.parallel,
      (url) => this.call('setupPairs', { url, pairs: size.parallel }, 300_000),
      async (server, pairs: Pair[]) => {
        const run = (n: number) =>
          this.measured(server, `throughput-${n}`, () =>
            this.call('runThroughput', { url: server.url, pairs: pairs.slice(0, n), ...size }, timeout),
          )
        return [await run(1), await run(size.parallel)]
      },
    )
    const rows = result.map(({ value: r, window }) =>
      pipelineRow(`throughput, ${r.senders} device(s)`, r, window),
    )
    const first = result[0]!.value
    return {
      rows,
      headline: { msgPerS: (first.acked * 1000) / first.windowMs },
      data: {
        runs: result.map(({ value, window }) => ({ ...value, window })),
        walBytes,
        logProblems,
        setupMs,
      },
    }
  }

  // ---- (4) ----
  async fanout(members: number): Promise<ScenarioReport> {
    const size = this.sizes.fanout
    const { result, walBytes, logProblems, setupMs } = await this.scenario(
      `fanout-${members}`,
      members,
      (url) => this.call('setupRoom', { url, members }, 600_000),
      (server, room: RoomFixture) =>
        this.measured(server, `fanout-${members}`, () =>
          this.call(
            'runFanout',
            { url: server.url, room, ...size },
            size.warmupMs + size.durationMs + 180_000,
          ),
        ),
    )
    return {
      rows: [pipelineRow(`fan-out, ${members}-member room`, result.value, result.window)],
      headline: { deliveriesPerS: (result.value.deliveries * 1000) / result.value.windowMs },
      data: { ...result.value, window: result.window, walBytes, logProblems, setupMs },
    }
  }

  // ---- (5) ----
  async connections(): Promise<ScenarioReport> {
    const { count, users } = this.sizes.connections
    const warm = 20
    const { result, logProblems, setupMs } = await this.scenario(
      'connections',
      users,
      (url) => this.call('setupUsers', { url, count: users }, 600_000),
      async (server, tokens: string[]) => {
        const inspector = server.inspector
        if (!inspector) throw new Error('connections: the server inspector is needed for heap figures')
        const limit = fdLimit(server.pid)
        if (limit < count + warm + 500) {
          throw new Error(`connections: the server may open ${limit} files; ${count} sockets need more`)
        }
        // Warm the upgrade, auth and sync paths so the baseline holds their code and caches.
        await this.call('openIdle', { url: server.url, tokens, count: warm, addressOffset: 0 }, 60_000)
        await sleep(1000)
        const snapshot = async () => {
          await inspector.gc()
          const m = await inspector.memory()
          return { rssKiB: statusKiB(server.pid, 'VmRSS'), heapUsed: m.heapUsed, external: m.external }
        }
        const before = await snapshot()
        // Two load processes, half the sockets each (both pinned to the load core).
        this.worker(1)
        const window = this.window(server, 'connections-open')
        await window.start()
        const half = Math.floor(count / 2)
        const opened = await Promise.all([
          this.call('openIdle', { url: server.url, tokens, count: half, addressOffset: warm }, 300_000, 0),
          this.call(
            'openIdle',
            { url: server.url, tokens, count: count - half, addressOffset: warm + half },
            300_000,
            1,
          ),
        ])
        await window.end()
        await sleep(2000)
        const rssNoGcKiB = statusKiB(server.pid, 'VmRSS')
        const after = await snapshot()
        const closed = await Promise.all(this.workers.map((w) => w.call('closeIdle', {}, 60_000)))
        return { before, after, rssNoGcKiB, opened, window: window.stats, closed }
      },
    )
    const n = result.opened.reduce((s, o) => s + o.opened, 0)
    const failed = result.opened.reduce((s, o) => s + o.failed, 0)
    const openMs = Math.max(...result.opened.map((o) => o.ms))
    const rssPerConnKB = ((result.after.rssKiB - result.before.rssKiB) * 1.024) / n
    const heapPerConnKB = (result.after.heapUsed - result.before.heapUsed) / 1000 / n
    const notes = [
      `RSS ${rssPerConnKB.toFixed(1)} KB/conn`,
      `heap ${heapPerConnKB.toFixed(1)} KB/conn`,
      `opened in ${(openMs / 1000).toFixed(1)} s (srv us/msg: CPU per socket opened)`,
    ]
    if (failed) notes.push(`${failed} failed: ${result.opened.find((o) => o.firstError)?.firstError ?? ''}`)
    for (const c of result.closed) notes.push(...problemNotes(c))
    return {
      rows: [
        {
          scenario: 'idle connections',
          result: `${fmt(n)} authenticated sockets (${fmt(users)} users)`,
          latency: null,
          window: result.window,
          cpuPerMsgUs: (result.window.serverCpuMs * 1000) / n,
          notes: notes.join('; '),
        },
      ],
      headline: { rssPerConnKB },
      data: {
        connections: n,
        failed,
        users,
        rssPerConnKB: Math.round(rssPerConnKB * 100) / 100,
        heapPerConnKB: Math.round(heapPerConnKB * 100) / 100,
        before: result.before,
        after: result.after,
        rssAfterNoGcKiB: result.rssNoGcKiB,
        openMs,
        openWindow: result.window,
        closes: result.closed,
        logProblems,
        setupMs,
      },
    }
  }

  stop(): void {
    for (const w of this.workers) w.stop()
  }
}

function pipelineRow(scenario: string, r: PipelineResult, window: WindowStats): Row {
  const perS = (n: number) => (n * 1000) / r.windowMs
  const fanout = r.recipients > r.senders
  const notes = problemNotes(r)
  notes.push(`${r.inFlight} in flight per sender`)
  notes.push(`ack p50 ${ms(r.ack.p50)} p99 ${ms(r.ack.p99)}`)
  return {
    scenario,
    result: fanout
      ? `${fmt(perS(r.deliveries))} deliveries/s (${fmt(perS(r.acked))} msg/s)`
      : `${fmt(perS(r.acked))} msg/s durable`,
    latency: r.delivery,
    window,
    cpuPerMsgUs: cpuPerUnitUs(window, r.windowMs, r.acked),
    notes: notes.join('; '),
  }
}

const sleep = (t: number) => new Promise<void>((resolve) => setTimeout(resolve, t))

/** The code under test: HEAD and which server, protocol and renderer files differ from it (read-only git). */
function codeVersion(): { commit: string; modified: string[] } {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
  try {
    const modified = git('diff', '--name-only', 'HEAD', '--', 'homeserver', 'protocol', 'desktop/src')
    return { commit: git('rev-parse', '--short', 'HEAD'), modified: modified ? modified.split('\n') : [] }
  } catch {
    return { commit: 'unknown', modified: [] }
  }
}

/** fdatasync latency of 4 KiB writes where the data dirs live: the floor of a FULL commit. */
function fsyncProbe(n: number): LatencySummary {
  const dir = tmpdir()
  const path = join(dir, `parley-bench-fsync-${process.pid}`)
  const fd = openSync(path, 'w')
  const lat = new Latency()
  const block = Buffer.alloc(4096, 1)
  try {
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      writeSync(fd, block, 0, block.length, i * block.length)
      fdatasyncSync(fd)
      lat.record(performance.now() - t)
    }
  } finally {
    closeSync(fd)
    rmSync(path, { force: true })
  }
  return lat.summary()
}

function table(rows: readonly Row[]): string {
  const head = [
    'scenario',
    'result',
    'p50 ms',
    'p90',
    'p99',
    'p99.9',
    'max',
    'srv CPU (sys)',
    'srv us/msg',
    'load CPU',
    'ELD p99',
    'cores busy',
    'notes',
  ]
  const body = rows.map((r) => [
    r.scenario,
    r.result,
    ms(r.latency?.p50),
    ms(r.latency?.p90),
    ms(r.latency?.p99),
    ms(r.latency?.p999),
    ms(r.latency?.max),
    `${r.window.serverCpuPct}% (${Math.round(r.window.serverSysPct)})`,
    r.cpuPerMsgUs === null ? '-' : r.cpuPerMsgUs.toFixed(0),
    `${r.window.loadCpuPct}%`,
    r.window.eventLoopDelayMs ? ms(r.window.eventLoopDelayMs.p99) : '-',
    r.window.coreBusyPct.map((p) => Math.round(p)).join('/') + '%',
    r.notes,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i >= 2 && i <= 11 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}

interface Target {
  readonly what: string
  readonly target: string
  readonly value: number | null
  readonly unit: string
  readonly pass: boolean | null
}

function targets(reports: Partial<Record<ScenarioName, ScenarioReport>>): Target[] {
  const t = (
    what: string,
    target: string,
    unit: string,
    value: number | null,
    ok: (v: number) => boolean,
  ) => ({
    what,
    target,
    unit,
    value: value === null ? null : Math.round(value * 1000) / 1000,
    pass: value === null ? null : ok(value),
  })
  const lat = reports.latency?.headline
  const msgPerS = reports.throughput?.headline.msgPerS
  const deliveries = reports['fanout-100']?.headline.deliveriesPerS
  const conn = reports.connections?.headline.rssPerConnKB
  const fed = reports['federation-latency']?.headline
  const crossOverSame =
    fed?.crossServerP50Ms !== undefined && fed.sameServerP50Ms
      ? fed.crossServerP50Ms / fed.sameServerP50Ms
      : null
  const link = reports['federation-throughput']?.headline.linkEventsPerS
  const cold = reports['desktop-cold-start']?.headline
  const heapGrowth = reports['desktop-heap']?.headline.heapGrowthMiB
  const e2eAdded = reports.e2e?.headline.e2eAddedP50Ms
  const argon2 = reports.e2e?.headline.argon2RendererMaxMs
  return [
    t('latency one at a time, p50', '<= 0.3', 'ms', lat?.latencyP50Ms ?? null, (v) => v <= 0.3),
    t('latency one at a time, p99', '<= 3', 'ms', lat?.latencyP99Ms ?? null, (v) => v <= 3),
    t('durable msg/s, 1 device, 100 in flight', '>= 15,000', 'msg/s', msgPerS ?? null, (v) => v >= 15_000),
    t('deliveries/s, 100-member room', '>= 60,000', '/s', deliveries ?? null, (v) => v >= 60_000),
    t('server memory per idle connection (RSS)', '<= 15', 'KB', conn ?? null, (v) => v <= 15),
    t('cross-server p50 / same-server p50', '< 2', 'x', crossOverSame, (v) => v < 2),
    t('events/s over one federation link', '>= 10,000', '/s', link ?? null, (v) => v >= 10_000),
    t(
      'desktop cold start, p95, API held',
      '< 1,000',
      'ms',
      cold?.coldStartHeldP95Ms ?? null,
      (v) => v < 1000,
    ),
    t(
      'desktop cold start, p95, server answering',
      '< 1,000',
      'ms',
      cold?.coldStartServedP95Ms ?? null,
      (v) => v < 1000,
    ),
    t('desktop JS heap growth over room switches', '<= 20', 'MiB', heapGrowth ?? null, (v) => v <= 20),
    t('E2E adds to a 2-member message, p50', '< 2', 'ms', e2eAdded ?? null, (v) => v < 2),
    t('argon2id unlock in Chromium, default cost, max', '<= 1,500', 'ms', argon2 ?? null, (v) => v <= 1500),
  ]
}

async function main(): Promise<number> {
  const opts = options()
  const started = performance.now()
  const date = new Date()
  const stamp = date.toISOString().replace(/[:.]/g, '-')
  const outDir = join(ROOT, 'bench-results')
  await mkdir(outDir, { recursive: true })
  const selfPinned = pinSelf(LOAD_CORE)
  const pinning = hasTaskset()
    ? `homeserver: taskset -c ${SERVER_CORE}; load workers: taskset -c ${LOAD_CORE}; orchestrator: core ${LOAD_CORE}${selfPinned ? '' : ' (pinning failed)'}, idle while measuring`
    : 'no taskset: nothing pinned (the generator shares cores with the server and understates capacity)'
  const fsync = fsyncProbe(opts.quick ? 20 : 100)
  const code = codeVersion()
  const machine = {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    totalMemGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
    loadavgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
    fdLimit: fdLimit(process.pid),
    fdatasync4KiBMs: fsync,
    ...(opts.only.some((s) => s.startsWith('desktop-')) ? { chromium: chromiumVersion() } : {}),
  }
  console.log(`Parley bench ${opts.quick ? '(quick) ' : ''}- ${date.toISOString()}`)
  console.log(
    `${machine.cpuModel} x${machine.cpus}, ${machine.totalMemGiB} GiB, node ${machine.node}, load avg ${machine.loadavgAtStart.join(' ')}`,
  )
  console.log(
    `synchronous=${opts.sync}; fdatasync(4 KiB) in ${tmpdir()}: p50 ${ms(fsync.p50)} ms, p99 ${ms(fsync.p99)} ms`,
  )
  console.log(`pinning: ${pinning}`)
  if (machine.chromium) console.log(`browser: ${machine.chromium} (desktop scenarios, on core ${LOAD_CORE})`)
  console.log(
    `code: ${code.commit}${code.modified.length ? ` + uncommitted changes to ${code.modified.join(', ')}` : ''}`,
  )
  console.log(`scenarios: ${opts.only.join(', ')}\n`)

  const bench = new Bench(opts, outDir, stamp)
  const reports: Partial<Record<ScenarioName, ScenarioReport>> = {}
  const failures: Array<{ scenario: string; error: string }> = []
  const rows: Row[] = []
  try {
    for (const name of opts.only) {
      const t0 = performance.now()
      process.stdout.write(`- ${name} ... `)
      try {
        const report =
          name === 'latency'
            ? await bench.latency()
            : name === 'open-loop'
              ? await bench.openLoop()
              : name === 'throughput'
                ? await bench.throughput()
                : name === 'fanout-100'
                  ? await bench.fanout(100)
                  : name === 'fanout-1000'
                    ? await bench.fanout(1000)
                    : name === 'connections'
                      ? await bench.connections()
                      : name === 'federation-latency'
                        ? await federationLatency(bench, bench.sizes.federation.latency)
                        : name === 'federation-throughput'
                          ? await federationThroughput(bench, bench.sizes.federation.throughput)
                          : name === 'desktop-cold-start'
                            ? await desktopColdStart(bench, bench.sizes.desktop.coldStart)
                            : name === 'e2e'
                              ? await e2ePipeline(bench, bench.sizes.e2e)
                              : await desktopHeap(bench, bench.sizes.desktop.heap)
        reports[name] = report
        rows.push(...report.rows)
        const logged = report.data.logProblems
        if (typeof logged === 'number' && logged > 0)
          console.log(`  (the homeserver logged ${logged} warnings or errors)`)
        console.log(
          `${((performance.now() - t0) / 1000).toFixed(1)} s: ${report.rows.map((r) => r.result).join(' | ')}`,
        )
      } catch (err) {
        const error = err instanceof Error ? (err.stack ?? err.message) : String(err)
        failures.push({ scenario: name, error })
        console.log(`FAILED after ${((performance.now() - t0) / 1000).toFixed(1)} s\n${error}`)
      }
    }
  } finally {
    bench.stop()
  }

  console.log(`\n${table(rows)}`)
  console.log(
    '\nLatency columns: send written -> receiver got the event (fan-out: every delivery); open loop from the scheduled send time;',
  )
  console.log(
    'fed: from the send time stamped in the body; the srv columns are acme (the owner), globex is in the notes.',
  )
  console.log(
    'srv/load CPU: % of one core over the measured window (sys: kernel part); ELD: server event-loop delay p99 (10 ms sampling);',
  )
  console.log(
    'cores busy: core 0 (server) / core 1 (load) over the window, whoever used them (the box is shared).',
  )
  const goals = targets(reports)
  console.log('\nTargets:')
  for (const g of goals) {
    const verdict = g.pass === null ? 'not run' : g.pass ? 'PASS' : 'FAIL'
    console.log(
      `  ${g.what.padEnd(42)} ${g.target.padStart(9)} ${g.unit.padEnd(5)} ${String(g.value ?? '-').padStart(10)}  ${verdict}`,
    )
  }
  if (opts.profile) {
    console.log('\nServer CPU profiles (self time, % of busy time):')
    for (const r of rows) {
      const p = r.window.profile
      if (!p) continue
      console.log(`  ${r.scenario} (idle ${p.idlePct}%, ${p.file})`)
      for (const f of p.top) console.log(`    ${f.pct.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`)
    }
    for (const report of Object.values(reports))
      for (const line of report.profileText ?? []) console.log(line)
  }
  const json = {
    date: date.toISOString(),
    durationS: Math.round((performance.now() - started) / 1000),
    code,
    machine: { ...machine, loadavgAtEnd: loadavg().map((x) => Math.round(x * 100) / 100) },
    config: {
      synchronous: opts.sync,
      quick: opts.quick,
      profile: opts.profile,
      pinning,
      loadProcess:
        'separate load worker processes (scripts/bench/worker.ts); the orchestrator only coordinates',
      sizes: bench.sizes,
      server: benchConfig(opts.sync),
    },
    scenarios: Object.fromEntries(
      Object.entries(reports).map(([k, v]) => [k, { rows: v.rows, headline: v.headline, ...v.data }]),
    ),
    targets: goals,
    failures,
  }
  const file = join(outDir, `${stamp}.json`)
  await writeFile(file, JSON.stringify(json, null, 2) + '\n')
  console.log(`\n${rows.length} rows in ${json.durationS} s; ${failures.length} failed. Results: ${file}`)
  return failures.length > 0 ? 1 : 0
}

process.on('exit', cleanupNow)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping the homeserver and load workers`)
    process.exit(130)
  })
}
process.on('unhandledRejection', (err) => {
  console.error('bench: unhandled rejection:', err)
  process.exit(1)
})

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err)
    process.exit(1)
  },
)
