/**
 * The headless Parley client: one WebSocket to the homeserver for sync, live events and sends, plus
 * {@link HttpApi} for REST. Runs in Node and browsers; all I/O (WebSocket, fetch, storage, time,
 * randomness for jitter) is injected.
 *
 * Delivery guarantees:
 * - Events are delivered in stream order, at least once across restarts (the cursor is persisted
 *   after delivery) and never twice within one client (dedupe by stream position).
 * - Sends are stored in the outbox before anything goes on the wire and resent with their original
 *   `txn_id` on every new connection until the server acknowledges them with `sent` or refuses them
 *   for good; the server makes retries idempotent per device.
 */
import type { z } from 'zod'
import { randomBytes, toBase64Url } from '../encoding.ts'
import {
  PresenceFrame,
  ReceiptFrame,
  SendFrame,
  ServerFrame,
  ToDeviceFrame,
  TypingFrame,
  describeZodError,
  parseJson,
  type ClientEvent,
  type ClientFrame,
  type ErrorFrame,
  type EventFrame,
  type PresenceStatus,
  type ReadyFrame,
} from '../schema/index.ts'
import { TypedEmitter } from './emitter.ts'
import { CLOSE_CODES } from '../errors.ts'
import { ApiError, ClientClosedError, NoSessionError, ProtocolError } from './errors.ts'
import { HttpApi, type FetchLike, type SignInOptions } from './http.ts'
import { WS_OPEN, webSocketUrl, type WebSocketConstructor, type WebSocketLike } from './socket.ts'
import type { ClientStore, OutboxEntry } from './store.ts'
import {
  DEFAULT_BACKOFF,
  backoffDelay,
  systemClock,
  type BackoffOptions,
  type Clock,
  type TimerHandle,
} from './timing.ts'

/** Connection state, as reported by the `status` event. */
export type ConnectionStatus = 'connecting' | 'syncing' | 'online' | 'offline'

/** An event delivered by sync (`live: false`, catching up) or pushed live (`live: true`). */
export interface IncomingEvent {
  readonly event: ClientEvent
  readonly live: boolean
}
/** Who is typing in a room now (the full set). */
export interface TypingUpdate {
  readonly room: string
  readonly user_ids: readonly string[]
}
/** A member's read position moved. */
export interface ReceiptUpdate {
  readonly room: string
  readonly user_id: string
  readonly event_id: string
  readonly seq: number
}
/** A user's presence changed. */
export interface PresenceUpdate {
  readonly user_id: string
  readonly status: PresenceStatus
}
/** A to-device message for this device (E2E key sharing). */
export interface ToDeviceMessage {
  readonly id: number
  readonly sender: string
  readonly sender_device: string
  readonly event_type: string
  readonly content: Readonly<Record<string, unknown>>
}
/** What a send resolves to once the event is durably committed. */
export interface SendResult {
  readonly event_id: string
  readonly seq: number
}
/** A send was committed (also for outbox entries of an earlier client instance). */
export interface SentNotice extends SendResult {
  readonly txn_id: string
}
/** A send to a remote room was accepted by our server and waits for the room's owner. */
export interface PendingNotice {
  readonly txn_id: string
  readonly event_id: string
}
/** A send failed for good and left the outbox. */
export interface SendFailure {
  readonly txn_id: string
  /** Known when the entry was still in the outbox. */
  readonly room?: string
  /** Known when the entry was still in the outbox. */
  readonly event_type?: string
  /** Usually an {@link ApiError} (`P_FORBIDDEN`, `P_NOT_FOUND`, `P_BAD_REQUEST`, `P_TOO_LARGE`, ...). */
  readonly error: Error
}
/** The server's greeting on a new connection. */
export type ReadyInfo = Omit<ReadyFrame, 'type'>
/** Why the session ended: the server refused the tokens, or the store holds no session. */
export interface SessionEnd {
  readonly error: Error
}

