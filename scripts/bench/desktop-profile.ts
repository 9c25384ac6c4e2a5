/**
 * What the desktop scenarios' profiles say (desktop.ts, with `--profile`; orchestrator side).
 *
 * - A CPU profile of the page over the app's (unminified) bundle: self time by the module the code
 *   came from (the bundle marks each module's start with a `// path` comment), split into evaluating
 *   the bundle (its top-level code and what that calls) and running afterwards; a native call counts
 *   for the module that made it.
 * - A Chromium trace of one cold start: where the page's main thread spent the time from navigation
 *   start to the complete room list (self time by trace event), its long tasks in order, and how busy
 *   Chromium's other threads were meanwhile (they share one core here).
 */
import { writeFile } from 'node:fs/promises'
import type { CDPSession } from 'playwright-core'

interface TraceEvent {
  readonly name: string
  readonly cat?: string
  readonly ph: string
  readonly pid: number
  readonly tid: number
  /** Microseconds. */
  readonly ts: number
  readonly dur?: number
  readonly args?: Record<string, unknown>
}

const CATEGORIES = [
  'toplevel',
  'devtools.timeline',
  'disabled-by-default-devtools.timeline',
  'v8',
  'v8.execute',
  'blink',
  'loading',
  'navigation',
]

/** Starts a trace of the whole browser (every process: the app's renderer may not exist yet). */
export async function traceStart(cdp: CDPSession): Promise<() => Promise<TraceEvent[]>> {
  const events: TraceEvent[] = []
  cdp.on('Tracing.dataCollected', (e) => events.push(...(e.value as unknown as TraceEvent[])))
  const complete = new Promise<void>((resolve) => cdp.once('Tracing.tracingComplete', () => resolve()))
  await cdp.send('Tracing.start', {
    transferMode: 'ReportEvents',
    traceConfig: { recordMode: 'recordAsMuchAsPossible', includedCategories: CATEGORIES },
  })
  return async () => {
    await cdp.send('Tracing.end')
    await complete
    return events
  }
}

export interface TraceSummary {
  readonly file: string
  /** Main thread of the app's renderer, navigation start to the complete list. */
  readonly windowMs: number
  readonly mainBusyMs: number
  /** Self time by event name, largest first. */
  readonly mainSelf: ReadonlyArray<{ name: string; ms: number }>
  /** Top-level tasks of 10 ms or more: start (ms since navigation start), duration, largest parts. */
  readonly longTasks: ReadonlyArray<{ at: number; ms: number; parts: string }>
  /** Busy time of every other thread of the browser in the window, by thread name, largest first. */
  readonly otherThreads: ReadonlyArray<{ thread: string; ms: number }>
}

const round1 = (us: number) => Math.round(us / 100) / 10

/** Top-level complete events of one thread, each with its children's self time by name. */
function tasksOf(
  events: readonly TraceEvent[],
): Array<{ ts: number; dur: number; self: Map<string, number> }> {
  const sorted = events
    .filter((e) => e.ph === 'X' && e.dur !== undefined)
    .sort((a, b) => a.ts - b.ts || b.dur! - a.dur!)
  const tasks: Array<{ ts: number; dur: number; self: Map<string, number> }> = []
  const stack: Array<{ e: TraceEvent; childUs: number }> = []
  let task: (typeof tasks)[number] | null = null
  const close = (until: number) => {
    while (stack.length > 0 && stack.at(-1)!.e.ts + stack.at(-1)!.e.dur! <= until) {
      const { e, childUs } = stack.pop()!
      task!.self.set(e.name, (task!.self.get(e.name) ?? 0) + Math.max(0, e.dur! - childUs))
      if (stack.length > 0) stack.at(-1)!.childUs += e.dur!
    }
  }
  for (const e of sorted) {
    close(e.ts)
    if (stack.length === 0) {
      task = { ts: e.ts, dur: e.dur!, self: new Map() }
      tasks.push(task)
    }
    stack.push({ e, childUs: 0 })
  }
  close(Infinity)
  return tasks
}

