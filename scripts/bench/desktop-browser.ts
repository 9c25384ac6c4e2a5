/**
 * Browser side of the desktop scenarios (desktop.ts), in the orchestrator process: a build of the web
 * client in a temp dir, Debian's Chromium through playwright-core on a persistent profile, the probes
 * that run in the page (when the room list is complete, when a room's messages are on screen) and the
 * page's JS heap over the DevTools protocol. Chromium is a child of the orchestrator and inherits its
 * pinning (core 1; the homeserver has core 0). Same build and browser as desktop/test/support/browser.ts.
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, readdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type BrowserContext, type CDPSession, type Page } from 'playwright-core'
import { build } from 'vite'
import { descendants, totalCpuMs, trackDir } from './procs.ts'

const VITE_CONFIG = fileURLToPath(new URL('../../desktop/vite.config.ts', import.meta.url))
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
/** The flags of the browser tests (desktop/test/support/browser.ts). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** A script of the web build: its path as served, and its text. */
export interface BuiltScript {
  readonly path: string
  readonly source: string
}

/** A build of the web client: its directory and its scripts (the entry and any lazy chunks). */
export interface WebBuild {
  readonly dir: string
  readonly scripts: readonly BuiltScript[]
}

/**
 * The web client built into a fresh temp dir (removed when the bench exits, or by the caller).
 * Unminified with `--profile`, so that CPU profiles name the renderer's functions and modules.
 */
export async function buildWebClient(minify: boolean): Promise<WebBuild> {
  const dir = await mkdtemp(join(tmpdir(), 'parley-bench-web-'))
  trackDir(dir)
  await build({
    configFile: VITE_CONFIG,
    logLevel: 'warn',
    build: { outDir: dir, emptyOutDir: true, minify },
  })
  const files = (await readdir(join(dir, 'assets'))).filter((f) => f.endsWith('.js'))
  const scripts = await Promise.all(
    files.map(async (f) => ({
      path: `/assets/${f}`,
      source: await readFile(join(dir, 'assets', f), 'utf8'),
    })),
  )
  return { dir, scripts }
}

export function chromiumVersion(): string {
  try {
    return execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split('\n')[0]!
  } catch {
    return 'unknown'
  }
}

/** Chromium on the profile in `userDataDir` (created on first use, kept across launches). */
export function launchProfile(userDataDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  })
}

/** CPU time (user + system, ms) of every Chromium process this process started and that still runs. */
export function browserCpuMs(): number {
  return totalCpuMs(browserPids())
}

export function browserPids(): number[] {
  return descendants(process.pid)
    .filter((p) => /^(chrom|headless)/i.test(p.comm))
    .map((p) => p.pid)
}

/** The page's one tab, or a new one. */
export async function onlyPage(context: BrowserContext): Promise<Page> {
  return context.pages()[0] ?? (await context.newPage())
}

/** Signs in through the web client's own form (the server field defaults to the serving origin). */
export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.getByLabel('User name').fill(username)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Sign in', exact: true }).click()
  await page.locator('[data-testid="me"]').waitFor({ timeout: 30_000 })
}

// ---- in the page ----

/** What {@link installStartProbe} records, in ms since navigation start (`performance.now()`). */
export interface StartTimes {
  /** The app's shell (signed-in layout) first in a frame. */
  readonly shell: number | null
  /** The first seeded room in the list, in a frame. */
  readonly firstRoom: number | null
  /** All of them in the list, in a frame: the list is usable. */
  readonly allRooms: number | null
  /** The status says online (connected and caught up). */
  readonly online: number | null
  readonly responseEnd: number | null
  readonly domContentLoaded: number | null
  /** The app's script fetched (from the HTTP cache on a repeat start: hashed assets are immutable). */
  readonly scriptEnd: number | null
}

interface ProbeState {
  shell: number | null
  firstRoom: number | null
  allRooms: number | null
  online: number | null
  /** Resolves when the probe has seen what it waits for (or gave up after two minutes). */
  done: Promise<void>
}

/**
 * Polls every animation frame from the document's start: when the room list holds `rooms` entries
 * whose name starts with `prefix`, and (with `untilOnline`) when the status turns online. A frame's
 * `performance.now()` is since navigation start; the frame that sees the list is the one that paints it.
 */
