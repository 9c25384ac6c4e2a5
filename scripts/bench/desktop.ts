/**
 * Desktop-client scenarios of `npm run bench` (`--only desktop`): the web build of the renderer in
 * Debian's Chromium (playwright-core), served by a homeserver child process (`--web-client`) pinned to
 * core 0; Chromium runs on core 1 with the orchestrator. Set-up goes through the real server
 * (desktop-seed.ts); the browser side is in desktop-browser.ts, profile analysis in desktop-profile.ts.
 * See docs/benchmarks.md, "Desktop client".
 *
 * - `desktop-cold-start`: one user in 200 rooms signs in once in a fresh profile (the encrypted
 *   IndexedDB cache fills); then N cold starts, each a new Chromium process on that profile: ms from
 *   navigation start to the animation frame whose room list holds all 200 rooms. Alternately with
 *   every /api/v1/ request held and the WebSocket never opened (what the cache alone gives) and with
 *   the server answering (also: ms to online, i.e. connected and caught up); then N starts in new tabs
 *   of one running browser (API held: the page's work without the browser's start-up beside it).
 * - `desktop-heap`: 20 rooms of 150 messages; each opened once, then 10 rounds through all 20 (200
 *   switches, a short pause after each like a quick user). JS heap after forced GCs before and after
 *   the rounds, the peak seen between switches, and ms from the click to the frame showing the
 *   room's newest message.
 *
 * With `--profile` the web client is built unminified, and extra runs (not in the figures) give a CPU
 * profile and a Chromium trace of one cold start and a CPU profile of one round of switches.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import {
  browserCpuMs,
  browserPids,
  buildWebClient,
  devtools,
  liveHeap,
  heapUsedNow,
  installStartProbe,
  launchProfile,
  onlyPage,
  profileStart,
  profileStop,
  signIn,
  startTimes,
  switchRoom,
  type HeapFigures,
  type StartTimes,
  type WebBuild,
} from './desktop-browser.ts'
import { DESKTOP_PASSWORD, seedRooms, type Seeded } from './desktop-seed.ts'
import {
  bundleBreakdown,
  summariseTrace,
  traceStart,
  type BundleBreakdown,
  type TraceSummary,
} from './desktop-profile.ts'
import { topSelfTime, type ProfileSummary } from './profile.ts'
import { removeDir, trackDir } from './procs.ts'
import { fmt, ms, type Row, type ScenarioReport } from './report.ts'
import { Homeserver, type SyncMode } from './server.ts'
import { Latency, type LatencySummary } from './stats.ts'
import { combined, Window, type WindowStats } from './window.ts'

const SERVER_CORE = 0
/** Heap figures are in MiB (what DevTools calls MB). */
const MB = 1024 * 1024

export const DESKTOP_SCENARIOS = ['desktop-cold-start', 'desktop-heap'] as const

export const DESKTOP_FULL = {
  coldStart: { rooms: 200, messagesPerRoom: 3, starts: 10 },
  heap: { rooms: 20, messagesPerRoom: 150, rounds: 10, pauseMs: 250 },
}
export const DESKTOP_QUICK: typeof DESKTOP_FULL = {
  coldStart: { rooms: 200, messagesPerRoom: 3, starts: 3 },
  heap: { rooms: 20, messagesPerRoom: 150, rounds: 2, pauseMs: 250 },
}

/** What the scenarios need of the bench harness (index.ts's `Bench`). */
export interface DesktopHarness {
  readonly opts: { readonly sync: SyncMode; readonly profile: boolean }
  readonly outDir: string
  readonly stamp: string
}

const sleep = (t: number) => new Promise<void>((resolve) => setTimeout(resolve, t))

/** What a scenario runs against. */
interface Desktop {
  readonly server: Homeserver
  /** Chromium's user data dir (empty at first). */
  readonly profileDir: string
  readonly web: WebBuild
}

/**
 * A fresh build of the web client, a homeserver serving it on a fresh data dir, and a fresh browser
 * profile dir around `run`; all removed afterwards.
 */