/** Events of {@link ParleyClient} and their payloads. */
export interface ParleyClientEvents {
  /** A room event, in stream order. */
  event: IncomingEvent
  /** Typing state of a room. */
  typing: TypingUpdate
  /** A read receipt. */
  receipt: ReceiptUpdate
  /** A presence change. */
  presence: PresenceUpdate
  /** Someone who shares a room with the user (or the user) published a new device list: query it again. */
  keys_changed: { readonly user_id: string }
  /**
   * A to-device message. It is acknowledged (and deleted on the server) right after the listeners
   * ran: a listener must have stored what it needs by then. It may come again after a reconnect if
   * the acknowledgement was lost: dedupe by `id`.
   */
  to_device: ToDeviceMessage
  /** A send was committed. */
  sent: SentNotice
  /** A send waits for a remote room's owner. */
  pending: PendingNotice
  /** A send failed permanently (its promise, if any, rejects with the same error). */
  send_failed: SendFailure
  /** The connection state changed. */
  status: ConnectionStatus
  /** A connection was authenticated. */
  ready: ReadyInfo
  /** Something went wrong that the client handled: an invalid server frame, a server error without `txn_id`, a store failure. */
  error: Error
  /** The tokens were refused and could not be refreshed: sign in again. The client has stopped. */
  session_ended: SessionEnd
}

/** Options of {@link ParleyClient}. */
export interface ParleyClientOptions {
  /** The homeserver's base URL, e.g. `https://chat.acme.example`. */
  readonly baseUrl: string
  /** Persistence for the session, cursor, outbox and drafts. */
  readonly store: ClientStore
  /** `globalThis.WebSocket` in browsers, `WebSocket` from the `ws` package in Node. */
  readonly WebSocket: WebSocketConstructor
  /** Defaults to the global `fetch`. */
  readonly fetch?: FetchLike
  /** Uniform in `[0, 1)` for backoff jitter; defaults to `Math.random`. */
  readonly random?: () => number
  /** Time and timers; defaults to the system clock. */
  readonly clock?: Clock
  /** Reconnection backoff; defaults to {@link DEFAULT_BACKOFF} (500 ms doubling, capped at 30 s). */
  readonly backoff?: BackoffOptions
  /** Sends a `ping` when nothing was sent, or nothing received, for this long; default 25 s. */
  readonly pingIntervalMs?: number
  /** Treats a connection with no frame received for this long as dead; default 60 s. */
  readonly deadAfterMs?: number
  /**
   * Most sends on the wire without an answer; default 50. Flushing a long outbox at once would only
   * collect rate-limit refusals (and the server disconnects a device refused too often in a row).
   */
  readonly maxInFlight?: number
}

/** Options of {@link ParleyClient.register} and {@link ParleyClient.login}. */
export type SignInClientOptions = Omit<ParleyClientOptions, 'baseUrl'> & SignInOptions

/** Options of {@link ParleyClient.send}. */
export interface SendOptions {
  /** Use this transaction id (from {@link newTxnId}) instead of a fresh one, e.g. to key a local echo. */
  readonly txnId?: string
}

/** Errors of sends that are worth retrying: nothing was stored, try again later. */
const RETRYABLE = new Set(['P_LIMIT_EXCEEDED', 'P_STORAGE', 'P_UNAVAILABLE'])
/** Wait before retrying when the server did not say how long. */
const DEFAULT_RETRY_MS = 1000

/** A fresh transaction id: 128 random bits as base64url (22 characters). */
export function newTxnId(): string {
  return toBase64Url(randomBytes(16))
}

interface Deferred<T> {
  readonly promise: Promise<T>
  resolve(value: T): void
  reject(error: Error): void
}

/** A promise with its settle functions; its rejection never counts as unhandled (each has an event too). */
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: Error) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  promise.catch(() => {})
  return { promise, resolve, reject }
}

/** One WebSocket and what happened on it. */
interface Connection {
  readonly ws: WebSocketLike
  /** The access token sent in `auth`, to tell a stale token from a refreshed one. */
  readonly token: string
  ready: boolean
  /** The first sync finished: live events are delivered and sends go out. */
  synced: boolean
  /** Live events that arrived during the first sync, delivered once it is done. */
  readonly buffered: EventFrame[]
  /** Transactions sent on this connection and not bounced (so they are not sent twice). */
  readonly sent: Set<string>
  /** Transactions sent on this connection and not answered yet (`sent`, `pending` or `error`). */
  readonly inFlight: Set<string>
  /** Outbox entries are waiting for a free slot or the end of a pause: pump when one frees up. */
  backlog: boolean
  /** When we last sent and last received a frame (clock ms). */
  lastSentAt: number
  lastReceivedAt: number
  pingTimer: TimerHandle | undefined
  deadTimer: TimerHandle | undefined
}

/**
 * A Parley client. Typical use:
 *
 * ```ts
 * const client = await ParleyClient.login(url, 'alice', 'secret', { store: new MemoryStore(), WebSocket })
 * client.on('event', ({ event }) => render(event))
 * await client.connect()
 * await client.send(roomId, 'm.message', { body: 'hello' })
 * ```
 */