/**
 * Summarises `events` from the app's navigation start over `windowMs`, for the renderer main thread
 * that compiled the app's script and for every other thread; writes the raw trace to `file` (open in Chrome DevTools' Performance panel).
 */
export async function summariseTrace(
  events: readonly TraceEvent[],
  windowMs: number,
  file: string,
): Promise<TraceSummary> {
  await writeFile(file, JSON.stringify({ traceEvents: events }))
  const threadNames = new Map<string, string>()
  for (const e of events)
    if (e.ph === 'M' && e.name === 'thread_name') threadNames.set(`${e.pid}:${e.tid}`, String(e.args?.name))
  const script = events.find(
    (e) =>
      e.name === 'v8.compileModule' &&
      /\/assets\/index-[^/]*\.js/.test(String((e.args?.data as { url?: string } | undefined)?.url)),
  )
  if (!script) throw new Error("trace: no compilation of the app's script")
  const main = `${script.pid}:${script.tid}`
  const navigation = events
    .filter((e) => e.name === 'NavigationTiming navigationStart' && e.ts <= script.ts)
    .at(-1)
  if (!navigation) throw new Error('trace: no navigationStart')
  const from = navigation.ts
  const to = from + windowMs * 1000
  const inWindow = events.filter((e) => e.ts >= from && e.ts < to)
  const byThread = new Map<string, TraceEvent[]>()
  for (const e of inWindow) {
    const key = `${e.pid}:${e.tid}`
    const list = byThread.get(key)
    if (list) list.push(e)
    else byThread.set(key, [e])
  }
  const mainTasks = tasksOf(byThread.get(main) ?? [])
  const self = new Map<string, number>()
  for (const t of mainTasks) for (const [name, us] of t.self) self.set(name, (self.get(name) ?? 0) + us)
  const others = new Map<string, number>()
  for (const [key, list] of byThread) {
    if (key === main) continue
    const name = (threadNames.get(key) ?? 'unnamed').replace(/\d+$/, '')
    const busy = tasksOf(list).reduce((s, t) => s + t.dur, 0)
    others.set(name, (others.get(name) ?? 0) + busy)
  }
  return {
    file,
    windowMs: Math.round(windowMs),
    mainBusyMs: round1(mainTasks.reduce((s, t) => s + t.dur, 0)),
    mainSelf: [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([name, us]) => ({ name, ms: round1(us) })),
    longTasks: mainTasks
      .filter((t) => t.dur >= 10_000)
      .map((t) => ({
        at: round1(t.ts - from),
        ms: round1(t.dur),
        parts: [...t.self]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([name, us]) => `${name} ${round1(us)}`)
          .join(', '),
      })),
    otherThreads: [...others]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([thread, us]) => ({ thread, ms: round1(us) })),
  }
}

// ---- CPU profile over the bundle ----

interface ProfileNode {
  readonly id: number
  readonly callFrame: { functionName: string; url: string; lineNumber: number }
  readonly children?: number[]
  readonly positionTicks?: Array<{ line: number; ticks: number }>
}

export interface BundleBreakdown {
  /** Sampled time with a script's top-level code on the stack (evaluating the bundle), and the rest but idle. */
  readonly evaluationMs: number
  readonly runtimeMs: number
  /** Self time by package (node_modules) or file (ours), evaluation and runtime, largest first. */
  readonly modules: ReadonlyArray<{ module: string; evalMs: number; runMs: number }>
  /** Time no module can be charged with: (program) is the browser's own work on the thread, GC, ... */
  readonly unattributed: ReadonlyArray<{ name: string; ms: number }>
}