async function withDesktop<R>(
  h: DesktopHarness,
  name: string,
  run: (d: Desktop) => Promise<R>,
): Promise<{ result: R; logProblems: number; buildMs: number }> {
  const dirs: string[] = []
  const temp = async (what: string) => {
    const dir = await mkdtemp(join(tmpdir(), `parley-bench-${name}-${what}-`))
    trackDir(dir)
    dirs.push(dir)
    return dir
  }
  try {
    const t0 = performance.now()
    const web = await buildWebClient(!h.opts.profile)
    dirs.push(web.dir)
    const buildMs = Math.round(performance.now() - t0)
    const server = await Homeserver.start({
      dataDir: await temp('data'),
      sync: h.opts.sync,
      core: SERVER_CORE,
      inspect: true,
      webClientDir: web.dir,
    })
    try {
      const result = await run({ server, profileDir: await temp('profile'), web })
      return { result, logProblems: server.logProblems, buildMs }
    } catch (err) {
      const out = server.output()
      throw new Error(`${(err as Error).message}${out ? `\n--- homeserver output ---\n${out}` : ''}`, {
        cause: err,
      })
    } finally {
      await server.stop()
    }
  } finally {
    for (const dir of dirs) removeDir(dir)
  }
}

/** Chromium on `profileDir` around `fn`, always closed. */
async function withBrowser<R>(profileDir: string, fn: (context: BrowserContext) => Promise<R>): Promise<R> {
  const context = await launchProfile(profileDir)
  try {
    return await fn(context)
  } finally {
    await context.close()
  }
}

/** Until the list shows `count` rooms named `<prefix> ...`. */
async function roomsShown(page: Page, prefix: string, count: number): Promise<void> {
  await page.waitForFunction(
    ({ prefix, count }) =>
      Array.from(document.querySelectorAll('.room-name')).filter((el) => el.textContent?.startsWith(prefix))
        .length >= count,
    { prefix, count },
    { timeout: 60_000, polling: 100 },
  )
}

/** Signs the seeded user in (first start of the profile) and waits until the cache has everything. */
async function firstSignIn(page: Page, url: string, seeded: Seeded, prefix: string): Promise<void> {
  await page.goto(url)
  await signIn(page, seeded.username, DESKTOP_PASSWORD)
  await roomsShown(page, prefix, seeded.rooms.length)
  await page.locator('[data-status="online"]').waitFor({ timeout: 60_000 })
  await page.locator('[data-cache="saved"]').waitFor({ timeout: 60_000 })
}

/** A CPU profile of the page: top functions by self time, and self time by module of the bundle. */
type BrowserProfile = ProfileSummary & { readonly file: string; readonly modules: BundleBreakdown }

/** Lines for the console: a CPU profile's top self time and modules, a trace's main-thread breakdown. */
function profileText(
  label: string,
  profile: BrowserProfile | null,
  trace: TraceSummary | null = null,
): string[] {
  const lines: string[] = []
  if (profile) {
    lines.push(
      `\nBrowser CPU profile, ${label} (self time, % of busy time; idle ${profile.idlePct}%, ${profile.file})`,
    )
    for (const f of profile.top) lines.push(`  ${f.pct.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`)
    const m = profile.modules
    lines.push(
      `  by module, ms (evaluating the bundle ${m.evaluationMs} ms in all, afterwards ${m.runtimeMs} ms; natives count for their caller):`,
    )
    for (const e of m.modules)
      lines.push(`  ${e.evalMs.toFixed(1).padStart(7)} + ${e.runMs.toFixed(1).padStart(7)}  ${e.module}`)
    lines.push('  not in any module: ' + m.unattributed.map((u) => `${u.name} ${u.ms}`).join(', '))
  }
  if (trace) {
    lines.push(
      `\nTrace, ${label}: main thread busy ${trace.mainBusyMs} of ${trace.windowMs} ms (${trace.file}); self time:`,
    )
    for (const e of trace.mainSelf) lines.push(`  ${e.ms.toFixed(1).padStart(7)} ms  ${e.name}`)
    lines.push('  long tasks (ms since navigation start, duration, largest parts):')
    for (const t of trace.longTasks)
      lines.push(`  ${t.at.toFixed(0).padStart(7)}  ${t.ms.toFixed(1).padStart(6)}  ${t.parts}`)
    lines.push('  other threads, busy ms: ' + trace.otherThreads.map((o) => `${o.thread} ${o.ms}`).join(', '))
  }
  return lines
}

