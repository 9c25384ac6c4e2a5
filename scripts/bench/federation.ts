/**
 * Federation scenarios of `npm run bench` (orchestrator side; the load runs in federation-load.ts):
 * two homeservers, acme.localhost and globex.localhost, child processes started through the CLI with
 * each other in their static peer maps, fresh temp data dirs per scenario.
 *
 * - `federation-latency`: 1,000 msg/s open loop for a bounded time, timed from the stamped send time
 *   in the body to the receiver's `event`: (1) same server, a room with no remote member (the
 *   baseline); (2) sender on acme, receivers on globex and on acme in the same room; (3) sender on
 *   globex (remote sender: outbox, SUBMIT, owner commit, EVENTS back), receiver on acme.
 * - `federation-throughput`: (1) a burst of N events pipelined by several senders on acme, each into
 *   its own room, with one globex member whose client counts the arrivals: events/s over one link,
 *   the owner's ingest included; (2) catch-up: N more events committed on acme while globex is
 *   stopped, then globex starts again and its rooms' newest seq is polled until it has them all: what
 *   the link and the replica carry when the owner's ingest is out of the way.
 *
 * Pinning (2 vCPUs): acme on core 0, globex on core 1 with the load workers and the orchestrator.
 * A real deployment has the two servers on two machines; here globex shares its core with the load.
 */
import { mkdir, mkdtemp } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FedBurstResult, FedCatchupResult, FedFixture, FedOpenLoopResult } from './federation-load.ts'
import type { LoadMethods } from './load.ts'
import { removeDir, trackDir } from './procs.ts'
import { cpuPerUnitUs, fmt, ms, problemNotes, type Row, type ScenarioReport } from './report.ts'
import type { LoadWorker, Params, Result } from './rpc.ts'
import { Homeserver, type SyncMode } from './server.ts'
import { Window, type WindowStats } from './window.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
const ACME_CORE = 0
const GLOBEX_CORE = 1

export const FEDERATION_SCENARIOS = ['federation-latency', 'federation-throughput'] as const

export const FEDERATION_FULL = {
  latency: { rate: 1000, warmupMs: 1000, durationMs: 5000 },
  throughput: { total: 50_000, senders: 4, inFlight: 100 },
}
export const FEDERATION_QUICK: typeof FEDERATION_FULL = {
  latency: { rate: 1000, warmupMs: 300, durationMs: 1500 },
  throughput: { total: 10_000, senders: 4, inFlight: 100 },
}

/** What the scenarios need of the bench harness (index.ts's `Bench`). */
export interface Harness {
  readonly opts: { readonly sync: SyncMode; readonly profile: boolean }
  readonly outDir: string
  readonly stamp: string
  readonly workers: readonly LoadWorker[]
  worker(i: number): LoadWorker
  call<M extends keyof LoadMethods>(
    method: M,
    params: Params<M>,
    timeoutMs: number,
    w?: number,
  ): Promise<Result<M>>
}

/** The two running servers; globex can be stopped and started again on its data (catch-up). */
interface Pair {
  readonly acme: Homeserver
  readonly globex: Homeserver
  stopGlobex(): Promise<void>
  startGlobex(): Promise<Homeserver>
}

/** Redial a lost link quickly (default: 1 s doubling to 15 min), so a restarted replica is found at once. */
const FAST_REDIAL = { backoffBaseMs: 50, backoffCapMs: 500 }

/** A port nobody listens on now: each server is told the other's URL when it starts. */
async function freePort(): Promise<number> {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const address = probe.address()
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no free port')
  return address.port
}

