/**
 * The load generator's federation methods (run in a load worker process, called by
 * scripts/bench/federation.ts through rpc.ts): users on two homeservers, rooms owned by one of them
 * with members on both, and the runs that time messages across the link.
 *
 * Every timed message carries its send time in its body (`"<n> <performance.now() in us> xxx..."`,
 * BenchSocket.sendStamped). Senders and receivers of one run live in this process, so the receiver
 * times each event against the same clock, whichever server it came through.
 */
import { HttpApi, MemoryStore } from '@parley/protocol/client'
import { api, connectLive, pool, sourceAddress, TimeTable, type Account, type BenchSocket } from './client.ts'
import type { Problems } from './load.ts'
import { mark } from './rpc.ts'
import { Latency, mergeCounts, type LatencySummary } from './stats.ts'

const PASSWORD = 'bench-password-1'

/** Where a user lives and their session (serialisable: crosses the worker IPC). */
export interface FedUser {
  readonly url: string
  readonly account: Account
}

export interface FedFixture {
  readonly users: Readonly<Record<string, FedUser>>
  readonly rooms: Readonly<Record<string, string>>
}

let nextMsg = 1
const sendTimes = new TimeTable()

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const nowUs = (t: number) => Math.round(t * 1000)

function problems(socks: readonly BenchSocket[]): Problems {
  return {
    errors: mergeCounts(...socks.map((s) => s.errors)),
    closes: mergeCounts(...socks.map((s) => s.closes)),
  }
}

/** Polls `check` every 20 ms until it returns a value; throws once `timeoutMs` passed. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | null>): Promise<T> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== null) return value
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (!done()) {
    if (performance.now() > deadline) return false
    await sleep(5)
  }
  return true
}

// ---- set-up ----

/**
 * Registers `users` on each server (by server URL) and creates `rooms`, each owned by its `owner` with
 * every member invited and joined. A member on another server joins on their own server once the
 * invite has been replicated there, and counts as joined once their server says so.
 */
async function setupFederation(p: {
  users: Readonly<Record<string, string>>
  rooms: Readonly<Record<string, { owner: string; members: readonly string[] }>>
}): Promise<FedFixture> {
  const names = Object.keys(p.users)
  const accounts = await pool(names, 8, (name) =>
    new HttpApi({ baseUrl: p.users[name]!, store: new MemoryStore() }).register(name, PASSWORD),
  )
  const users: Record<string, FedUser> = {}
  names.forEach((name, i) => (users[name] = { url: p.users[name]!, account: accounts[i]! }))
  const user = (name: string) => {
    const u = users[name]
    if (!u) throw new Error(`setupFederation: no user ${name}`)
    return u
  }
  const rooms: Record<string, string> = {}
  for (const [key, spec] of Object.entries(p.rooms)) {
    const owner = user(spec.owner)
    const ownerApi = await api(owner.url, owner.account)
    const room = await ownerApi.createRoom({
      kind: 'group',
      name: `bench ${key}`,
      invite: spec.members.map((m) => user(m).account.user_id),
    })
    rooms[key] = room
    await pool(spec.members, 8, async (name) => {
      const member = user(name)
      const memberApi = await api(member.url, member.account)
      let joinSent = false
      await waitFor(`${name} to be joined to ${room}`, 60_000, async () => {
        const mine = (await memberApi.listRooms()).find((r) => r.room_id === room)
        if (mine?.membership === 'join') return true
        if (mine?.membership === 'invite' && !joinSent) {
          await memberApi.join(room)
          joinSent = true
        }
        return null
      })
    })
  }
  return { users, rooms }
}

// ---- open-loop latency across servers ----

export interface FedReceive {
  /** From the send time stamped in the body to this receiver's `event` frame. */
  readonly latency: LatencySummary
  readonly undelivered: number
}

export interface FedOpenLoopResult extends Problems {
  readonly rate: number
  readonly sent: number
  readonly measured: number
  readonly unacked: number
  readonly maxSendLagMs: number
  /** Send -> the sender's `sent` (after the owner's commit; for a remote sender, after the round trip). */
  readonly ack: LatencySummary
  /** By receiver label. */
  readonly receive: Readonly<Record<string, FedReceive>>
  /** Events that arrived without a stamp (the body was changed on the way). */
  readonly unstamped: number
}

/**
 * Sends at a fixed `rate` (on a schedule, regardless of answers) from `sender` into `room` for
 * `warmupMs + durationMs`; every receiver times every event from the send time in its body.
 */
