/**
 * Faults (TESTPLAN.md rows FLT-4 and FLT-5): clients cut off mid-stream by the chaos proxy that resume
 * from their cursor and resend with the same txn ids; a disk that fills up under the sequencer.
 */
import { spawnSync } from 'node:child_process'
import { rm } from 'node:fs/promises'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  connect,
  fullHistory,
  groupWith,
  register,
  sendText,
  startChildServer,
  startTestServer,
  type ChildServer,
  type Frame,
  type HistoryEvent,
  type TestServer,
  type TestUser,
  waitUntil,
} from './helpers.ts'
import { ChaosProxy } from './support/chaos-proxy.ts'

/** Small seeded PRNG (mulberry32): a failing run can be replayed from the seed in its message. */
function prng(seed: number): (lo: number, hi: number) => number {
  let a = seed >>> 0
  return (lo, hi) => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296
    return lo + Math.floor(r * (hi - lo + 1))
  }
}

const wsUrl = (base: string) => base.replace(/^http/, 'ws') + '/api/v1/ws'

/** Every m.message of a room through the history endpoint, oldest first. */
async function history(hs: { url: string }, user: TestUser, room: string): Promise<HistoryEvent[]> {
  return (await fullHistory(hs, user.access_token, room)).filter((e) => e.type === 'm.message')
}

/**
 * A receiving client that reconnects whenever its connection dies and resumes with `sync` from the
 * last stream position it processed, a few events per page (so a page fits between two cuts).
 */
class ResumingReceiver {
  readonly bodies: string[] = []
  readonly duplicates: number[] = []
  readonly errors: Frame[] = []
  connections = 0
  #cursor: number
  #ws: WebSocket | null = null
  #stopped = false

  constructor(
    private readonly url: string,
    private readonly token: string,
    since: number,
  ) {
    this.#cursor = since
  }