/** Two fresh federated servers around `run`; stopped and their data removed afterwards. */
async function withFederation<R>(
  h: Harness,
  name: string,
  run: (pair: Pair) => Promise<R>,
): Promise<{ result: R; logProblems: Record<string, number> }> {
  const root = await mkdtemp(join(tmpdir(), `parley-bench-${name}-`))
  trackDir(root)
  const running = new Map<string, Homeserver>()
  const problems: Record<string, number> = { [ACME]: 0, [GLOBEX]: 0 }
  const stop = async (server: string) => {
    const s = running.get(server)
    running.delete(server)
    if (!s) return
    problems[server]! += s.logProblems
    await s.stop()
  }
  try {
    const ports: Record<string, number> = { [ACME]: await freePort(), [GLOBEX]: await freePort() }
    const url = (server: string) => `http://127.0.0.1:${ports[server]}`
    const start = async (server: string, other: string, core: number) => {
      await mkdir(join(root, server), { recursive: true })
      const s = await Homeserver.start({
        dataDir: join(root, server),
        sync: h.opts.sync,
        core,
        inspect: true,
        serverName: server,
        port: ports[server],
        peers: { [other]: url(other) },
        federation: FAST_REDIAL,
      })
      running.set(server, s)
      return s
    }
    await Promise.all([start(ACME, GLOBEX, ACME_CORE), start(GLOBEX, ACME, GLOBEX_CORE)])
    const get = (server: string) => {
      const s = running.get(server)
      if (!s) throw new Error(`${server} is not running`)
      return s
    }
    const pair: Pair = {
      get acme() {
        return get(ACME)
      },
      get globex() {
        return get(GLOBEX)
      },
      stopGlobex: () => stop(GLOBEX),
      startGlobex: () => start(GLOBEX, ACME, GLOBEX_CORE),
    }
    try {
      const result = await run(pair)
      for (const [server, s] of running) problems[server]! += s.logProblems
      return { result, logProblems: problems }
    } catch (err) {
      const out = [...running].map(([server, s]) => `--- ${server} output ---\n${s.output()}`).join('\n')
      throw new Error(`${(err as Error).message}\n${out}`, { cause: err })
    }
  } finally {
    for (const w of h.workers) w.onMark = async () => {}
    await Promise.all([...running.keys()].map(stop))
    removeDir(root)
  }
}

interface Measured<T> {
  readonly value: T
  readonly acme: WindowStats
  readonly globex: WindowStats
}

/** Runs `fn` (one worker call that marks its window), measuring both servers over that window. */
async function measured<T>(
  h: Harness,
  pair: Pair,
  label: string,
  fn: () => Promise<T>,
): Promise<Measured<T>> {
  h.worker(0)
  const pids = h.workers.map((w) => w.pid)
  const profile = (server: string) =>
    h.opts.profile ? { dir: h.outDir, label: `${h.stamp}-${label}-${server}`, root: ROOT } : null
  const acme = new Window(pair.acme, pids, profile('acme'))
  const globex = new Window(pair.globex, pids, profile('globex'))
  for (const w of h.workers) {
    w.onMark = async (name) => {
      await Promise.all(name === 'start' ? [acme.start(), globex.start()] : [acme.end(), globex.end()])
    }
  }
  const value = await fn()
  return { value, acme: acme.stats, globex: globex.stats }
}

/** The other server's figures, for the notes column. */
function otherServer(name: string, w: WindowStats): string {
  const eld = w.eventLoopDelayMs ? `, ELD p99 ${ms(w.eventLoopDelayMs.p99)}` : ''
  return `${name} CPU ${w.serverCpuPct}% (sys ${Math.round(w.serverSysPct)})${eld}`
}

// ---- federation-latency ----