async function runFedOpenLoop(p: {
  room: string
  sender: FedUser
  receivers: Readonly<Record<string, FedUser>>
  rate: number
  warmupMs: number
  durationMs: number
}): Promise<FedOpenLoopResult> {
  const socks: BenchSocket[] = []
  try {
    const labels = Object.keys(p.receivers)
    const receivers: BenchSocket[] = []
    for (const [i, label] of labels.entries()) {
      const r = p.receivers[label]!
      receivers.push(await connectLive(r.url, r.account.access_token, sourceAddress(i + 1)))
    }
    socks.push(...receivers)
    const sender = await connectLive(p.sender.url, p.sender.account.access_token, sourceAddress(0))
    socks.push(sender)
    const room = JSON.stringify(p.room)
    const interval = 1000 / p.rate
    const total = Math.round((p.rate * (p.warmupMs + p.durationMs)) / 1000)
    const warm = Math.round((p.rate * p.warmupMs) / 1000)
    const base = nextMsg
    nextMsg += total
    const firstMeasured = base + warm
    const inRun = (msg: number) => msg >= base && msg < base + total
    const ack = new Latency()
    let acked = 0
    let unstamped = 0
    sender.onAck = (msg, now) => {
      if (!inRun(msg)) return
      acked++
      if (msg >= firstMeasured) ack.record(now - sendTimes.get(msg))
    }
    const lat = labels.map(() => new Latency())
    const delivered = labels.map(() => 0)
    receivers.forEach((sock, i) => {
      sock.onEvent = (msg, now, stampUs) => {
        if (!inRun(msg)) return
        delivered[i]!++
        if (stampUs < 0) unstamped++
        else if (msg >= firstMeasured) lat[i]!.record(now - stampUs / 1000)
      }
    })
    await mark('start')
    let maxLag = 0
    await new Promise<void>((resolve) => {
      const begin = performance.now() + 1
      let i = 0
      // Timers only, no spinning: a load worker shares its core with globex (see federation.ts), so
      // sends go out up to ~1 ms late (maxSendLagMs) and are stamped with when they really left.
      const tick = () => {
        const now = performance.now()
        for (; i < total; i++) {
          const due = begin + i * interval
          if (due > now) break
          maxLag = Math.max(maxLag, now - due)
          const at = performance.now()
          sendTimes.set(base + i, at)
          sender.sendStamped(room, base + i, nowUs(at))
        }
        if (i >= total) return resolve()
        setTimeout(tick, Math.max(0, begin + i * interval - performance.now()))
      }
      tick()
    })
    await until(() => acked >= total && delivered.every((d) => d >= total), 30_000)
    await mark('end')
    return {
      rate: p.rate,
      sent: total,
      measured: total - warm,
      unacked: total - acked,
      maxSendLagMs: Math.round(maxLag * 1000) / 1000,
      ack: ack.summary(),
      receive: Object.fromEntries(
        labels.map((label, i) => [label, { latency: lat[i]!.summary(), undelivered: total - delivered[i]! }]),
      ),
      unstamped,
      ...problems(socks),
    }
  } finally {
    for (const s of socks) s.close()
  }
}

// ---- one link's throughput: a pipelined burst ----

export interface FedBurstResult extends Problems {
  readonly total: number
  readonly senders: number
  readonly inFlight: number
  readonly sent: number
  readonly acked: number
  readonly received: number
  readonly timedOut: boolean
  /** From the first send, ms. */
  readonly lastAckMs: number
  readonly lastReceiveMs: number
  /** When 10% and 90% of the burst had arrived at the receiver, ms from the first send. */
  readonly receive10Ms: number
  readonly receive90Ms: number
  /** Owner commit rate: acks per second, first send to last ack. */
  readonly ackedPerS: number
  /** Events per second at the receiver, first send to last arrival. */
  readonly endToEndPerS: number
  /** Events per second at the receiver between 10% and 90% of the burst (no ramp-up, no tail). */
  readonly steadyPerS: number
  /** Send -> arrival at the receiver on the other server (queueing included). */
  readonly delivery: LatencySummary
  readonly ack: LatencySummary
  /** Arrivals per 250 ms at the receiver and acks per 250 ms at the senders, from the first send. */
  readonly receivedPer250Ms: readonly number[]
  readonly ackedPer250Ms: readonly number[]
}

/**
 * `senders` (each in its own room on the owner) keep `inFlight` sends outstanding until `total`
 * events are sent between them; one `receiver` on the other server, a member of every room, counts
 * what arrives. The window is first send to last arrival.
 */
