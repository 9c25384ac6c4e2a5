/**
 * The load generator's methods (run in a load worker process, called by the orchestrator through
 * rpc.ts). Set-up methods register users and build rooms; `run*` methods open their sockets, drive
 * one scenario, `mark` the measured window and return what the clients saw.
 *
 * Message numbers are unique within the worker: the number is the `txn_id` and the first digits of the
 * body, and indexes the send (or scheduled) time, so every delivery is timed against its own send.
 */
import {
  connectLive,
  pool,
  registerMany,
  roomWith,
  sourceAddress,
  TimeTable,
  type Account,
  type BenchSocket,
} from './client.ts'
import { federationMethods } from './federation-load.ts'
import { mark } from './rpc.ts'
import { Latency, mergeCounts, type Counts, type LatencySummary } from './stats.ts'

export interface Pair {
  readonly sender: Account
  readonly receiver: Account
  readonly room: string
}

export interface RoomFixture {
  readonly owner: Account
  readonly members: readonly Account[]
  readonly room: string
}

/** Problems the clients saw: error frames by errcode, unexpected closes by close code. */
export interface Problems {
  readonly errors: Counts
  readonly closes: Counts
}

let nextMsg = 0
const sendTimes = new TimeTable()

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

function problems(socks: readonly BenchSocket[]): Problems {
  return {
    errors: mergeCounts(...socks.map((s) => s.errors)),
    closes: mergeCounts(...socks.map((s) => s.closes)),
  }
}

/** Polls `done` every 5 ms; false once `timeoutMs` passed. */
async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (!done()) {
    if (performance.now() > deadline) return false
    await sleep(5)
  }
  return true
}

async function connectAll(url: string, tokens: readonly string[], offset = 0): Promise<BenchSocket[]> {
  return pool(tokens, 50, (token, i) => connectLive(url, token, sourceAddress(offset + i)))
}

function closeAll(socks: readonly BenchSocket[]): void {
  for (const s of socks) s.close()
}

// ---- set-up ----

async function setupPairs(p: { url: string; pairs: number }): Promise<Pair[]> {
  const users = await registerMany(p.url, 'pair', p.pairs * 2)
  return pool(
    Array.from({ length: p.pairs }, (_, i) => i),
    4,
    async (i) => {
      const sender = users[2 * i]!
      const receiver = users[2 * i + 1]!
      return { sender, receiver, room: await roomWith(p.url, sender, [receiver]) }
    },
  )
}

async function setupRoom(p: { url: string; members: number }): Promise<RoomFixture> {
  const [owner, ...members] = await registerMany(p.url, 'member', p.members)
  return { owner: owner!, members, room: await roomWith(p.url, owner!, members) }
}

async function setupUsers(p: { url: string; count: number }): Promise<string[]> {
  return (await registerMany(p.url, 'idle', p.count)).map((a) => a.access_token)
}

// ---- (1) closed-loop latency ----

export interface LatencyResult extends Problems {
  readonly n: number
  /** Stopped at the time cap before `count` messages. */
  readonly truncated: boolean
  readonly elapsedMs: number
  /** Send written -> receiver got the `event` frame. */
  readonly receive: LatencySummary
  /** Send written -> sender got `sent` (after commit). */
  readonly ack: LatencySummary
}

async function runLatency(p: {
  url: string
  pair: Pair
  warmup: number
  count: number
  maxMs: number
}): Promise<LatencyResult> {
  const a = await connectLive(p.url, p.pair.sender.access_token, sourceAddress(0))
  const b = await connectLive(p.url, p.pair.receiver.access_token, sourceAddress(1))
  try {
    const room = JSON.stringify(p.pair.room)
    const receive = new Latency()
    const ack = new Latency()
    let measuring = false
    let current = -1
    let t0 = 0
    let gotEvent = false
    let gotAck = false
    let settle: (() => void) | null = null
    b.onEvent = (msg, now) => {
      if (msg !== current || gotEvent) return
      gotEvent = true
      if (measuring) receive.record(now - t0)
      if (gotAck) settle?.()
    }
    a.onAck = (msg, now) => {
      if (msg !== current || gotAck) return
      gotAck = true
      if (measuring) ack.record(now - t0)
      if (gotEvent) settle?.()
    }
    // One message in flight: the next goes out only once the last was both delivered and acked.
    const one = () =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`latency: message ${current} not delivered and acked within 15 s`)),
          15_000,
        )
        settle = () => {
          clearTimeout(timer)
          resolve()
        }
        current = nextMsg++
        gotEvent = gotAck = false
        t0 = performance.now()
        a.sendMessage(room, current)
      })
    for (let i = 0; i < p.warmup; i++) await one()
    await mark('start')
    measuring = true
    const started = performance.now()
    let n = 0
    while (n < p.count && performance.now() - started < p.maxMs) {
      await one()
      n++
    }
    const elapsedMs = performance.now() - started
    await mark('end')
    return {
      n,
      truncated: n < p.count,
      elapsedMs,
      receive: receive.summary(),
      ack: ack.summary(),
      ...problems([a, b]),
    }
  } finally {
    closeAll([a, b])
  }
}