  /** Runs until `done()` holds after an event was processed. */
  run(done: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const open = () => {
        if (this.#stopped) return
        this.connections++
        const ws = (this.#ws = new WebSocket(wsUrl(this.url), { perMessageDeflate: false }))
        ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', token: this.token })))
        ws.on('message', (data) => {
          const f = JSON.parse(data.toString()) as Frame
          if (f.type === 'ready' || (f.type === 'sync' && !f.done)) {
            if (f.type === 'sync') this.#take(f.events as HistoryEvent[], f.next as number)
            ws.send(JSON.stringify({ type: 'sync', since: this.#cursor, limit: 5 }))
          } else if (f.type === 'sync') this.#take(f.events as HistoryEvent[], f.next as number)
          else if (f.type === 'event') this.#take([f.event as HistoryEvent], f.stream_pos as number)
          else if (f.type === 'error') this.errors.push(f)
          if (done() && !this.#stopped) {
            this.stop()
            resolve()
          }
        })
        ws.on('error', () => {})
        ws.on('close', open)
      }
      open()
    })
  }

  #take(events: HistoryEvent[], next: number): void {
    for (const e of events) {
      if (e.stream_pos <= this.#cursor) this.duplicates.push(e.stream_pos)
      else if (e.type === 'm.message') this.bodies.push(e.content.body!)
      this.#cursor = Math.max(this.#cursor, e.stream_pos)
    }
    this.#cursor = Math.max(this.#cursor, next)
  }

  stop(): void {
    this.#stopped = true
    this.#ws?.terminate()
  }
}

/**
 * A sending client with a window of un-acked sends. When its connection dies it reconnects and first
 * resends everything un-acked, in order, with the same txn ids.
 */
class ResendingSender {
  /** txn id -> event ids of every `sent` ack it got (a resend of a stored txn is acked again). */
  readonly acks = new Map<string, string[]>()
  readonly errors: Frame[] = []
  connections = 0
  resent = 0
  #next = 0
  readonly #unacked = new Map<string, number>()
  #ws: WebSocket | null = null
  #stopped = false

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly room: string,
    private readonly total: number,
    private readonly window: number,
  ) {}

  static txn = (i: number) => `flt4-${i}`
  static body = (i: number) => `m${i}`

  run(): Promise<void> {
    return new Promise((resolve) => {
      const open = () => {
        if (this.#stopped) return
        this.connections++
        const ws = (this.#ws = new WebSocket(wsUrl(this.url), { perMessageDeflate: false }))
        const send = (i: number) =>
          ws.send(
            JSON.stringify({
              type: 'send',
              txn_id: ResendingSender.txn(i),
              room: this.room,
              event_type: 'm.message',
              content: { body: ResendingSender.body(i) },
            }),
          )
        const fill = () => {
          while (this.#unacked.size < this.window && this.#next < this.total) {
            this.#unacked.set(ResendingSender.txn(this.#next), this.#next)
            send(this.#next++)
          }
        }
        ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', token: this.token })))
        ws.on('message', (data) => {
          const f = JSON.parse(data.toString()) as Frame
          if (f.type === 'ready') {
            // Map iteration is insertion order: un-acked sends go out again oldest first.
            for (const i of this.#unacked.values()) {
              send(i)
              this.resent++
            }
          } else if (f.type === 'sent') {
            const txn = f.txn_id as string
            this.acks.set(txn, [...(this.acks.get(txn) ?? []), f.event_id as string])
            this.#unacked.delete(txn)
          } else if (f.type === 'error') this.errors.push(f)
          else return
          fill()
          if (this.#next === this.total && this.#unacked.size === 0 && !this.#stopped) {
            this.stop()
            resolve()
          }
        })
        ws.on('error', () => {})
        ws.on('close', open)
      }
      open()
    })
  }

  stop(): void {
    this.#stopped = true
    this.#ws?.terminate()
  }
}

describe('FLT-4: client disconnect and resume through a chaos proxy', () => {
  const TOTAL = 2000
  let hs: TestServer
  let alice: TestUser
  let bob: TestUser
  let room: string
  let toReceiver: ChaosProxy
  let toSender: ChaosProxy
  beforeAll(async () => {
    hs = await startTestServer({ limits: { messagesPerSecond: 100_000, messageBurst: 100_000 } })
    alice = await register(hs)
    bob = await register(hs)
    room = await groupWith(hs, alice, [bob])
    toReceiver = await ChaosProxy.start(hs.url)
    toSender = await ChaosProxy.start(hs.url)
  })
  afterAll(async () => {
    vi.restoreAllMocks()
    await toReceiver.close()
    await toSender.close()
    await hs.stop()
  })

  it('delivers every message exactly once and in order to a receiver cut 50+ times, and stores each resent txn once', async () => {
    const seed = Date.now() % 2 ** 31
    const rand = prng(seed)
    const why = `seed ${seed}`
    // Every connection is dropped after a random number of bytes (both directions), mostly mid-frame.
    toReceiver.setMode({ kind: 'cut', afterBytes: () => rand(2_500, 12_000) })
    toSender.setMode({ kind: 'cut', afterBytes: () => rand(10_000, 60_000) })

    // Count resends of txns the server had already stored (delivered, but the ack was cut).
    const events = hs.services.repos.events
    const lookup = events.txn.bind(events)
    let dedupes = 0
    vi.spyOn(events, 'txn').mockImplementation((device, txn) => {
      const found = lookup(device, txn)
      if (found) dedupes++
      return found
    })

    const receiver = new ResumingReceiver(toReceiver.url, bob.access_token, hs.services.sequencer.streamHead)
    const sender = new ResendingSender(toSender.url, alice.access_token, room, TOTAL, 32)
    const expected = Array.from({ length: TOTAL }, (_, i) => ResendingSender.body(i))
    let timer: ReturnType<typeof setTimeout> | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        sender.stop()
        receiver.stop()
        const progress = `acked ${sender.acks.size}, received ${receiver.bodies.length} of ${TOTAL}`
        reject(new Error(`stream stalled: ${progress}, ${why}`))
      }, 45_000)
    })
    await Promise.race([
      Promise.all([sender.run(), receiver.run(() => receiver.bodies.length >= TOTAL)]),
      deadline,
    ])
    clearTimeout(timer)

    expect(receiver.duplicates, why).toEqual([])
    expect(receiver.bodies, why).toEqual(expected)
    expect(receiver.errors, why).toEqual([])
    expect(toReceiver.cuts, why).toBeGreaterThanOrEqual(50)

    expect(sender.errors, why).toEqual([])
    expect(toSender.cuts, why).toBeGreaterThanOrEqual(3)
    expect(sender.resent, why).toBeGreaterThan(0)
    expect(dedupes, why).toBeGreaterThan(0)
    expect(sender.acks.size, why).toBe(TOTAL)

    const stored = await history(hs, alice, room)
    expect(
      stored.map((e) => e.content.body),
      why,
    ).toEqual(expected)
    expect(stored.map((e) => e.event_id)).toEqual(
      expected.map((_, i) => sender.acks.get(ResendingSender.txn(i))![0]),
    )
  }, 60_000)
})

describe('FLT-4: latency, RST and half-open links between a client and the server', () => {
  const heartbeatMs = 100
  let hs: TestServer
  let alice: TestUser
  let bob: TestUser
  let room: string
  let proxy: ChaosProxy
  beforeAll(async () => {
    hs = await startTestServer({ limits: { heartbeatMs } })
    alice = await register(hs)
    bob = await register(hs)
    room = await groupWith(hs, alice, [bob])
    proxy = await ChaosProxy.start(hs.url)
  })
  afterAll(async () => {
    await proxy.close()
    await hs.stop()
  })
  const connectionsOf = (user: TestUser) => hs.services.hub.connectionsOf(user.user_id).size

  it('keeps a session working through 60 ms of added latency each way', async () => {
    proxy.setMode({ kind: 'latency', ms: 60 })
    const slow = await connect(proxy, bob)
    const a = await connect(hs, alice)
    const t0 = Date.now()
    slow.send({ type: 'ping', id: 'lat' })
    await slow.next((f) => f.type === 'pong')
    expect(Date.now() - t0).toBeGreaterThanOrEqual(120)
    const sent = await sendText(a, room, 'through latency')
    await slow.next((f) => f.type === 'event' && (f.event as HistoryEvent).event_id === sent.event_id)
    slow.close()
    a.close()
    proxy.setMode({ kind: 'pass' })
  })

  it('forgets a client whose connection is reset (RST) at once', async () => {
    const victim = await connect(proxy, bob)
    expect(connectionsOf(bob)).toBe(1)
    proxy.setMode({ kind: 'rst' })
    expect((await victim.closed()).code).toBe(1006)
    await waitUntil(() => connectionsOf(bob) === 0, 1000)
    proxy.setMode({ kind: 'pass' })
  })

  it('drops a half-open (blackholed) client within three heartbeats and lets it back in once healed', async () => {
    const stuck = await connect(proxy, bob)
    expect(connectionsOf(bob)).toBe(1)
    proxy.setMode({ kind: 'blackhole' })
    const t0 = Date.now()
    await waitUntil(() => connectionsOf(bob) === 0, 20 * heartbeatMs)
    expect(Date.now() - t0).toBeLessThanOrEqual(3 * heartbeatMs + 200)
    stuck.close()
    proxy.cutAll()
    proxy.setMode({ kind: 'pass' })
    const back = await connect(proxy, bob)
    expect(connectionsOf(bob)).toBe(1)
    back.close()
  })
})

describe('FLT-5: disk full', () => {
  let hs: TestServer
  let alice: TestUser
  let bob: TestUser
  let room: string
  beforeAll(async () => {
    hs = await startTestServer({ limits: { messagesPerSecond: 100_000, messageBurst: 100_000 } })
    alice = await register(hs)
    bob = await register(hs)
    room = await groupWith(hs, alice, [bob])
  })
  afterAll(() => hs.stop())

  it('refuses sends with P_STORAGE and never acks them while full, keeps reads up, and resumes once space is back', async () => {
    const db = hs.services.repos.db
    const a = await connect(hs, alice)
    const b = await connect(hs, bob)
    const acked: string[] = []
    const body = (i: number) => `${i} `.padEnd(2000, 'x')
    for (let i = 0; i < 10; i++) {
      expect((await sendText(a, room, body(i), `full-${i}`)).type).toBe('sent')
      acked.push(`full-${i}`)
    }

    // "Disk full": the database may not grow past the pages it has now.
    const roomyLimit = db.pragma('max_page_count', { simple: true }) as number
    db.pragma(`max_page_count = ${(db.pragma('page_count', { simple: true }) as number) + 10}`)
    let i = 10
    let refused: Frame | null = null
    for (; i < 1000 && !refused; i++) {
      const res = await sendText(a, room, body(i), `full-${i}`)
      if (res.type === 'sent') acked.push(`full-${i}`)
      else refused = res
    }
    expect(refused).toMatchObject({ type: 'error', errcode: 'P_STORAGE', txn_id: `full-${i - 1}` })
    const refusedTxns = [`full-${i - 1}`]
    // Everything else sent while full is refused too, whether alone or batched in one commit.
    const more = Array.from({ length: 10 }, (_, k) => sendText(a, room, body(i + k), `full-${i + k}`))
    for (const [k, res] of (await Promise.all(more)).entries()) {
      expect(res).toMatchObject({ type: 'error', errcode: 'P_STORAGE' })
      refusedTxns.push(`full-${i + k}`)
    }
    i += 10

    // Reads stay up: history, a fresh socket with a full catch-up sync, a ping.
    expect((await history(hs, bob, room)).length).toBe(acked.length)
    const reader = await connect(hs, bob)
    reader.send({ type: 'ping', id: 'full' })
    await reader.next((f) => f.type === 'pong')
    reader.close()

    // Space is back: new sends and retries of refused txns succeed, each stored once.
    db.pragma(`max_page_count = ${roomyLimit}`)
    for (const txn of refusedTxns) {
      const res = await sendText(a, room, body(Number(txn.slice(5))), txn)
      expect(res.type).toBe('sent')
      acked.push(txn)
    }
    for (let k = 0; k < 5; k++, i++) {
      expect((await sendText(a, room, body(i), `full-${i}`)).type).toBe('sent')
      acked.push(`full-${i}`)
    }
    // No refused send was ever acked, and acked == stored, in order.
    expect(a.frames.filter((f) => f.type === 'sent')).toEqual([])
    const stored = await history(hs, alice, room)
    expect(stored.map((e) => Number(e.content.body!.split(' ')[0]))).toEqual(
      acked.map((t) => Number(t.slice(5))),
    )
    // The live member saw exactly the stored events, in order, nothing of the refused attempts.
    const live: string[] = []
    for (let k = 0; k < stored.length; k++) {
      const f = await b.next((x) => x.type === 'event' && (x.event as HistoryEvent).type === 'm.message')
      live.push((f.event as HistoryEvent).event_id)
    }
    expect(live).toEqual(stored.map((e) => e.event_id))
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok')
    a.close()
    b.close()
  })
})

/** True if this process may create a mount namespace (root, or unprivileged user namespaces). */
function canUnshareMount(): boolean {
  return spawnSync('unshare', ['--mount', 'true']).status === 0
}

describe('FLT-5: disk full on a real filesystem (tmpfs in a private mount namespace)', () => {
  // The server runs in its own mount namespace with its data directory on a 4 MiB tmpfs, 2.5 MB of
  // which a ballast file takes; deleting the ballast (through /proc/PID/root) frees space again.
  const script =
    'mount -t tmpfs -o size=4m tmpfs "$1" && head -c 2500000 /dev/zero > "$1/ballast" && shift && exec "$@"'
  let hs: ChildServer | undefined
  afterAll(() => hs?.stop())

  it.skipIf(!canUnshareMount())(
    'refuses sends with P_STORAGE once the filesystem is full, keeps reads up, and resumes after space is freed',
    async () => {
      hs = await startChildServer(
        { limits: { messagesPerSecond: 100_000, messageBurst: 100_000 } },
        { wrap: (argv, dir) => ['unshare', '--mount', 'sh', '-c', script, 'sh', dir, ...argv] },
      )
      const alice = await register(hs)
      const bob = await register(hs)
      const room = await groupWith(hs, alice, [bob])
      const a = await connect(hs, alice)
      const body = (i: number) => `${i} `.padEnd(2000, 'x')
      const acked: number[] = []
      let refused: number[] = []
      let i = 0
      for (; i < 5000 && refused.length === 0; i++) {
        const res = await sendText(a, room, body(i), `tmpfs-${i}`)
        if (res.type === 'sent') acked.push(i)
        else {
          expect(res).toMatchObject({ type: 'error', errcode: 'P_STORAGE' })
          refused.push(i)
        }
      }
      expect(acked.length).toBeGreaterThan(0)
      expect(refused).toHaveLength(1)
      for (let k = 0; k < 5; k++, i++) {
        expect(await sendText(a, room, body(i), `tmpfs-${i}`)).toMatchObject({ errcode: 'P_STORAGE' })
        refused.push(i)
      }
      // Reads stay up while full.
      expect((await history(hs, bob, room)).map((e) => Number(e.content.body!.split(' ')[0]))).toEqual(acked)
      a.send({ type: 'ping', id: 'full' })
      await a.next((f) => f.type === 'pong')

      await rm(`/proc/${hs.pid}/root${hs.dataDir}/ballast`)
      for (const n of refused) {
        expect((await sendText(a, room, body(n), `tmpfs-${n}`)).type).toBe('sent')
        acked.push(n)
      }
      refused = []
      expect((await sendText(a, room, body(i), `tmpfs-${i}`)).type).toBe('sent')
      acked.push(i)
      expect((await history(hs, bob, room)).map((e) => Number(e.content.body!.split(' ')[0]))).toEqual(acked)
      a.close()
    },
  )
})