async function runFedBurst(p: {
  senders: ReadonlyArray<{ user: FedUser; room: string }>
  receiver: FedUser
  total: number
  inFlight: number
  timeoutMs: number
}): Promise<FedBurstResult> {
  const socks: BenchSocket[] = []
  try {
    const receiver = await connectLive(p.receiver.url, p.receiver.account.access_token, sourceAddress(0))
    socks.push(receiver)
    const senders: BenchSocket[] = []
    for (const [i, s] of p.senders.entries()) {
      senders.push(await connectLive(s.user.url, s.user.account.access_token, sourceAddress(i + 1)))
    }
    socks.push(...senders)
    const base = nextMsg
    nextMsg += p.total
    const inRun = (msg: number) => msg >= base && msg < base + p.total
    const delivery = new Latency()
    const ack = new Latency()
    const arrivals = new Float64Array(p.total)
    const receivedBuckets: number[] = []
    const ackedBuckets: number[] = []
    const bump = (buckets: number[], t: number) => {
      const b = Math.floor(t / 250)
      while (buckets.length <= b) buckets.push(0)
      buckets[b]!++
    }
    let t0 = 0
    let sent = 0
    let acked = 0
    let received = 0
    let lastAck = 0
    receiver.onEvent = (msg, now, stampUs) => {
      if (!inRun(msg)) return
      if (received < p.total) arrivals[received] = now - t0
      received++
      bump(receivedBuckets, now - t0)
      if (stampUs >= 0) delivery.record(now - stampUs / 1000)
    }
    const quota = p.senders.map((_, i) =>
      i < p.senders.length - 1
        ? Math.floor(p.total / p.senders.length)
        : p.total - Math.floor(p.total / p.senders.length) * (p.senders.length - 1),
    )
    let next = base
    const starters: Array<() => void> = []
    senders.forEach((sock, i) => {
      const room = JSON.stringify(p.senders[i]!.room)
      let mine = 0
      const sendOne = () => {
        if (mine >= quota[i]!) return
        mine++
        sent++
        const msg = next++
        const t = performance.now()
        sendTimes.set(msg, t)
        sock.sendStamped(room, msg, nowUs(t))
      }
      sock.onAck = (msg, now) => {
        if (!inRun(msg)) return
        acked++
        lastAck = now - t0
        bump(ackedBuckets, now - t0)
        ack.record(now - sendTimes.get(msg))
        sendOne()
      }
      starters.push(() => {
        for (let k = 0; k < p.inFlight; k++) sendOne()
      })
    })
    await mark('start')
    t0 = performance.now()
    for (const start of starters) start()
    const done = await until(() => received >= p.total && acked >= p.total, p.timeoutMs)
    const lastReceive = received > 0 ? arrivals[Math.min(received, p.total) - 1]! : 0
    await mark('end')
    const at = (fraction: number) => arrivals[Math.max(0, Math.ceil(p.total * fraction) - 1)]!
    const complete = received >= p.total
    const perS = (n: number, ms: number) => (ms > 0 ? Math.round((n * 1000) / ms) : 0)
    return {
      total: p.total,
      senders: p.senders.length,
      inFlight: p.inFlight,
      sent,
      acked,
      received,
      timedOut: !done,
      lastAckMs: Math.round(lastAck),
      lastReceiveMs: Math.round(lastReceive),
      receive10Ms: complete ? Math.round(at(0.1)) : -1,
      receive90Ms: complete ? Math.round(at(0.9)) : -1,
      ackedPerS: perS(acked, lastAck),
      endToEndPerS: perS(received, lastReceive),
      steadyPerS: complete ? perS(Math.ceil(p.total * 0.9) - Math.ceil(p.total * 0.1), at(0.9) - at(0.1)) : 0,
      delivery: delivery.summary(),
      ack: ack.summary(),
      receivedPer250Ms: receivedBuckets,
      ackedPer250Ms: ackedBuckets,
      ...problems(socks),
    }
  } finally {
    for (const s of socks) s.close()
  }
}

// ---- one link's throughput: a replica catching up ----

export interface FedFillResult extends Problems {
  readonly acked: number
  readonly ms: number
  /** Each room's last seq on the owner before and after the fill. */
  readonly before: Readonly<Record<string, number>>
  readonly after: Readonly<Record<string, number>>
}

/**
 * While the replica is down: `senders` pipeline `total` events into their rooms on the owner (acks
 * only, nobody receives them). Returns each room's last seq before and after.
 */
