/**
 * Load-generator side (runs in the load worker process): REST set-up through the project's own
 * `HttpApi`, and `BenchSocket`, a thin WebSocket client built for measuring.
 *
 * Set-up frames (`ready`, `sync`) are validated with the protocol schemas. The measured hot path is
 * not: a load generator that spends 20 us per frame in a schema would measure itself, so `event` and
 * `sent` frames are recognised by a byte scan of the exact shape the server writes, with a fallback
 * to `JSON.parse` plus structural checks when the shape differs.
 */
import WebSocket from 'ws'
import { HttpApi, MemoryStore, type Session } from '@parley/protocol/client'
import { ReadyFrame, SyncResultFrame, validate } from '@parley/protocol/schema'
import { bump, type Counts } from './stats.ts'

/** A registered user with a live access token (serialisable: crosses the worker IPC). */
export type Account = Session

const PASSWORD = 'bench-password-1'

/** Runs `fn` over `items` with at most `concurrency` at once; results keep the input order. */
export async function pool<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const lane = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane))
  return out
}

export async function api(url: string, account: Account): Promise<HttpApi> {
  const store = new MemoryStore()
  await store.setSession(account)
  return new HttpApi({ baseUrl: url, store })
}

/** Registers `count` users named `<prefix><i>`, 16 at a time (registration runs argon2). */
export async function registerMany(url: string, prefix: string, count: number): Promise<Account[]> {
  const indexes = Array.from({ length: count }, (_, i) => i)
  return pool(indexes, 16, (i) =>
    new HttpApi({ baseUrl: url, store: new MemoryStore() }).register(`${prefix}${i}`, PASSWORD),
  )
}

/** A group room owned by `owner` with every one of `members` invited and joined. */
export async function roomWith(url: string, owner: Account, members: readonly Account[]): Promise<string> {
  const ownerApi = await api(url, owner)
  const first = members.slice(0, 100).map((m) => m.user_id)
  const room = await ownerApi.createRoom({ kind: 'group', name: 'bench', invite: first })
  await pool(members.slice(100), 32, (m) => ownerApi.invite(room, m.user_id))
  await pool(members, 32, async (m) => (await api(url, m)).join(room))
  return room
}

/** Loopback source addresses: 8 x 28k ephemeral ports, so 10k+ client sockets never run out. */
export function sourceAddress(i: number): string {
  return `127.0.0.${2 + (i % 8)}`
}

// ---- the measuring socket ----

const EVENT_PREFIX = Buffer.from('{"type":"event"')
const SENT_PREFIX = Buffer.from('{"type":"sent","txn_id":"')
const BODY_KEY = Buffer.from('"body":"')
const PAD = ' ' + 'x'.repeat(250)

/** Decimal digits at `pos`, or -1. */
function digitsAt(buf: Buffer, pos: number): number {
  let n = 0
  let i = pos
  for (; i < buf.length; i++) {
    const c = buf[i]!
    if (c < 48 || c > 57) break
    n = n * 10 + (c - 48)
  }
  return i === pos ? -1 : n
}

/** Index just past the decimal digits at `pos`. */
function digitsEnd(buf: Buffer, pos: number): number {
  let i = pos
  while (i < buf.length && buf[i]! >= 48 && buf[i]! <= 57) i++
  return i
}

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  return buf.length >= prefix.length && buf.compare(prefix, 0, prefix.length, 0, prefix.length) === 0
}

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null
}

/** Message number of a bench body (`"<n> xxx..."` or `"<n> <stamp> xxx..."`), or -1. */
function messageOf(body: unknown): number {
  if (typeof body !== 'string') return -1
  const n = Number.parseInt(body, 10)
  return Number.isSafeInteger(n) && n >= 0 ? n : -1
}

/** Send stamp of a bench body (`"<n> <stamp> xxx..."`, microseconds), or -1. */
function stampOf(body: unknown): number {
  if (typeof body !== 'string') return -1
  const m = /^\d+ (\d+)/.exec(body)
  return m ? Number(m[1]) : -1
}

const ignore = () => {}

/** Every socket this process opened and has not closed: closed on shutdown whatever happened. */
const openSockets = new Set<BenchSocket>()

export function terminateAll(): void {
  for (const s of openSockets) s.close()
}

interface Waiter {
  readonly type: string
  resolve(frame: unknown): void
  reject(err: Error): void
  readonly timer: ReturnType<typeof setTimeout>
}

export class BenchSocket {
  /**
   * A bench message (`msg` >= 0) or any other event (`msg` = -1) arrived; `stampUs` is the send time
   * the sender wrote into the body ({@link sendStamped}, `performance.now()` in microseconds), or -1.
   */
  onEvent: (msg: number, now: number, stampUs: number) => void = ignore
  /** The server acknowledged message `msg` (its `txn_id`) after commit. */
  onAck: (msg: number, now: number) => void = ignore
  /** Error frames by errcode. */
  readonly errors: Counts = {}
  /** Close codes of closes we did not ask for. */
  readonly closes: Counts = {}
  #waiter: Waiter | null = null
  #closing = false