export class ParleyClient extends TypedEmitter<ParleyClientEvents> {
  /** The REST API, sharing this client's store and session. */
  readonly api: HttpApi
  /** Where the session, cursor, outbox and drafts live. */
  readonly store: ClientStore

  readonly #WebSocket: WebSocketConstructor
  readonly #url: string
  readonly #clock: Clock
  readonly #random: () => number
  readonly #backoff: BackoffOptions
  readonly #pingIntervalMs: number
  readonly #deadAfterMs: number
  readonly #maxInFlight: number

  #status: ConnectionStatus = 'offline'
  /** `connect()` was called and neither `close()` nor the end of the session followed. */
  #running = false
  #ended = false
  #loggingOut = false
  #conn: Connection | null = null
  #online: Deferred<void> | null = null
  #reconnectTimer: TimerHandle | undefined
  #attempt = 0
  #refreshTried = false
  #cursor = 0
  /** Frame handling and transmissions run one at a time, in order, across awaits on the store. */
  #queue: Promise<void> = Promise.resolve()
  readonly #waiters = new Map<string, Deferred<SendResult>>()
  /** `sendToDevice` calls waiting for `to_device_sent`, by txn id. */
  readonly #toDeviceWaiters = new Map<string, Deferred<void>>()
  #toDeviceHandler: ((message: ToDeviceMessage) => Promise<void>) | null = null
  /** To-device messages are handled one at a time, in order, and acknowledged after their handler. */
  #toDeviceChain: Promise<void> = Promise.resolve()
  #pausedUntil = 0
  #pauseTimer: TimerHandle | undefined
  #pingId = 0

  /** Creates a client; nothing happens on the network until {@link ParleyClient.connect} or an `api` call. */
  constructor(options: ParleyClientOptions) {
    super()
    this.store = options.store
    this.#WebSocket = options.WebSocket
    this.#url = webSocketUrl(options.baseUrl)
    this.#clock = options.clock ?? systemClock
    this.#random = options.random ?? Math.random
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF
    this.#pingIntervalMs = options.pingIntervalMs ?? 25_000
    this.#deadAfterMs = options.deadAfterMs ?? 60_000
    this.#maxInFlight = options.maxInFlight ?? 50
    this.api = new HttpApi({
      baseUrl: options.baseUrl,
      store: options.store,
      clock: this.#clock,
      ...(options.fetch ? { fetch: options.fetch } : {}),
      onSessionEnded: (error) => {
        if (!this.#loggingOut) this.#endSession(error)
      },
    })
  }

  /** Creates an account, stores its session and returns a client for it (not yet connected). */
  static async register(
    baseUrl: string,
    username: string,
    password: string,
    options: SignInClientOptions,
  ): Promise<ParleyClient> {
    const client = new ParleyClient({ ...options, baseUrl })
    await client.api.register(username, password, options)
    return client
  }

  /** Signs in, stores the session and returns a client for it (not yet connected). */
  static async login(
    baseUrl: string,
    username: string,
    password: string,
    options: SignInClientOptions,
  ): Promise<ParleyClient> {
    const client = new ParleyClient({ ...options, baseUrl })
    await client.api.login(username, password, options)
    return client
  }

  /** A client for the session already in `options.store`, or `null` if it holds none. */
  static async restore(options: Omit<ParleyClientOptions, 'baseUrl'>): Promise<ParleyClient | null> {
    const session = await options.store.getSession()
    return session === null ? null : new ParleyClient({ ...options, baseUrl: session.base_url })
  }

  /** The connection state. */
  get status(): ConnectionStatus {
    return this.#status
  }

  /** The stream position up to which events were delivered. */
  get cursor(): number {
    return this.#cursor
  }

  /**
   * Opens the live connection and keeps it open (reconnecting with backoff) until {@link close}.
   * Resolves the first time the client is online: authenticated, caught up, outbox flushed. Rejects
   * with {@link ClientClosedError} if the client is closed or the session ends first; network
   * failures do not reject, they are retried. Calling it again while running returns the same promise.
   */
  connect(): Promise<void> {
    if (this.#running && this.#online) return this.#online.promise
    this.#running = true
    this.#ended = false
    const online = deferred<void>()
    this.#online = online
    this.#enqueue(async () => {
      this.#cursor = await this.store.getCursor()
    })
    this.#enqueue(() => this.#open())
    return online.promise
  }