export async function installStartProbe(
  context: BrowserContext,
  p: { rooms: number; prefix: string; untilOnline: boolean },
): Promise<void> {
  await context.addInitScript((arg: { rooms: number; prefix: string; untilOnline: boolean }) => {
    if (location.pathname !== '/') return
    const times = { shell: null, firstRoom: null, allRooms: null, online: null }
    // No named inner functions in page code: tsx would wrap them in a helper the page does not have.
    const done = (async () => {
      const state: Omit<ProbeState, 'done'> = times
      for (;;) {
        const now: number = await new Promise((resolve) =>
          requestAnimationFrame(() => resolve(performance.now())),
        )
        if (state.shell === null && document.querySelector('.shell')) state.shell = now
        let n = 0
        for (const el of Array.from(document.querySelectorAll('.room-name')))
          if (el.textContent?.startsWith(arg.prefix)) n++
        if (n > 0) state.firstRoom ??= now
        if (n >= arg.rooms) state.allRooms ??= now
        if (state.online === null && document.querySelector('[data-status="online"]')) state.online = now
        if (state.allRooms !== null && (!arg.untilOnline || state.online !== null)) return
        if (now > 120_000) return
      }
    })()
    ;(window as unknown as { __parleyBench: ProbeState }).__parleyBench = Object.assign(times, { done })
  }, p)
}

/** Waits for the probe (all rooms, and online if it was asked to) and returns its times with the page's own timings. */
export async function startTimes(page: Page, timeoutMs: number): Promise<StartTimes> {
  // One evaluation that awaits the probe: polling from here would run code in the page being timed.
  const evaluation = page.evaluate(async () => {
    const probe = (window as unknown as { __parleyBench: ProbeState }).__parleyBench
    await probe.done
    const { done: _, ...s } = probe
    const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming | undefined
    const script = performance.getEntriesByType('resource').find((r) => r.name.endsWith('.js')) as
      PerformanceResourceTiming | undefined
    return {
      ...s,
      responseEnd: nav?.responseEnd ?? null,
      domContentLoaded: nav?.domContentLoadedEventEnd ?? null,
      scriptEnd: script?.responseEnd ?? null,
    }
  })
  evaluation.catch(() => {}) // after a timeout, closing the browser rejects it
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the start took more than ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    return await Promise.race([evaluation, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Clicks the room named `name` in the list and resolves with the ms from the click to the first
 * animation frame in which a message containing `marker` (the room's newest) is in the timeline.
 */
export function switchRoom(page: Page, name: string, marker: string, timeoutMs: number): Promise<number> {
  return page.evaluate(
    async ({ name, marker, timeoutMs }) => {
      const button = Array.from(document.querySelectorAll('nav button')).find(
        (b) => b.querySelector('.room-name')?.textContent?.trim() === name,
      ) as HTMLButtonElement | undefined
      if (!button) throw new Error(`no room button named ${name}`)
      const t0 = performance.now()
      button.click()
      for (;;) {
        const now: number = await new Promise((resolve) =>
          requestAnimationFrame(() => resolve(performance.now())),
        )
        for (const m of Array.from(document.querySelectorAll('[data-testid="message"]')))
          if (m.textContent?.includes(marker)) return now - t0
        if (now - t0 > timeoutMs) throw new Error(`${name}: no message ${marker} after ${timeoutMs} ms`)
      }
    },
    { name, marker, timeoutMs },
  )
}

// ---- DevTools protocol ----

export interface HeapFigures {
  /** V8 heap in use (bytes), `Runtime.getHeapUsage` `usedSize`. */
  readonly used: number
  readonly total: number
  /** DOM nodes and JS event listeners alive (`Performance.getMetrics`). */
  readonly nodes: number
  readonly listeners: number
}

/** The page's heap after two full collections: what stays is live. */
export async function liveHeap(cdp: CDPSession): Promise<HeapFigures> {
  await cdp.send('HeapProfiler.collectGarbage')
  await cdp.send('HeapProfiler.collectGarbage')
  const usage = await cdp.send('Runtime.getHeapUsage')
  const { metrics } = await cdp.send('Performance.getMetrics')
  const metric = (name: string) => metrics.find((m) => m.name === name)?.value ?? NaN
  return {
    used: usage.usedSize,
    total: usage.totalSize,
    nodes: metric('Nodes'),
    listeners: metric('JSEventListeners'),
  }
}

/** V8 heap in use now (bytes), no GC: for the peak between switches. */
export async function heapUsedNow(cdp: CDPSession): Promise<number> {
  return (await cdp.send('Runtime.getHeapUsage')).usedSize
}

/** A DevTools session on `page` with the domains {@link heap} and the profiler need. */
export async function devtools(page: Page): Promise<CDPSession> {
  const cdp = await page.context().newCDPSession(page)
  await cdp.send('Performance.enable')
  return cdp
}

export async function profileStart(cdp: CDPSession, intervalUs = 100): Promise<void> {
  await cdp.send('Profiler.enable')
  await cdp.send('Profiler.setSamplingInterval', { interval: intervalUs })
  await cdp.send('Profiler.start')
}

export async function profileStop(cdp: CDPSession): Promise<unknown> {
  const { profile } = await cdp.send('Profiler.stop')
  await cdp.send('Profiler.disable')
  return profile
}