/** A CPU profile of the page while `go` runs, written next to the JSON results. */
async function profiled(
  h: DesktopHarness,
  page: Page,
  label: string,
  d: Desktop,
  go: () => Promise<unknown>,
): Promise<BrowserProfile> {
  const cdp = await devtools(page)
  try {
    await profileStart(cdp)
    await go()
    const raw = await profileStop(cdp)
    const file = join(h.outDir, `${h.stamp}-${label}.cpuprofile`)
    await writeFile(file, JSON.stringify(raw))
    return {
      ...topSelfTime(raw, `${d.server.url}/`, 15),
      file,
      modules: bundleBreakdown(raw, d.web.scripts, 20),
    }
  } finally {
    await cdp.detach().catch(() => {})
  }
}

// ---- cold start ----

interface ColdStart {
  readonly times: StartTimes
  /** CPU of all Chromium processes from just before the navigation until the probe was done. */
  readonly browserCpuMs: number
  /** The server, from just before the browser starts until it is closed. */
  readonly window: WindowStats
}

/** As in desktop/test/local-cache.test.ts: API calls never answered, the WebSocket never opened. */
async function holdApi(context: BrowserContext): Promise<void> {
  await context.route(/\/api\/v1\//, () => {})
  await context.routeWebSocket(/\/api\/v1\/ws/, () => {})
}

async function coldStart(
  server: Homeserver,
  profileDir: string,
  held: boolean,
  p: { rooms: number; prefix: string },
): Promise<ColdStart> {
  const window = new Window(server, [], null)
  await window.start()
  const start = await withBrowser(profileDir, async (context) => {
    if (held) await holdApi(context)
    await installStartProbe(context, { ...p, untilOnline: !held })
    const page = await onlyPage(context)
    const cpu0 = browserCpuMs()
    await page.goto(server.url, { waitUntil: 'commit' })
    const times = await startTimes(page, 60_000)
    return { times, browserCpuMs: Math.round(browserCpuMs() - cpu0) }
  })
  await window.end()
  return { ...start, window: window.stats }
}

/**
 * The app started in new tabs of one running browser (API held): the same page work without the
 * browser's own start-up beside it. The first tab is not counted.
 */
async function tabStarts(
  server: Homeserver,
  profileDir: string,
  n: number,
  p: { rooms: number; prefix: string },
): Promise<ColdStart[]> {
  return withBrowser(profileDir, async (context) => {
    await holdApi(context)
    await installStartProbe(context, { ...p, untilOnline: false })
    const starts: ColdStart[] = []
    for (let i = 0; i <= n; i++) {
      const window = new Window(server, [], null)
      await window.start()
      const page = await context.newPage()
      const cpu0 = browserCpuMs()
      await page.goto(server.url, { waitUntil: 'commit' })
      const times = await startTimes(page, 60_000)
      const cpu = Math.round(browserCpuMs() - cpu0)
      await page.close()
      await window.end()
      if (i > 0) starts.push({ times, browserCpuMs: cpu, window: window.stats })
    }
    return starts
  })
}

/** How long the probe watched a start: until the list was complete, or until online when it waited for that. */
const watchedMs = (c: ColdStart) => Math.max(c.times.allRooms ?? 0, c.times.online ?? 0)

/** The server's figures over a series of starts; the load column is the browser's CPU while the probe watched. */
function seriesWindow(starts: readonly ColdStart[]): WindowStats {
  const wall = starts.reduce((s, c) => s + watchedMs(c), 0)
  const cpu = starts.reduce((s, c) => s + c.browserCpuMs, 0)
  return {
    ...combined(starts.map((s) => s.window)),
    loadCpuPct: wall > 0 ? Math.round((cpu * 1000) / wall) / 10 : 0,
  }
}

/** Two more starts (API held): one under the renderer's CPU profiler, one traced (`--profile`). */
async function profileColdStart(
  h: DesktopHarness,
  d: Desktop,
  p: { rooms: number; prefix: string },
): Promise<{ profile: BrowserProfile; trace: TraceSummary }> {
  const { url } = d.server
  const { profileDir } = d
  const heldStart = async (context: BrowserContext) => {
    await holdApi(context)
    await installStartProbe(context, { ...p, untilOnline: false })
    return onlyPage(context)
  }
  const profile = await withBrowser(profileDir, async (context) => {
    const page = await heldStart(context)
    // Same origin first, so the app loads in the renderer the profiler is attached to.
    await page.goto(`${url}/parley-bench-blank.txt`)
    return profiled(h, page, 'desktop-cold-start', d, async () => {
      await page.goto(url, { waitUntil: 'commit' })
      await startTimes(page, 60_000)
    })
  })
  // Tracing covers every process of the browser: no need to be in the app's renderer beforehand.
  const trace = await withBrowser(profileDir, async (context) => {
    const page = await heldStart(context)
    const stop = await traceStart(await devtools(page))
    await page.goto(url, { waitUntil: 'commit' })
    const times = await startTimes(page, 60_000)
    const file = join(h.outDir, `${h.stamp}-desktop-cold-start.trace.json`)
    return summariseTrace(await stop(), times.allRooms ?? 0, file)
  })
  return { profile, trace }
}

export async function desktopColdStart(
  h: DesktopHarness,
  size: typeof DESKTOP_FULL.coldStart,
): Promise<ScenarioReport> {
  const prefix = 'Cold room'
  const { result, logProblems, buildMs } = await withDesktop(h, 'desktop-cold-start', async (d) => {
    const { server, profileDir } = d
    const t0 = performance.now()
    const seeded = await seedRooms(server.url, {
      tag: 'cold',
      prefix,
      rooms: size.rooms,
      messagesPerRoom: size.messagesPerRoom,
    })
    const seedMs = Math.round(performance.now() - t0)
    await withBrowser(profileDir, async (context) =>
      firstSignIn(await onlyPage(context), server.url, seeded, prefix),
    )
    const p = { rooms: seeded.rooms.length, prefix }
    // The profile's first start (compiles and caches the app's code; not counted).
    const first = await coldStart(server, profileDir, true, p)
    // Held and answered starts alternate, so that the box's changing load hits both series alike.
    const held: ColdStart[] = []
    const served: ColdStart[] = []
    for (let i = 0; i < size.starts; i++) {
      held.push(await coldStart(server, profileDir, true, p))
      served.push(await coldStart(server, profileDir, false, p))
    }
    const tabs = await tabStarts(server, profileDir, size.starts, p)
    const { profile, trace } = h.opts.profile
      ? await profileColdStart(h, d, p)
      : { profile: null, trace: null }
    return { seeded, seedMs, first, held, served, tabs, profile, trace }
  })

  const summary = (starts: readonly ColdStart[], pick: (t: StartTimes) => number | null) => {
    const lat = new Latency()
    for (const s of starts) {
      const v = pick(s.times)
      if (v !== null) lat.record(v)
    }
    return lat.count > 0 ? lat.summary() : null
  }
  const median = (starts: readonly ColdStart[], pick: (t: StartTimes) => number | null) =>
    summary(starts, pick)?.p50
  const phases = (starts: readonly ColdStart[]) =>
    `phases p50: html ${ms(median(starts, (t) => t.responseEnd))}, script ${ms(median(starts, (t) => t.scriptEnd))}, ` +
    `DCL ${ms(median(starts, (t) => t.domContentLoaded))}, shell ${ms(median(starts, (t) => t.shell))}, ` +
    `first room ${ms(median(starts, (t) => t.firstRoom))} ms`
  const cpu = (starts: readonly ColdStart[]) =>
    `browser CPU ${fmt(starts.reduce((s, c) => s + c.browserCpuMs, 0) / starts.length)} ms/start (all processes, navigation to done)`
  const { seeded, held, served, tabs } = result
  const heldLat = summary(held, (t) => t.allRooms)
  const tabLat = summary(tabs, (t) => t.allRooms)
  const servedLat = summary(served, (t) => t.allRooms)
  const online = summary(served, (t) => t.online)
  const rooms = seeded.rooms.length
  const rows: Row[] = [
    {
      scenario: `desktop cold start, API held`,
      result: `${rooms}-room list in ${ms(heldLat?.p50)} ms p50, ${ms(heldLat?.p95)} p95 (n=${held.length})`,
      latency: heldLat,
      window: seriesWindow(held),
      cpuPerMsgUs: null,
      notes: [
        phases(held),
        cpu(held),
        `first start of the profile ${ms(result.first.times.allRooms ?? undefined)} ms`,
      ].join('; '),
    },
    {
      scenario: `desktop cold start, server answering`,
      result: `${rooms}-room list in ${ms(servedLat?.p50)} ms p50, ${ms(servedLat?.p95)} p95 (n=${served.length})`,
      latency: servedLat,
      window: seriesWindow(served),
      cpuPerMsgUs: null,
      notes: [`online p50 ${ms(online?.p50)} max ${ms(online?.max)} ms`, phases(served), cpu(served)].join(
        '; ',
      ),
    },
    {
      scenario: `desktop start in a new tab, API held`,
      result: `${rooms}-room list in ${ms(tabLat?.p50)} ms p50, ${ms(tabLat?.p95)} p95 (n=${tabs.length})`,
      latency: tabLat,
      window: seriesWindow(tabs),
      cpuPerMsgUs: null,
      notes: [
        'the browser already running (no browser start-up beside the page)',
        phases(tabs),
        cpu(tabs),
      ].join('; '),
    },
  ]
  const pick = (starts: readonly ColdStart[]) =>
    starts.map((s) => ({ ...s.times, browserCpuMs: s.browserCpuMs }))
  return {
    rows,
    headline: { coldStartHeldP95Ms: heldLat?.p95, coldStartServedP95Ms: servedLat?.p95 },
    profileText: profileText('cold start, API held', result.profile, result.trace),
    data: {
      rooms,
      messagesPerRoom: size.messagesPerRoom,
      seedMs: result.seedMs,
      buildMs,
      method:
        'each start: a new Chromium process on the signed-in profile; ms since navigation start (performance.now()) in the first animation frame whose room list holds every seeded room',
      firstStart: { ...result.first.times, browserCpuMs: result.first.browserCpuMs },
      held: { allRooms: heldLat, starts: pick(held), window: seriesWindow(held) },
      served: { allRooms: servedLat, online, starts: pick(served), window: seriesWindow(served) },
      newTab: { allRooms: tabLat, starts: pick(tabs), window: seriesWindow(tabs) },
      profile: result.profile,
      trace: result.trace,
      logProblems,
    },
  }
}

// ---- heap over room switches ----

interface SwitchRun {
  readonly loaded: HeapFigures
  readonly baseline: HeapFigures
  readonly after: HeapFigures
  readonly peakUsed: number
  readonly firstVisit: LatencySummary
  readonly switches: LatencySummary
  readonly window: WindowStats
  readonly profile: BrowserProfile | null
}

/** Opens each room in turn, `rounds` times; the time of each switch goes to `lat`, heap samples to `sample`. */
async function rounds(
  page: Page,
  seeded: Seeded,
  n: number,
  pauseMs: number,
  lat: Latency,
  sample: () => Promise<void> = async () => {},
): Promise<void> {
  for (let round = 0; round < n; round++) {
    for (const room of seeded.rooms) {
      lat.record(await switchRoom(page, room.name, room.marker, 30_000))
      await sleep(pauseMs)
      await sample()
    }
  }
}

export async function desktopHeap(
  h: DesktopHarness,
  size: typeof DESKTOP_FULL.heap,
): Promise<ScenarioReport> {
  const prefix = 'Heap room'
  const { result, logProblems, buildMs } = await withDesktop(h, 'desktop-heap', async (d) => {
    const { server, profileDir } = d
    const t0 = performance.now()
    const seeded = await seedRooms(server.url, {
      tag: 'heap',
      prefix,
      rooms: size.rooms,
      messagesPerRoom: size.messagesPerRoom,
    })
    const seedMs = Math.round(performance.now() - t0)
    const run = await withBrowser(profileDir, async (context): Promise<SwitchRun> => {
      const page = await onlyPage(context)
      await firstSignIn(page, server.url, seeded, prefix)
      const cdp = await devtools(page)
      const loaded = await liveHeap(cdp)
      // First visit of each room: its cached tail or its history from the server, its code paths.
      const firstVisit = new Latency()
      await rounds(page, seeded, 1, size.pauseMs, firstVisit)
      const baseline = await liveHeap(cdp)
      let peakUsed = baseline.used
      const switches = new Latency()
      const window = new Window(server, browserPids(), null)
      await window.start()
      await rounds(page, seeded, size.rounds, size.pauseMs, switches, async () => {
        peakUsed = Math.max(peakUsed, await heapUsedNow(cdp))
      })
      await window.end()
      const after = await liveHeap(cdp)
      // With --profile: one more round under the renderer's CPU profiler (not in the figures above).
      const profile = h.opts.profile
        ? await profiled(h, page, 'desktop-heap', d, () =>
            rounds(page, seeded, 1, size.pauseMs, new Latency()),
          )
        : null
      await cdp.detach()
      return {
        loaded,
        baseline,
        after,
        peakUsed,
        firstVisit: firstVisit.summary(),
        switches: switches.summary(),
        window: window.stats,
        profile,
      }
    })
    return { seeded, seedMs, run }
  })

  const { run, seeded } = result
  const mb = (bytes: number) => Math.round((bytes / MB) * 100) / 100
  const growth = mb(run.after.used - run.baseline.used)
  const n = run.switches.count
  const rows: Row[] = [
    {
      scenario: 'desktop room switches, heap',
      result: `JS heap ${growth >= 0 ? '+' : ''}${growth.toFixed(2)} MiB over ${n} switches (${mb(run.baseline.used).toFixed(1)} -> ${mb(run.after.used).toFixed(1)} MiB, peak ${mb(run.peakUsed).toFixed(1)})`,
      latency: run.switches,
      window: run.window,
      cpuPerMsgUs: null,
      notes: [
        `${seeded.rooms.length} rooms x ${fmt(seeded.messages / seeded.rooms.length)} msgs`,
        `switch = click -> frame with the room's newest message, ${size.pauseMs} ms pause after each`,
        `first visits p50 ${ms(run.firstVisit.p50)} max ${ms(run.firstVisit.max)} ms`,
        `DOM nodes ${fmt(run.baseline.nodes)} -> ${fmt(run.after.nodes)}, listeners ${fmt(run.baseline.listeners)} -> ${fmt(run.after.listeners)}`,
      ].join('; '),
    },
  ]
  return {
    rows,
    headline: { heapGrowthMiB: growth },
    profileText: profileText(`one round of ${seeded.rooms.length} room switches`, run.profile),
    data: {
      rooms: seeded.rooms.length,
      messagesPerRoom: size.messagesPerRoom,
      rounds: size.rounds,
      pauseMs: size.pauseMs,
      seedMs: result.seedMs,
      buildMs,
      method:
        'heap = Runtime.getHeapUsage usedSize after two HeapProfiler.collectGarbage; baseline after each room was opened once, after = after the rounds; peak = max usedSize sampled (no GC) after each switch',
      heapMiB: {
        signedIn: mb(run.loaded.used),
        baseline: mb(run.baseline.used),
        after: mb(run.after.used),
        peak: mb(run.peakUsed),
        growth,
      },
      loaded: run.loaded,
      baseline: run.baseline,
      after: run.after,
      firstVisit: run.firstVisit,
      switches: run.switches,
      window: run.window,
      profile: run.profile,
      logProblems,
    },
  }
}
