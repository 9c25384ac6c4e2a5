/**
 * Fakes for the client's unit tests: a manual clock, a scripted WebSocket and a scripted fetch.
 * Test-only; not exported from the package.
 */
import type { ClientEvent } from '../schema/index.ts'
import type { Listener, TypedEmitter } from './emitter.ts'
import type { FetchLike } from './http.ts'
import type { WebSocketLike } from './socket.ts'
import type { Session } from './store.ts'
import type { Clock, TimerHandle } from './timing.ts'

/** A clock whose time moves only when a test calls {@link FakeClock.advance}. */
export class FakeClock implements Clock {
  #now = 1_700_000_000_000
  #nextId = 1
  readonly #timers = new Map<number, { at: number; fn: () => void }>()

  now(): number {
    return this.#now
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn })
    return id
  }
  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as number)
  }
  /** Moves time forward, firing due timers in order (timers they schedule fire too if due). */
  advance(ms: number): void {
    const end = this.#now + ms
    for (;;) {
      let nextId: number | undefined
      let next: { at: number; fn: () => void } | undefined
      for (const [id, timer] of this.#timers) {
        if (timer.at <= end && (next === undefined || timer.at < next.at)) {
          nextId = id
          next = timer
        }
      }
      if (nextId === undefined || next === undefined) break
      this.#timers.delete(nextId)
      this.#now = next.at
      next.fn()
    }
    this.#now = end
  }
  /** Delays (from now) of the timers still scheduled, soonest first. */
  pendingDelays(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#now).sort((a, b) => a - b)
  }
}