  /**
   * What the platform knows about the network (a browser's `online` / `offline` events). Offline
   * drops the connection at once (an emulated or real network loss may leave the socket looking
   * open until the dead-connection timer fires) and shows `offline`; online reconnects now, from
   * the base backoff delay, instead of at the end of the current delay. Sends keep queueing in the
   * outbox either way.
   */
  networkChanged(online: boolean): void {
    if (!this.#running) return
    if (!online) {
      if (this.#conn) this.#lost(this.#conn)
      return
    }
    if (this.#conn !== null) return
    this.#attempt = 0
    this.#clearTimer(this.#reconnectTimer)
    this.#reconnectTimer = undefined
    this.#enqueue(() => this.#open())
  }

  /**
   * Stops: closes the socket and clears every timer. Sends still waiting reject with
   * {@link ClientClosedError} but stay in the outbox, so the next connection resends them.
   */
  close(): void {
    this.#stop('closed')
  }

  /** Closes the client, revokes this device's tokens and clears the store (unsent outbox entries included). */
  async logout(): Promise<void> {
    this.close()
    this.#loggingOut = true
    try {
      await this.api.logout()
    } finally {
      this.#loggingOut = false
    }
  }

  /**
   * Sends an event. It is stored in the outbox first, sent now if online (else after the next sync),
   * and resent with the same `txn_id` after reconnects and restarts until acknowledged.
   *
   * @returns The committed event's id and position. Rejects with {@link ApiError} if the server
   * refuses it for good (also emitted as `send_failed`), with {@link ClientClosedError} on
   * {@link close} (the entry stays in the outbox), or with a TypeError for invalid arguments.
   * Rejections other than the TypeError never count as unhandled: fire-and-forget callers can rely
   * on the events.
   */
  send(
    room: string,
    eventType: string,
    content: Record<string, unknown>,
    options: SendOptions = {},
  ): Promise<SendResult> {
    const txnId = options.txnId ?? newTxnId()
    const frame = { type: 'send', txn_id: txnId, room, event_type: eventType, content } as const
    const checked = SendFrame.safeParse(frame)
    if (!checked.success)
      return Promise.reject(new TypeError(`invalid send: ${describeZodError(checked.error)}`))
    if (this.#waiters.has(txnId)) return Promise.reject(new TypeError(`txn_id ${txnId} is already waiting`))
    const entry: OutboxEntry = {
      txn_id: txnId,
      room,
      event_type: eventType,
      content,
      created_ts: this.#clock.now(),
    }
    const waiter = deferred<SendResult>()
    this.#waiters.set(txnId, waiter)
    this.store.putOutbox(entry).then(
      () =>
        this.#enqueue(async () => {
          const conn = this.#conn
          if (!conn?.synced || conn.sent.has(txnId)) return
          // Behind earlier entries or out of slots: the pump sends it in outbox order.
          if (conn.backlog || this.#paused() || conn.inFlight.size >= this.#maxInFlight) conn.backlog = true
          else this.#transmitEntry(conn, entry)
        }),
      (error: unknown) => {
        const failure = error instanceof Error ? error : new Error(String(error))
        this.#waiters.delete(txnId)
        this.emit('send_failed', { txn_id: txnId, room, event_type: eventType, error: failure })
        waiter.reject(failure)
      },
    )
    return waiter.promise
  }

  /**
   * Sets the one handler that must finish with each to-device message before it is acknowledged (and
   * deleted on the server): end-to-end encryption stores room keys here. Messages reach it one at a
   * time, in order; the `to_device` event is emitted after it. Pass null to remove it.
   */
  setToDeviceHandler(handler: ((message: ToDeviceMessage) => Promise<void>) | null): void {
    this.#toDeviceHandler = handler
  }

  /** Tells the room whether the user is typing. Returns false (and sends nothing) when not connected. */
  typing(room: string, typing: boolean): boolean {
    return this.#sendEphemeral(TypingFrame, { type: 'typing', room, typing })
  }

  /** Marks the room read up to and including `eventId`. Returns false when not connected. */
  receipt(room: string, eventId: string): boolean {
    return this.#sendEphemeral(ReceiptFrame, { type: 'receipt', room, event_id: eventId })
  }

  /**
   * Sends a to-device message (`messages[user][device or "*"] = content`); resolves once the server
   * stored it durably (for users of other servers: in its outbox). Rejects when not connected, or with
   * the server's error.
   */
  sendToDevice(eventType: string, messages: ToDeviceFrame['messages']): Promise<void> {
    const frame: ToDeviceFrame = {
      type: 'to_device',
      txn_id: newTxnId(),
      event_type: eventType,
      messages,
    }
    const checked = ToDeviceFrame.safeParse(frame)
    if (!checked.success) throw new TypeError(`invalid to_device: ${describeZodError(checked.error)}`)
    const conn = this.#conn
    if (conn?.ready !== true || !this.#transmit(conn, frame))
      return Promise.reject(new ClientClosedError('closed', frame.txn_id))
    const waiter = deferred<void>()
    this.#toDeviceWaiters.set(frame.txn_id, waiter)
    return waiter.promise
  }

  /** Sets the user's presence. Returns false when not connected. */
  presence(status: PresenceStatus): boolean {
    return this.#sendEphemeral(PresenceFrame, { type: 'presence', status })
  }

  // ---- connection lifecycle ----

  async #open(): Promise<void> {
    if (!this.#running || this.#conn !== null) return
    this.#setStatus('connecting')
    let session
    try {
      session = await this.store.getSession()
    } catch (error) {
      this.#report(error)
      this.#scheduleReconnect()
      return
    }
    if (!this.#running || this.#conn !== null) return
    if (session === null) {
      this.#endSession(new NoSessionError())
      return
    }
    if (session.expires_at <= this.#clock.now() && !this.#refreshTried) {
      // Known to be expired: refresh first instead of having the server refuse it.
      this.#refreshAndReopen(
        session.access_token,
        new ApiError('P_UNKNOWN_TOKEN', 401, 'access token expired'),
      )
      return
    }
    let ws: WebSocketLike
    try {
      ws = new this.#WebSocket(this.#url)
    } catch (error) {
      this.#report(error)
      this.#scheduleReconnect()
      return
    }
    const conn: Connection = {
      ws,
      token: session.access_token,
      ready: false,
      synced: false,
      buffered: [],
      sent: new Set(),
      inFlight: new Set(),
      backlog: false,
      lastSentAt: this.#clock.now(),
      lastReceivedAt: this.#clock.now(),
      pingTimer: undefined,
      deadTimer: undefined,
    }
    this.#conn = conn
    this.#armDeadTimer(conn)
    this.#armPingTimer(conn)
    ws.onopen = () => {
      if (this.#conn === conn) this.#transmit(conn, { type: 'auth', token: conn.token })
    }
    ws.onmessage = (message) => {
      if (this.#conn !== conn) return
      conn.lastReceivedAt = this.#clock.now()
      this.#armDeadTimer(conn)
      const data = message.data
      this.#enqueue(() => this.#onText(conn, data))
    }
    ws.onclose = (event) => {
      if (this.#conn !== conn) return
      if (event.code === CLOSE_CODES.UNAUTHORIZED) {
        this.#authFailed(conn, new ApiError('P_UNKNOWN_TOKEN', 401, event.reason || 'access token refused'))
      } else {
        this.#lost(conn)
      }
    }
    // A `close` event follows every `error`; make sure the socket is on its way down.
    ws.onerror = () => {
      if (this.#conn === conn) closeQuietly(ws)
    }
  }

  /** Detaches and closes a connection; its late callbacks and queued frames are ignored. */
  #drop(conn: Connection): void {
    if (this.#conn === conn) this.#conn = null
    this.#clearTimer(conn.pingTimer)
    this.#clearTimer(conn.deadTimer)
    conn.pingTimer = conn.deadTimer = undefined
    const noop = () => {}
    // No-ops rather than null: the ws package throws on an `error` event nobody listens to.
    conn.ws.onopen = conn.ws.onmessage = conn.ws.onclose = conn.ws.onerror = noop
    closeQuietly(conn.ws)
    // Whether the server stored them is unknown: the caller decides whether to send again.
    for (const [txnId, waiter] of this.#toDeviceWaiters) waiter.reject(new ClientClosedError('closed', txnId))
    this.#toDeviceWaiters.clear()
  }

  #lost(conn: Connection): void {
    this.#drop(conn)
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    if (!this.#running || this.#reconnectTimer !== undefined) return
    this.#setStatus('offline')
    const delay = backoffDelay(this.#attempt, this.#random, this.#backoff)
    this.#attempt++
    this.#reconnectTimer = this.#clock.setTimeout(() => {
      this.#reconnectTimer = undefined
      this.#enqueue(() => this.#open())
    }, delay)
  }

  /** The token was refused: refresh it once and reconnect, else end the session. */
  #authFailed(conn: Connection, error: ApiError): void {
    this.#drop(conn)
    this.#refreshAndReopen(conn.token, error)
  }

  #refreshAndReopen(staleToken: string, error: ApiError): void {
    if (!this.#running) return
    if (this.#refreshTried) {
      this.#endSession(error)
      return
    }
    this.#refreshTried = true
    this.#setStatus('connecting')
    this.api.refresh(staleToken).then(
      () => this.#enqueue(() => this.#open()),
      (refreshError: unknown) => {
        if (!this.#running) return
        if (refreshError instanceof NoSessionError) return this.#endSession(refreshError)
        if (refreshError instanceof ApiError && refreshError.status === 401)
          return this.#endSession(refreshError)
        // The refresh itself did not get through: try again later, refresh included.
        this.#refreshTried = false
        this.#report(refreshError)
        this.#scheduleReconnect()
      },
    )
  }

  #endSession(error: Error): void {
    if (this.#ended) return
    this.#ended = true
    this.#stop('session_ended')
    this.emit('session_ended', { error })
  }

  #stop(reason: 'closed' | 'session_ended'): void {
    this.#running = false
    this.#clearTimer(this.#reconnectTimer)
    this.#clearTimer(this.#pauseTimer)
    this.#reconnectTimer = this.#pauseTimer = undefined
    this.#pausedUntil = 0
    if (this.#conn) this.#drop(this.#conn)
    this.#setStatus('offline')
    const waiters = [...this.#waiters]
    this.#waiters.clear()
    for (const [txnId, waiter] of waiters) waiter.reject(new ClientClosedError(reason, txnId))
    this.#online?.reject(new ClientClosedError(reason))
    this.#online = null
  }

  // ---- incoming frames ----

  async #onText(conn: Connection, data: unknown): Promise<void> {
    if (this.#conn !== conn) return
    if (typeof data !== 'string') {
      this.#report(new ProtocolError('binary frame dropped: the protocol is JSON text'))
      return
    }
    const parsed = parseJson(ServerFrame, data)
    if (!parsed.ok) {
      this.#report(new ProtocolError(`invalid server frame dropped: ${parsed.error.message}`))
      return
    }
    const frame = parsed.value
    switch (frame.type) {
      case 'ready':
        return this.#onReady(conn, frame)
      case 'sync':
        return this.#onSyncPage(conn, frame.events, frame.next, frame.done)
      case 'event':
        if (conn.synced) return this.#deliverLive(frame)
        conn.buffered.push(frame)
        return
      case 'sent':
        return this.#onSent(conn, frame.txn_id, { event_id: frame.event_id, seq: frame.seq })
      case 'pending':
        // Our server holds it durably now; it stays in the outbox until `sent`, but frees its slot.
        conn.inFlight.delete(frame.txn_id)
        this.emit('pending', { txn_id: frame.txn_id, event_id: frame.event_id })
        if (conn.backlog) await this.#pump(conn)
        return
      case 'typing':
        this.emit('typing', { room: frame.room, user_ids: frame.user_ids })
        return
      case 'receipt':
        this.emit('receipt', {
          room: frame.room,
          user_id: frame.user_id,
          event_id: frame.event_id,
          seq: frame.seq,
        })
        return
      case 'presence':
        this.emit('presence', { user_id: frame.user_id, status: frame.status })
        return
      case 'keys_changed':
        this.emit('keys_changed', { user_id: frame.user_id })
        return
      case 'to_device': {
        const { type: _type, ...message } = frame
        const handler = this.#toDeviceHandler
        if (!handler) {
          this.emit('to_device', message)
          this.#transmit(conn, { type: 'to_device_ack', upto: frame.id })
          return
        }
        // A room key must be stored before the server may delete it: acknowledge after the handler.
        // A handler that fails is reported and acknowledged all the same (an envelope that cannot be
        // opened now will not open later), so one bad message cannot block the inbox.
        this.#toDeviceChain = this.#toDeviceChain.then(async () => {
          try {
            await handler(message)
          } catch (error) {
            this.#report(error)
          }
          this.emit('to_device', message)
          if (this.#conn === conn) this.#transmit(conn, { type: 'to_device_ack', upto: frame.id })
        })
        return
      }
      case 'to_device_sent': {
        const waiter = this.#toDeviceWaiters.get(frame.txn_id)
        this.#toDeviceWaiters.delete(frame.txn_id)
        waiter?.resolve()
        return
      }
      case 'pong':
        return
      case 'error':
        return this.#onError(conn, frame)
    }
  }

  #onReady(conn: Connection, frame: ReadyFrame): void {
    if (conn.ready) return
    conn.ready = true
    this.#attempt = 0
    this.#refreshTried = false
    this.#setStatus('syncing')
    if (frame.stream_head < this.#cursor) {
      // Our position is ahead of the server's whole stream: it lost data or is not the server we
      // synced with. Resyncing from its head beats waiting for positions we already passed.
      this.#report(
        new ProtocolError(
          `server stream head ${frame.stream_head} is behind cursor ${this.#cursor}; resyncing`,
        ),
      )
      this.#cursor = frame.stream_head
    }
    const { type: _type, ...info } = frame
    this.emit('ready', info)
    this.#transmit(conn, { type: 'sync', since: this.#cursor })
  }

  async #onSyncPage(
    conn: Connection,
    events: readonly ClientEvent[],
    next: number,
    done: boolean,
  ): Promise<void> {
    const ordered = [...events].sort((a, b) => a.stream_pos - b.stream_pos)
    for (const event of ordered) {
      if (event.stream_pos <= this.#cursor) continue
      this.#cursor = event.stream_pos
      this.emit('event', { event, live: false })
    }
    this.#cursor = Math.max(this.#cursor, next)
    await this.#saveCursor()
    if (this.#conn !== conn) return
    if (!done) {
      this.#transmit(conn, { type: 'sync', since: this.#cursor })
      return
    }
    if (conn.synced) return
    conn.synced = true
    for (const frame of conn.buffered.splice(0)) await this.#deliverLive(frame)
    if (this.#conn !== conn) return
    this.#setStatus('online')
    await this.#pump(conn)
    this.#online?.resolve()
  }

  async #deliverLive(frame: EventFrame): Promise<void> {
    const { event } = frame
    if (frame.stream_pos !== event.stream_pos || frame.room !== event.room || frame.seq !== event.seq) {
      this.#report(
        new ProtocolError('event frame dropped: its room, seq or stream_pos disagree with its event'),
      )
      return
    }
    if (frame.stream_pos <= this.#cursor) return
    this.#cursor = frame.stream_pos
    this.emit('event', { event, live: true })
    await this.#saveCursor()
  }

  async #onSent(conn: Connection, txnId: string, result: SendResult): Promise<void> {
    try {
      await this.store.removeOutbox(txnId)
    } catch (error) {
      this.#report(error)
    }
    conn.sent.delete(txnId)
    conn.inFlight.delete(txnId)
    this.emit('sent', { txn_id: txnId, ...result })
    const waiter = this.#waiters.get(txnId)
    this.#waiters.delete(txnId)
    waiter?.resolve(result)
    if (conn.backlog) await this.#pump(conn)
  }

  async #onError(conn: Connection, frame: ErrorFrame): Promise<void> {
    const error = ApiError.fromFrame(frame)
    if (
      frame.errcode === 'P_UNKNOWN_TOKEN' ||
      (frame.errcode === 'P_UNAUTHORIZED' && frame.txn_id === undefined)
    ) {
      this.#authFailed(conn, error)
      return
    }
    const txnId = frame.txn_id
    if (txnId === undefined) {
      this.#report(error)
      return
    }
    const toDevice = this.#toDeviceWaiters.get(txnId)
    if (toDevice) {
      this.#toDeviceWaiters.delete(txnId)
      toDevice.reject(error)
      return
    }
    conn.sent.delete(txnId)
    conn.inFlight.delete(txnId)
    if (RETRYABLE.has(frame.errcode)) {
      conn.backlog = true
      this.#pause(frame.retry_after_ms ?? DEFAULT_RETRY_MS)
      return
    }
    let entry: OutboxEntry | undefined
    try {
      entry = (await this.store.listOutbox()).find((e) => e.txn_id === txnId)
      if (entry) await this.store.removeOutbox(txnId)
    } catch (storeError) {
      this.#report(storeError)
    }
    const waiter = this.#waiters.get(txnId)
    this.#waiters.delete(txnId)
    if (!entry && !waiter) {
      this.#report(error)
    } else {
      this.emit('send_failed', {
        txn_id: txnId,
        ...(entry ? { room: entry.room, event_type: entry.event_type } : {}),
        error,
      })
      waiter?.reject(error)
    }
    if (conn.backlog) await this.#pump(conn)
  }

  // ---- outgoing frames ----

  /**
   * Sends outbox entries not yet sent on this connection, oldest first, while fewer than
   * `maxInFlight` are unanswered; marks a backlog when it has to stop early.
   */
  async #pump(conn: Connection): Promise<void> {
    if (this.#conn !== conn || !conn.synced || this.#paused()) return
    conn.backlog = false
    let entries: OutboxEntry[]
    try {
      entries = await this.store.listOutbox()
    } catch (error) {
      conn.backlog = true
      this.#report(error)
      return
    }
    for (const entry of entries) {
      if (this.#conn !== conn) return
      if (conn.sent.has(entry.txn_id)) continue
      if (this.#paused() || conn.inFlight.size >= this.#maxInFlight) {
        conn.backlog = true
        return
      }
      this.#transmitEntry(conn, entry)
    }
  }

  /** Holds sends back for `ms` (rate limited or server busy), then flushes the outbox in order. */
  #pause(ms: number): void {
    const until = this.#clock.now() + ms
    if (until <= this.#pausedUntil) return
    this.#pausedUntil = until
    this.#clearTimer(this.#pauseTimer)
    this.#pauseTimer = this.#clock.setTimeout(() => {
      this.#pauseTimer = undefined
      this.#pausedUntil = 0
      const conn = this.#conn
      if (conn) this.#enqueue(() => this.#pump(conn))
    }, ms)
  }

  #paused(): boolean {
    return this.#pauseTimer !== undefined
  }

  #transmitEntry(conn: Connection, entry: OutboxEntry): void {
    const frame: ClientFrame = {
      type: 'send',
      txn_id: entry.txn_id,
      room: entry.room,
      event_type: entry.event_type,
      content: entry.content,
    }
    if (!this.#transmit(conn, frame)) return
    conn.sent.add(entry.txn_id)
    conn.inFlight.add(entry.txn_id)
  }

  #sendEphemeral(schema: z.ZodType, frame: ClientFrame): boolean {
    const checked = schema.safeParse(frame)
    if (!checked.success) throw new TypeError(`invalid ${frame.type}: ${describeZodError(checked.error)}`)
    const conn = this.#conn
    return conn?.ready === true && this.#transmit(conn, frame)
  }

  #transmit(conn: Connection, frame: ClientFrame): boolean {
    if (conn.ws.readyState !== WS_OPEN) return false
    try {
      conn.ws.send(JSON.stringify(frame))
    } catch (error) {
      this.#report(error)
      return false
    }
    conn.lastSentAt = this.#clock.now()
    return true
  }

  // ---- timers ----

  /**
   * Every ping interval, pings if the link was quiet in either direction: a quiet client would trip
   * the server's idle timeout, and a quiet server would trip our dead-connection check.
   */
  #armPingTimer(conn: Connection): void {
    conn.pingTimer = this.#clock.setTimeout(() => {
      conn.pingTimer = undefined
      if (this.#conn !== conn) return
      const now = this.#clock.now()
      const idle = Math.max(now - conn.lastSentAt, now - conn.lastReceivedAt)
      if (idle >= this.#pingIntervalMs && conn.ready)
        this.#transmit(conn, { type: 'ping', id: String(++this.#pingId) })
      this.#armPingTimer(conn)
    }, this.#pingIntervalMs)
  }

  /** A connection that has been silent this long is dead even if TCP has not noticed. */
  #armDeadTimer(conn: Connection): void {
    this.#clearTimer(conn.deadTimer)
    conn.deadTimer = this.#clock.setTimeout(() => {
      conn.deadTimer = undefined
      if (this.#conn === conn) this.#lost(conn)
    }, this.#deadAfterMs)
  }

  #clearTimer(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#clock.clearTimeout(handle)
  }

  // ---- helpers ----

  #enqueue(task: () => void | Promise<void>): void {
    this.#queue = this.#queue.then(task).catch((error: unknown) => this.#report(error))
  }

  async #saveCursor(): Promise<void> {
    try {
      await this.store.setCursor(this.#cursor)
    } catch (error) {
      this.#report(error)
    }
  }

  #setStatus(status: ConnectionStatus): void {
    if (this.#status === status) return
    this.#status = status
    this.emit('status', status)
  }

  #report(error: unknown): void {
    this.emit('error', error instanceof Error ? error : new Error(String(error)))
  }
}

function closeQuietly(ws: WebSocketLike): void {
  try {
    ws.close(1000)
  } catch {
    // Already closed, or closing a socket that never opened: nothing left to do.
  }
}