export async function federationLatency(
  h: Harness,
  size: typeof FEDERATION_FULL.latency,
): Promise<ScenarioReport> {
  const timeout = size.warmupMs + size.durationMs + 120_000
  const { result, logProblems } = await withFederation(h, 'federation-latency', async (pair) => {
    const fixture: FedFixture = await h.call(
      'setupFederation',
      {
        users: { a0: pair.acme.url, a1: pair.acme.url, g0: pair.globex.url },
        rooms: {
          local: { owner: 'a0', members: ['a1'] },
          shared: { owner: 'a0', members: ['a1', 'g0'] },
        },
      },
      180_000,
    )
    const u = fixture.users
    const run = (label: string, room: string, sender: string, receivers: Record<string, string>) =>
      measured(h, pair, label, () =>
        h.call(
          'runFedOpenLoop',
          {
            room,
            sender: u[sender]!,
            receivers: Object.fromEntries(Object.entries(receivers).map(([k, v]) => [k, u[v]!])),
            ...size,
          },
          timeout,
        ),
      )
    const same = await run('fed-same-server', fixture.rooms.local!, 'a0', { acme: 'a1' })
    const cross = await run('fed-acme-to-globex', fixture.rooms.shared!, 'a0', { globex: 'g0', acme: 'a1' })
    const remote = await run('fed-globex-to-acme', fixture.rooms.shared!, 'g0', { acme: 'a1' })
    return { same, cross, remote }
  })
  const { same, cross, remote } = result
  const lat = (m: Measured<FedOpenLoopResult>, label: string) => m.value.receive[label]!.latency
  const undelivered = (m: Measured<FedOpenLoopResult>) =>
    Object.values(m.value.receive).reduce((n, r) => n + r.undelivered, 0)
  const notesOf = (m: Measured<FedOpenLoopResult>, extra: string[]) => {
    const notes = problemNotes({ ...m.value, undelivered: undelivered(m) })
    if (m.value.unstamped) notes.push(`${m.value.unstamped} unstamped`)
    notes.push(...extra, `ack p50 ${ms(m.value.ack.p50)} p99 ${ms(m.value.ack.p99)}`)
    notes.push(`max send lag ${ms(m.value.maxSendLagMs)}`, otherServer('globex', m.globex))
    return notes.join('; ')
  }
  const sameP50 = lat(same, 'acme').p50
  const crossP50 = lat(cross, 'globex').p50
  const ratio = crossP50 / sameP50
  const what = `${fmt(size.rate)}/s x ${(size.durationMs / 1000).toFixed(1)} s`
  const row = (scenario: string, m: Measured<FedOpenLoopResult>, label: string, extra: string[]): Row => ({
    scenario,
    result: what,
    latency: lat(m, label),
    window: m.acme,
    cpuPerMsgUs: cpuPerUnitUs(m.acme, m.acme.wallMs, m.value.sent),
    notes: notesOf(m, extra),
  })
  return {
    rows: [
      row('fed: same server (local room)', same, 'acme', ['baseline: sender and receiver on acme']),
      row('fed: acme -> globex', cross, 'globex', [
        `cross/same p50 ${ratio.toFixed(2)}x`,
        `same room, receiver on acme: p50 ${ms(lat(cross, 'acme').p50)} p99 ${ms(lat(cross, 'acme').p99)}`,
      ]),
      row('fed: globex -> acme (remote sender)', remote, 'acme', ['ack = sent after the owner committed']),
    ],
    headline: { crossServerP50Ms: crossP50, sameServerP50Ms: sameP50 },
    data: {
      sameServer: { ...same.value, windows: { acme: same.acme, globex: same.globex } },
      acmeToGlobex: { ...cross.value, windows: { acme: cross.acme, globex: cross.globex } },
      globexToAcme: { ...remote.value, windows: { acme: remote.acme, globex: remote.globex } },
      crossOverSameP50: Math.round(ratio * 100) / 100,
      logProblems,
    },
  }
}

// ---- federation-throughput ----