// ---- (2) open-loop latency ----

export interface OpenLoopResult extends Problems {
  readonly rate: number
  readonly sent: number
  readonly measured: number
  /** Messages not delivered or not acked after the drain timeout. */
  readonly undelivered: number
  readonly unacked: number
  /** Latest any send left after its scheduled time (the generator's own lag), ms. */
  readonly maxSendLagMs: number
  /** From the scheduled send time (coordinated-omission safe). */
  readonly receive: LatencySummary
  readonly ack: LatencySummary
}

async function runOpenLoop(p: {
  url: string
  pair: Pair
  rate: number
  warmupMs: number
  durationMs: number
}): Promise<OpenLoopResult> {
  const a = await connectLive(p.url, p.pair.sender.access_token, sourceAddress(0))
  const b = await connectLive(p.url, p.pair.receiver.access_token, sourceAddress(1))
  try {
    const room = JSON.stringify(p.pair.room)
    const interval = 1000 / p.rate
    const total = Math.round((p.rate * (p.warmupMs + p.durationMs)) / 1000)
    const warm = Math.round((p.rate * p.warmupMs) / 1000)
    const base = nextMsg
    nextMsg += total
    const firstMeasured = base + warm
    const receive = new Latency()
    const ack = new Latency()
    let delivered = 0
    let acked = 0
    b.onEvent = (msg, now) => {
      if (msg < base || msg >= base + total) return
      delivered++
      if (msg >= firstMeasured) receive.record(now - sendTimes.get(msg))
    }
    a.onAck = (msg, now) => {
      if (msg < base || msg >= base + total) return
      acked++
      if (msg >= firstMeasured) ack.record(now - sendTimes.get(msg))
    }
    await mark('start')
    let maxLag = 0
    await new Promise<void>((resolve) => {
      const begin = performance.now() + 1
      let i = 0
      const tick = () => {
        const now = performance.now()
        for (; i < total; i++) {
          const due = begin + i * interval
          if (due > now) break
          maxLag = Math.max(maxLag, now - due)
          sendTimes.set(base + i, due)
          a.sendMessage(room, base + i)
        }
        if (i >= total) return resolve()
        // Timers are ~1 ms coarse: sleep only when the next send is far, else spin through I/O.
        const wait = begin + i * interval - performance.now()
        if (wait > 2) setTimeout(tick, wait - 1.5)
        else setImmediate(tick)
      }
      tick()
    })
    await until(() => delivered >= total && acked >= total, 15_000)
    await mark('end')
    return {
      rate: p.rate,
      sent: total,
      measured: total - warm,
      undelivered: total - delivered,
      unacked: total - acked,
      maxSendLagMs: Math.round(maxLag * 1000) / 1000,
      receive: receive.summary(),
      ack: ack.summary(),
      ...problems([a, b]),
    }
  } finally {
    closeAll([a, b])
  }
}

// ---- (3) durable throughput and (4) fan-out: a window of pipelined sends ----

export interface PipelineResult extends Problems {
  readonly senders: number
  readonly inFlight: number
  readonly recipients: number
  readonly windowMs: number
  /** Messages acked (committed) in the window. */
  readonly acked: number
  /** `event` frames received by all recipients in the window. */
  readonly deliveries: number
  /** Whole run, after the drain. */
  readonly sent: number
  readonly unacked: number
  readonly undelivered: number
  readonly ack: LatencySummary
  readonly delivery: LatencySummary
}

interface Pipeline {
  readonly room: string
  readonly sender: BenchSocket
  readonly recipients: readonly BenchSocket[]
}

/**
 * Each sender keeps `inFlight` sends outstanding (a new one on every `sent`). After `warmupMs`, acks
 * and deliveries are counted for `durationMs`; then sending stops and everything is drained.
 */