/** `../../work/main/node_modules/zod/v4/core/api.js` -> `zod`; our files keep their path from the repository. */
function moduleName(path: string): string {
  const nm = path.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const parts = path.slice(nm + 'node_modules/'.length).split('/')
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!
  }
  const ours = /(?:^|\/)((?:desktop|protocol|homeserver)\/.*)$/.exec(path)
  return ours ? ours[1]! : path.replace(/^(\.\.\/)+/, '')
}

/** Line (1-based) -> module, from the `// path` comment at the start of each module of an unminified bundle. */
function regions(source: string): (line: number) => string {
  const starts: Array<{ line: number; module: string }> = []
  const lines = source.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^\/\/ (\S+\.(?:[cm]?js|ts|svelte))$/.exec(lines[i]!)
    if (m) starts.push({ line: i + 1, module: moduleName(m[1]!) })
  }
  return (line) => {
    let lo = 0
    let hi = starts.length - 1
    let found = '(bundle preamble)'
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (starts[mid]!.line <= line) {
        found = starts[mid]!.module
        lo = mid + 1
      } else hi = mid - 1
    }
    return found
  }
}

/** Self time of `profile` by module of the bundle's `scripts` (paths as served: a frame's URL ends with one). */
export function bundleBreakdown(
  profile: unknown,
  scripts: ReadonlyArray<{ readonly path: string; readonly source: string }>,
  n = 15,
): BundleBreakdown {
  const p = profile as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }
  const byId = new Map(p.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of p.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const regionsOf = new Map(scripts.map((s) => [s.path, regions(s.source)]))
  const scriptOf = (node: ProfileNode) => {
    const url = node.callFrame.url
    return url === '' ? undefined : scripts.find((s) => url.endsWith(s.path))?.path
  }
  const inBundle = (node: ProfileNode) => scriptOf(node) !== undefined
  const isTopLevel = (node: ProfileNode) =>
    inBundle(node) && node.callFrame.functionName === '' && node.callFrame.lineNumber === 0
  // Self time per node: a sample stands for the time until the next one.
  const selfUs = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + us)
  }
  const modules = new Map<string, { evalUs: number; runUs: number }>()
  const unattributed = new Map<string, number>()
  let evalUs = 0
  let runUs = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    if (!node || node.callFrame.functionName === '(idle)') continue
    // Evaluation if the bundle's top-level frame is on the stack.
    let evaluating = false
    let owner: ProfileNode | undefined
    for (let at: ProfileNode | undefined = node; at; at = byId.get(parent.get(at.id) ?? -1)) {
      if (!owner && inBundle(at)) owner = at
      if (isTopLevel(at)) evaluating = true
    }
    if (evaluating) evalUs += us
    else runUs += us
    if (!owner) {
      const name = node.callFrame.functionName || '(anonymous)'
      unattributed.set(name, (unattributed.get(name) ?? 0) + us)
      continue
    }
    // The owner's lines: its own ticks when the sample is in it, else the line where its function starts.
    const ticks =
      owner === node && node.positionTicks?.length
        ? node.positionTicks
        : [{ line: owner.callFrame.lineNumber + 1, ticks: 1 }]
    const total = ticks.reduce((sum, t) => sum + t.ticks, 0)
    const moduleOf = regionsOf.get(scriptOf(owner)!)!
    for (const t of ticks) {
      const share = (us * t.ticks) / total
      const module = moduleOf(t.line)
      const entry = modules.get(module) ?? { evalUs: 0, runUs: 0 }
      if (evaluating) entry.evalUs += share
      else entry.runUs += share
      modules.set(module, entry)
    }
  }
  return {
    evaluationMs: round1(evalUs),
    runtimeMs: round1(runUs),
    modules: [...modules]
      .sort((a, b) => b[1].evalUs + b[1].runUs - (a[1].evalUs + a[1].runUs))
      .slice(0, n)
      .map(([module, t]) => ({ module, evalMs: round1(t.evalUs), runMs: round1(t.runUs) })),
    unattributed: [...unattributed]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([name, us]) => ({ name, ms: round1(us) })),
  }
}