/** A queue whose `next()` waits for the next pushed value. */
class Queue<T> {
  readonly items: T[] = []
  #read = 0
  readonly #waiters: ((value: T) => void)[] = []
  push(value: T): void {
    this.items.push(value)
    const waiter = this.#waiters.shift()
    if (waiter) waiter(this.items[this.#read++]!)
  }
  next(): Promise<T> {
    if (this.#read < this.items.length) return Promise.resolve(this.items[this.#read++]!)
    return new Promise((resolve) => this.#waiters.push(resolve))
  }
  /** Values pushed but not yet taken with `next()`. */
  unread(): T[] {
    return this.items.slice(this.#read)
  }
}

/** A JSON frame as the fake server sees it. */
export type Frame = Record<string, unknown>

/** The server's side of one fake WebSocket. */
export interface FakeSocket extends WebSocketLike {
  readonly url: string
  /** The close code the client used, if it closed the socket. */
  readonly closedWith: number | undefined
  /** Completes the opening handshake. */
  accept(): void
  /** Sends a frame to the client (objects are JSON-encoded; strings and others are sent as they are). */
  deliver(frame: unknown): void
  /** Closes from the server side. */
  serverClose(code?: number, reason?: string): void
  /** The next frame the client sent (waits for it). */
  nextFrame(): Promise<Frame>
  /** Frames sent by the client and not yet taken with `nextFrame()`. */
  unreadFrames(): Frame[]
}

/** A WebSocket class for the client plus a handle on every socket it creates. */
export function fakeWebSockets(): {
  WebSocket: new (url: string) => FakeSocket
  nextSocket(): Promise<FakeSocket>
  readonly count: number
} {
  const sockets = new Queue<FakeSocket>()

  class Socket implements FakeSocket {
    readyState = 0
    onopen: FakeSocket['onopen'] = null
    onmessage: FakeSocket['onmessage'] = null
    onclose: FakeSocket['onclose'] = null
    onerror: FakeSocket['onerror'] = null
    closedWith: number | undefined
    readonly #frames = new Queue<Frame>()

    constructor(readonly url: string) {
      sockets.push(this)
    }
    send(data: string): void {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open')
      this.#frames.push(JSON.parse(data) as Frame)
    }
    close(code?: number): void {
      if (this.readyState === 3) return
      this.readyState = 3
      this.closedWith = code ?? 1005
      this.onclose?.({ code: code ?? 1005, reason: '' })
    }
    accept(): void {
      this.readyState = 1
      this.onopen?.({})
    }
    deliver(frame: unknown): void {
      const data =
        frame !== null && typeof frame === 'object' && !ArrayBuffer.isView(frame)
          ? JSON.stringify(frame)
          : frame
      this.onmessage?.({ data })
    }
    serverClose(code = 1006, reason = ''): void {
      this.readyState = 3
      this.onclose?.({ code, reason })
    }
    nextFrame(): Promise<Frame> {
      return this.#frames.next()
    }
    unreadFrames(): Frame[] {
      return this.#frames.unread()
    }
  }

  return {
    WebSocket: Socket,
    nextSocket: () => sockets.next(),
    get count() {
      return sockets.items.length
    },
  }
}

/** A request as the fake server saw it. */
export interface SeenRequest {
  readonly method: string
  readonly url: URL
  readonly headers: Headers
  readonly body: string | Uint8Array | undefined
  /** The body parsed as JSON, when it was JSON. */
  readonly json: unknown
}

/** What the fake server answers. */
export interface FakeAnswer {
  readonly status?: number
  readonly json?: unknown
  readonly text?: string
  readonly headers?: Record<string, string>
}

/** A scripted `fetch`: `handler` answers each request; `requests` records them. */
export function fakeFetch(handler: (request: SeenRequest) => FakeAnswer | Promise<FakeAnswer>): {
  fetch: FetchLike
  requests: SeenRequest[]
} {
  const requests: SeenRequest[] = []
  const fetch: FetchLike = async (url, init) => {
    const raw = init.body
    const body =
      raw === undefined || raw === null
        ? undefined
        : typeof raw === 'string'
          ? raw
          : raw instanceof Uint8Array
            ? raw
            : new Uint8Array(await new Response(raw).arrayBuffer())
    const request: SeenRequest = {
      method: init.method ?? 'GET',
      url: new URL(url),
      headers: new Headers(init.headers),
      body,
      json: typeof body === 'string' ? JSON.parse(body) : undefined,
    }
    requests.push(request)
    const answer = await handler(request)
    const text = answer.text ?? (answer.json === undefined ? '' : JSON.stringify(answer.json))
    return new Response(text, { status: answer.status ?? 200, headers: answer.headers ?? {} })
  }
  return { fetch, requests }
}

/** Resolves with the next payload of `type` that satisfies `accept`. */
export function nextEvent<E extends object, K extends keyof E>(
  emitter: TypedEmitter<E>,
  type: K,
  accept: (payload: E[K]) => boolean = () => true,
): Promise<E[K]> {
  return new Promise((resolve) => {
    const listener: Listener<E[K]> = (payload) => {
      if (!accept(payload)) return
      emitter.off(type, listener)
      resolve(payload)
    }
    emitter.on(type, listener)
  })
}

export const SERVER = 'acme.test'
export const BASE_URL = 'http://acme.test'
export const ALICE = '@alice:acme.test'
export const BOB = '@bob:acme.test'
export const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.test'

/** A syntactically valid event id derived from `n`. */
export function eventId(n: number): string {
  return '$' + String(n).padStart(43, 'E')
}

/** A message event at stream position `pos` (and room seq `pos`). */
export function makeEvent(pos: number, body = `message ${pos}`): ClientEvent {
  return {
    event_id: eventId(pos),
    room: ROOM,
    seq: pos,
    stream_pos: pos,
    type: 'm.message',
    sender: BOB,
    origin_ts: 1_700_000_000_000 + pos,
    content: { body },
  }
}

/** The live frame carrying {@link makeEvent}(pos). */
export function liveFrame(pos: number): Frame {
  return { type: 'event', room: ROOM, seq: pos, stream_pos: pos, event: makeEvent(pos) }
}

/** The `ready` frame for Alice. */
export const READY: Frame = {
  type: 'ready',
  user_id: ALICE,
  device_id: 'DEVICE000001',
  server_name: SERVER,
  stream_head: 100,
}

/** A session for Alice valid for an hour after `now`. */
export function aliceSession(now: number, token = 'tok1', refresh = 'ref1'): Session {
  return {
    user_id: ALICE,
    device_id: 'DEVICE000001',
    access_token: token,
    refresh_token: refresh,
    expires_at: now + 3_600_000,
    base_url: BASE_URL,
  }
}

/** An `AuthResponse` body for Alice. */
export function authBody(token: string, refresh: string, expiresIn = 3600): Frame {
  return {
    user_id: ALICE,
    device_id: 'DEVICE000001',
    access_token: token,
    refresh_token: refresh,
    expires_in: expiresIn,
  }
}