async function pipelined(
  pipes: readonly Pipeline[],
  inFlight: number,
  warmupMs: number,
  durationMs: number,
): Promise<Omit<PipelineResult, 'errors' | 'closes'>> {
  const ack = new Latency()
  const delivery = new Latency()
  let windowStart = Infinity
  let windowEnd = Infinity
  let running = true
  let sent = 0
  let acked = 0
  let windowAcks = 0
  let delivered = 0
  let windowDeliveries = 0
  const base = nextMsg
  const recipients = new Set<BenchSocket>()
  for (const pipe of pipes) {
    const room = JSON.stringify(pipe.room)
    const sendOne = () => {
      const msg = nextMsg++
      sendTimes.set(msg, performance.now())
      pipe.sender.sendMessage(room, msg)
      sent++
    }
    pipe.sender.onAck = (msg, now) => {
      if (msg < base) return
      acked++
      if (now >= windowStart && now < windowEnd) {
        windowAcks++
        ack.record(now - sendTimes.get(msg))
      }
      if (running) sendOne()
    }
    for (const r of pipe.recipients) {
      recipients.add(r)
      r.onEvent = (msg, now) => {
        if (msg < base) return
        delivered++
        if (now >= windowStart && now < windowEnd) {
          windowDeliveries++
          delivery.record(now - sendTimes.get(msg))
        }
      }
    }
    for (let i = 0; i < inFlight; i++) sendOne()
  }
  await sleep(warmupMs)
  await mark('start')
  windowStart = performance.now()
  await sleep(durationMs)
  windowEnd = performance.now()
  await mark('end')
  running = false
  const perMessage = pipes.reduce((n, p) => n + p.recipients.length, 0) / pipes.length
  const expected = () => sent * perMessage
  await until(() => acked >= sent && delivered >= expected(), 30_000)
  return {
    senders: pipes.length,
    inFlight,
    recipients: recipients.size,
    windowMs: Math.round(windowEnd - windowStart),
    acked: windowAcks,
    deliveries: windowDeliveries,
    sent,
    unacked: sent - acked,
    undelivered: Math.round(expected() - delivered),
    ack: ack.summary(),
    delivery: delivery.summary(),
  }
}

async function runThroughput(p: {
  url: string
  pairs: readonly Pair[]
  inFlight: number
  warmupMs: number
  durationMs: number
}): Promise<PipelineResult> {
  const socks: BenchSocket[] = []
  try {
    const pipes: Pipeline[] = []
    for (const [i, pair] of p.pairs.entries()) {
      const sender = await connectLive(p.url, pair.sender.access_token, sourceAddress(2 * i))
      socks.push(sender)
      const receiver = await connectLive(p.url, pair.receiver.access_token, sourceAddress(2 * i + 1))
      socks.push(receiver)
      // The sender's own device gets the event too; the receiver is the one that counts.
      pipes.push({ room: pair.room, sender, recipients: [receiver] })
    }
    return { ...(await pipelined(pipes, p.inFlight, p.warmupMs, p.durationMs)), ...problems(socks) }
  } finally {
    closeAll(socks)
  }
}

async function runFanout(p: {
  url: string
  room: RoomFixture
  inFlight: number
  warmupMs: number
  durationMs: number
}): Promise<PipelineResult> {
  let socks: BenchSocket[] = []
  try {
    socks = await connectAll(
      p.url,
      [p.room.owner, ...p.room.members].map((a) => a.access_token),
    )
    // Every member's socket counts, the sender's own included: the server writes to each.
    const pipe = { room: p.room.room, sender: socks[0]!, recipients: socks }
    return { ...(await pipelined([pipe], p.inFlight, p.warmupMs, p.durationMs)), ...problems(socks) }
  } finally {
    closeAll(socks)
  }
}

// ---- (5) idle connections ----

const held: BenchSocket[] = []

export interface OpenIdleResult {
  readonly opened: number
  readonly failed: number
  readonly firstError: string | null
  readonly ms: number
}

/** Opens `count` authenticated, synced sockets (tokens reused round-robin) and holds them. */
async function openIdle(p: {
  url: string
  tokens: readonly string[]
  count: number
  addressOffset: number
}): Promise<OpenIdleResult> {
  const started = performance.now()
  let failed = 0
  let firstError: string | null = null
  const tokens = Array.from({ length: p.count }, (_, i) => p.tokens[i % p.tokens.length]!)
  await pool(tokens, 100, async (token, i) => {
    try {
      held.push(await connectLive(p.url, token, sourceAddress(p.addressOffset + i)))
    } catch (err) {
      failed++
      firstError ??= String(err)
    }
  })
  return { opened: p.count - failed, failed, firstError, ms: Math.round(performance.now() - started) }
}

/** Closes every held socket; returns what went wrong while they were held. */
async function closeIdle(_: Record<string, never>): Promise<Problems & { closed: number }> {
  const socks = held.splice(0)
  const result = problems(socks)
  closeAll(socks)
  return { ...result, closed: socks.length }
}

export const methods = {
  setupPairs,
  setupRoom,
  setupUsers,
  runLatency,
  runOpenLoop,
  runThroughput,
  runFanout,
  openIdle,
  closeIdle,
  ...federationMethods,
}

export type LoadMethods = typeof methods