  private constructor(readonly ws: WebSocket) {
    openSockets.add(this)
    ws.on('message', (data: Buffer) => this.#frame(data))
    ws.on('close', (code) => {
      openSockets.delete(this)
      if (!this.#closing) bump(this.closes, code)
      this.#waiter?.reject(new Error(`socket closed (${code}) while waiting for ${this.#waiter.type}`))
    })
    ws.on('error', () => {}) // surfaces as close (or as the open() rejection)
  }

  /** Opens a socket to the server's `/api/v1/ws`. */
  static open(url: string, localAddress?: string, timeoutMs = 15_000): Promise<BenchSocket> {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/api/v1/ws', {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: timeoutMs,
      ...(localAddress ? { localAddress } : {}),
    })
    const sock = new BenchSocket(ws)
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        ws.off('open', opened)
        sock.close()
        reject(err)
      }
      const refused = (_req: unknown, res: { statusCode?: number }) =>
        fail(new Error(`upgrade refused: HTTP ${res.statusCode}`))
      const opened = () => {
        ws.off('error', fail)
        ws.off('unexpected-response', refused)
        resolve(sock)
      }
      ws.once('open', opened)
      ws.once('unexpected-response', refused)
      ws.once('error', fail)
    })
  }

  /** `auth` -> `ready`; returns the server's stream head. */
  async authenticate(token: string): Promise<number> {
    this.ws.send(JSON.stringify({ type: 'auth', token }))
    const ready = validate(ReadyFrame, await this.#next('ready'))
    if (!ready.ok) throw new Error(`bad ready frame: ${ready.error.message}`)
    return ready.value.stream_head
  }

  /** Catch-up sync from `since` until `done`: afterwards the server pushes live events. */
  async syncFrom(since: number): Promise<void> {
    let cursor = since
    for (;;) {
      this.ws.send(JSON.stringify({ type: 'sync', since: cursor }))
      const page = validate(SyncResultFrame, await this.#next('sync'))
      if (!page.ok) throw new Error(`bad sync frame: ${page.error.message}`)
      cursor = page.value.next
      if (page.value.done) return
    }
  }

  /** Sends bench message `msg` (a 256-byte body) to `room`, with `txn_id` = `msg`. */
  sendMessage(roomJson: string, msg: number): void {
    this.ws.send(
      `{"type":"send","txn_id":"${msg}","room":${roomJson},"event_type":"m.message","content":{"body":"${msg}${PAD}"}}`,
    )
  }

  /**
   * Like {@link sendMessage}, with `stampUs` (a `performance.now()` time in microseconds) written into
   * the body after the number: whoever receives the event in the same process times it from there.
   */
  sendStamped(roomJson: string, msg: number, stampUs: number): void {
    const head = `${msg} ${stampUs}`
    this.ws.send(
      `{"type":"send","txn_id":"${msg}","room":${roomJson},"event_type":"m.message","content":{"body":"${head}${PAD.slice(0, Math.max(1, 256 - head.length))}"}}`,
    )
  }

  close(): void {
    this.#closing = true
    openSockets.delete(this)
    this.ws.terminate()
  }

  #next(type: string, timeoutMs = 15_000): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null
        reject(new Error(`no ${type} frame within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiter = {
        type,
        timer,
        resolve: (f) => {
          clearTimeout(timer)
          this.#waiter = null
          resolve(f)
        },
        reject: (e) => {
          clearTimeout(timer)
          this.#waiter = null
          reject(e)
        },
      }
    })
  }

  #frame(data: Buffer): void {
    const now = performance.now()
    if (startsWith(data, EVENT_PREFIX)) {
      const at = data.indexOf(BODY_KEY)
      if (at < 0) return this.onEvent(-1, now, -1)
      const start = at + BODY_KEY.length
      const end = digitsEnd(data, start)
      const stamp = end > start && data[end] === 32 ? digitsAt(data, end + 1) : -1
      return this.onEvent(digitsAt(data, start), now, stamp)
    }
    if (startsWith(data, SENT_PREFIX)) {
      const msg = digitsAt(data, SENT_PREFIX.length)
      if (msg >= 0) return this.onAck(msg, now)
    }
    // Anything else (or a shape the fast path does not know): parse properly.
    let frame: Record<string, unknown> | null
    try {
      frame = record(JSON.parse(data.toString('utf8')))
    } catch {
      frame = null
    }
    if (!frame || typeof frame.type !== 'string') return bump(this.errors, 'unparseable frame')
    switch (frame.type) {
      case 'event': {
        const body = record(record(frame.event)?.content)?.body
        return this.onEvent(messageOf(body), now, stampOf(body))
      }
      case 'sent':
        return this.onAck(messageOf(frame.txn_id), now)
      case 'error': {
        const code = typeof frame.errcode === 'string' ? frame.errcode : 'error'
        bump(this.errors, code)
        this.#waiter?.reject(new Error(`${code}: ${String(frame.error)}`))
        return
      }
      default:
        if (this.#waiter?.type === frame.type) this.#waiter.resolve(frame)
    }
  }
}

/** Opens, authenticates and syncs to the head: the socket then receives live events only. */
export async function connectLive(url: string, token: string, localAddress?: string): Promise<BenchSocket> {
  const sock = await BenchSocket.open(url, localAddress)
  try {
    await sock.syncFrom(await sock.authenticate(token))
    return sock
  } catch (err) {
    sock.close()
    throw err
  }
}

/** Send times by message number (a growable array: millions of messages cost 8 bytes each). */
export class TimeTable {
  #t = new Float64Array(1 << 16)

  set(msg: number, t: number): void {
    if (msg >= this.#t.length) {
      const bigger = new Float64Array(Math.max(this.#t.length * 2, msg + 1))
      bigger.set(this.#t)
      this.#t = bigger
    }
    this.#t[msg] = t
  }

  get(msg: number): number {
    return this.#t[msg] ?? 0
  }
}