async function runFedFill(p: {
  senders: ReadonlyArray<{ user: FedUser; room: string }>
  total: number
  inFlight: number
}): Promise<FedFillResult> {
  const lastSeqs = async () => {
    const out: Record<string, number> = {}
    for (const s of p.senders)
      out[s.room] = (await (await api(s.user.url, s.user.account)).getRoom(s.room)).last_seq
    return out
  }
  const before = await lastSeqs()
  const socks: BenchSocket[] = []
  try {
    for (const [i, s] of p.senders.entries())
      socks.push(await connectLive(s.user.url, s.user.account.access_token, sourceAddress(i)))
    const started = performance.now()
    let acked = 0
    await new Promise<void>((resolve) => {
      socks.forEach((sock, i) => {
        const room = JSON.stringify(p.senders[i]!.room)
        const quota = Math.floor(p.total / socks.length) + (i < p.total % socks.length ? 1 : 0)
        let sent = 0
        const sendOne = () => {
          if (sent >= quota) return
          sent++
          const msg = nextMsg++
          sock.sendStamped(room, msg, nowUs(performance.now()))
        }
        sock.onAck = () => {
          if (++acked >= p.total) resolve()
          sendOne()
        }
        for (let k = 0; k < p.inFlight; k++) sendOne()
      })
    })
    const ms = performance.now() - started
    return { acked, ms: Math.round(ms), before, after: await lastSeqs(), ...problems(socks) }
  } finally {
    for (const s of socks) s.close()
  }
}

export interface FedCatchupResult {
  readonly expected: number
  readonly applied: number
  readonly timedOut: boolean
  /** From the start of polling (the replica has just started), ms. */
  readonly firstProgressMs: number
  readonly doneMs: number
  /** Events per second applied at the replica, first progress to done. */
  readonly perS: number
  /** Between 10% and 90% of the events (no link set-up, no tail). */
  readonly steadyPerS: number
  /** Applied events per 250 ms, from the start of polling. */
  readonly appliedPer250Ms: readonly number[]
}

/**
 * A replica has just restarted behind its owner: polls the newest event of each room on the replica
 * (as `user`, every 20 ms) until each room reaches `target` (from `from`); the window is the whole
 * catch-up.
 */
async function runFedCatchup(p: {
  user: FedUser
  from: Readonly<Record<string, number>>
  target: Readonly<Record<string, number>>
  timeoutMs: number
}): Promise<FedCatchupResult> {
  const replica = await api(p.user.url, p.user.account)
  const rooms = Object.keys(p.target)
  const expected = rooms.reduce((n, r) => n + p.target[r]! - p.from[r]!, 0)
  const samples: Array<{ t: number; applied: number }> = []
  await mark('start')
  const t0 = performance.now()
  let applied = 0
  let timedOut = false
  for (;;) {
    // The newest event of each room (one index probe each; GET /rooms would count unread messages,
    // which scans every event of the room).
    const seqs = await Promise.all(
      rooms.map(async (r) => (await replica.messages(r, { limit: 1 })).events[0]?.seq ?? 0),
    )
    applied = rooms.reduce((n, r, i) => n + Math.max(0, Math.min(seqs[i]!, p.target[r]!) - p.from[r]!), 0)
    samples.push({ t: performance.now() - t0, applied })
    if (applied >= expected) break
    if (performance.now() - t0 > p.timeoutMs) {
      timedOut = true
      break
    }
    await sleep(20)
  }
  await mark('end')
  // The first sample at or past a level; sampling every ~20 ms bounds the error of each time.
  const when = (level: number) => samples.find((s) => s.applied >= level)?.t ?? NaN
  const first = samples.find((s) => s.applied > 0)
  const firstProgressMs = first ? (samples[samples.indexOf(first) - 1]?.t ?? first.t) : NaN
  const doneMs = when(expected)
  const lo = Math.ceil(expected * 0.1)
  const hi = Math.ceil(expected * 0.9)
  const buckets: number[] = []
  let prev = 0
  for (const s of samples) {
    const b = Math.floor(s.t / 250)
    while (buckets.length <= b) buckets.push(0)
    buckets[b]! += s.applied - prev
    prev = s.applied
  }
  const rate = (n: number, ms: number) => (ms > 0 ? Math.round((n * 1000) / ms) : 0)
  return {
    expected,
    applied,
    timedOut,
    firstProgressMs: Math.round(firstProgressMs),
    doneMs: Math.round(doneMs),
    perS: timedOut ? 0 : rate(expected, doneMs - firstProgressMs),
    steadyPerS: timedOut ? 0 : rate(hi - lo, when(hi) - when(lo)),
    appliedPer250Ms: buckets,
  }
}

export const federationMethods = { setupFederation, runFedOpenLoop, runFedBurst, runFedFill, runFedCatchup }