export async function federationThroughput(
  h: Harness,
  size: typeof FEDERATION_FULL.throughput,
): Promise<ScenarioReport> {
  const { result, logProblems } = await withFederation(h, 'federation-throughput', async (pair) => {
    const senderNames = Array.from({ length: size.senders }, (_, i) => `s${i}`)
    const users: Record<string, string> = { g0: pair.globex.url }
    const rooms: Record<string, { owner: string; members: string[] }> = {}
    for (const s of senderNames) {
      users[s] = pair.acme.url
      rooms[s] = { owner: s, members: ['g0'] }
    }
    const fixture: FedFixture = await h.call('setupFederation', { users, rooms }, 180_000)
    const senders = senderNames.map((s) => ({ user: fixture.users[s]!, room: fixture.rooms[s]! }))
    // (1) Live: the burst goes through the owner's ingest and the link at once.
    const live = await measured(h, pair, 'fed-burst', () =>
      h.call(
        'runFedBurst',
        {
          senders,
          receiver: fixture.users.g0!,
          total: size.total,
          inFlight: size.inFlight,
          timeoutMs: 300_000,
        },
        420_000,
      ),
    )
    // (2) Catch-up: the same number of events committed on acme while globex is down, then globex
    // starts again and the link carries the backlog (the owner's ingest is out of the way).
    await pair.stopGlobex()
    const fill = await h.call('runFedFill', { senders, total: size.total, inFlight: size.inFlight }, 420_000)
    await pair.startGlobex()
    const catchup = await measured(h, pair, 'fed-catchup', () =>
      h.call(
        'runFedCatchup',
        { user: fixture.users.g0!, from: fill.before, target: fill.after, timeoutMs: 300_000 },
        420_000,
      ),
    )
    return { live, fill, catchup }
  })
  const { live, fill, catchup } = result
  const r: FedBurstResult = live.value
  const notes = problemNotes({ ...r, unacked: r.total - r.acked, undelivered: r.total - r.received })
  if (r.timedOut) notes.push('timed out')
  notes.push(
    `${r.senders} senders x ${r.inFlight} in flight`,
    `owner acked ${fmt(r.ackedPerS)}/s`,
    `10-90% of arrivals at ${fmt(r.steadyPerS)}/s`,
    `last arrival ${fmt(r.lastReceiveMs - r.lastAckMs)} ms after the last ack`,
    `ack p50 ${ms(r.ack.p50)} p99 ${ms(r.ack.p99)}`,
    otherServer('globex', live.globex),
  )
  const c: FedCatchupResult = catchup.value
  const catchupNotes = [
    `${fmt(c.expected)} events committed while globex was down (${fmt((fill.acked * 1000) / fill.ms)}/s)`,
    `first event ${fmt(c.firstProgressMs)} ms after start, all ${fmt(c.doneMs)} ms`,
    `10-90% at ${fmt(c.steadyPerS)}/s`,
    otherServer('globex', catchup.globex),
  ]
  if (c.timedOut) catchupNotes.unshift(`timed out at ${fmt(c.applied)} of ${fmt(c.expected)}`)
  return {
    rows: [
      {
        scenario: `fed: one link, ${fmt(r.total)}-event burst`,
        result: `${fmt(r.endToEndPerS)} events/s at globex`,
        latency: r.delivery,
        window: live.acme,
        cpuPerMsgUs: cpuPerUnitUs(live.acme, live.acme.wallMs, r.acked),
        notes: notes.join('; '),
      },
      {
        scenario: `fed: one link, catch-up of ${fmt(c.expected)}`,
        result: `${fmt(c.perS)} events/s at globex`,
        latency: null,
        window: catchup.acme,
        cpuPerMsgUs: cpuPerUnitUs(catchup.acme, catchup.acme.wallMs, c.applied),
        notes: catchupNotes.join('; '),
      },
    ],
    headline: { linkEventsPerS: r.endToEndPerS },
    data: {
      burst: {
        ...r,
        windows: { acme: live.acme, globex: live.globex },
        globexCpuPerEventUs: cpuPerUnitUs(live.globex, live.globex.wallMs, r.received),
      },
      fill,
      catchup: {
        ...c,
        windows: { acme: catchup.acme, globex: catchup.globex },
        globexCpuPerEventUs: cpuPerUnitUs(catchup.globex, catchup.globex.wallMs, c.applied),
      },
      logProblems,
    },
  }
}
