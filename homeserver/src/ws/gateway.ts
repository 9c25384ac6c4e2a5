/**
 * The client WebSocket gateway (`/api/v1/ws`): parse frame -> service call -> reply.
 *
 * Every socket must authenticate with its first frame within `authTimeoutMs`; a heartbeat pings every
 * `heartbeatMs`, closes sockets that missed a pong, and re-validates sessions (expiry, revocation made
 * by another process such as the admin CLI). Revocations made in this process close sockets at once.
 */
import type { WSContext, WSEvents } from 'hono/ws'
import type { WebSocket } from 'ws'
import { CLOSE_CODES, ParleyError } from '@parley/protocol'
import { ClientFrame, parseJson, type ClientFrame as Frame } from '@parley/protocol/schema'
import type { LiveConnection, Services, Session } from '../services/index.ts'
import { TokenBucket } from '../services/rate-limit.ts'

const OPEN = 1

export class Gateway {
  readonly #conns = new Set<ClientConnection>()
  readonly #perIp = new Map<string, number>()
  readonly #heartbeat: ReturnType<typeof setInterval>
  #drained: (() => void) | null = null
  /** While a committed batch is delivered, sockets are corked so each gets one write per batch. */
  #delivering = false
  #batch = 0
  readonly #corked = new Set<WebSocket>()

  constructor(readonly services: Services) {
    services.accounts.onRevoke((ids) =>
      services.hub.closeDevices(ids, CLOSE_CODES.UNAUTHORIZED, 'session revoked'),
    )
    services.sequencer.onDelivery({
      start: () => {
        this.#delivering = true
        this.#batch++
      },
      end: () => {
        this.#delivering = false
        for (const ws of this.#corked) (ws as unknown as { _socket?: { uncork(): void } })._socket?.uncork()
        this.#corked.clear()
      },
    })
    this.#heartbeat = setInterval(() => this.#tick(), services.config.limits.heartbeatMs)
    this.#heartbeat.unref()
  }

  get size(): number {
    return this.#conns.size
  }

  /** Number of the committed batch being delivered, or -1 outside a delivery. */
  get deliveryBatch(): number {
    return this.#delivering ? this.#batch : -1
  }

  /** Corks `ws` until the current batch is delivered, so it gets one write per batch. */
  cork(ws: WebSocket): void {
    const socket = (ws as unknown as { _socket?: { cork(): void } })._socket
    if (!socket || this.#corked.has(ws)) return
    socket.cork()
    this.#corked.add(ws)
  }

  /** Per-address connection cap, checked before the upgrade. */
  admits(ip: string): boolean {
    return (this.#perIp.get(ip) ?? 0) < this.services.config.limits.maxConnectionsPerIp
  }

  /** Handlers for one upgraded socket from `ip`. */
  handlers(ip: string): WSEvents<WebSocket> {
    let conn: ClientConnection | null = null
    return {
      onOpen: (_evt, ws) => {
        conn = new ClientConnection(this, ws.raw!)
        this.#conns.add(conn)
        this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1)
      },
      onMessage: (evt) => conn?.onFrame(evt.data),
      onClose: () => {
        if (!conn) return
        this.#conns.delete(conn)
        const n = (this.#perIp.get(ip) ?? 1) - 1
        if (n <= 0) this.#perIp.delete(ip)
        else this.#perIp.set(ip, n)
        conn.closed()
        if (this.#conns.size === 0) this.#drained?.()
      },
    }
  }

  #tick(): void {
    for (const conn of this.#conns) conn.heartbeat()
  }

  /** Stops the heartbeat, closes every socket with 1001 (going away) and resolves once all are gone. */
  close(): Promise<void> {
    clearInterval(this.#heartbeat)
    if (this.#conns.size === 0) return Promise.resolve()
    const gone = new Promise<void>((resolve) => (this.#drained = resolve))
    for (const conn of this.#conns) conn.close(1001, 'server shutting down')
    return gone
  }
}

class ClientConnection implements LiveConnection {
  session: Session | null = null
  live = false
  #missedPongs = 0
  #closed = false
  #refusedInARow = 0
  /** Bytes still unsent when the current delivery batch reached this connection (see send). */
  #backlogAtBatch = 0
  #batchSeen = -1
  readonly #authTimer: ReturnType<typeof setTimeout>
  /** Frames of any kind: bounds the parsing work one socket can cause. */
  readonly #frames: TokenBucket

  constructor(
    private readonly gateway: Gateway,
    private readonly ws: WebSocket,
  ) {
    const { limits } = gateway.services.config
    this.#frames = new TokenBucket(gateway.services.clock, limits.frameBurst, limits.framesPerSecond)
    this.#authTimer = setTimeout(
      () => this.close(CLOSE_CODES.UNAUTHORIZED, 'authentication timeout'),
      gateway.services.config.limits.authTimeoutMs,
    )
    this.#authTimer.unref()
    ws.on('pong', () => (this.#missedPongs = 0))
  }

  get userId(): string {
    return this.session!.userId
  }
  get deviceId(): string {
    return this.session!.deviceId
  }

  send(frame: string): void {
    if (this.#closed || this.ws.readyState !== OPEN) return
    // A reader that stopped reading must not make us buffer without bound (WS-4). It resumes with sync.
    // What was still unsent before this batch decides, not the batch itself: one committed batch may
    // queue more than the limit at once (corked) to a reader that keeps up.
    let backlog = this.ws.bufferedAmount
    const batch = this.gateway.deliveryBatch
    if (batch >= 0) {
      if (this.#batchSeen !== batch) {
        this.#batchSeen = batch
        this.#backlogAtBatch = backlog
        this.gateway.cork(this.ws)
      }
      backlog = this.#backlogAtBatch
    }
    if (backlog > this.gateway.services.config.limits.sendBufferBytes) {
      this.close(CLOSE_CODES.SLOW_CONSUMER, 'too slow: reconnect and sync')
      return
    }
    this.ws.send(frame)
  }

  close(code: number, reason: string): void {
    if (this.#closed) return
    this.#closed = true
    this.live = false
    clearTimeout(this.#authTimer)
    this.ws.close(code, reason)
    // A peer that never completes the closing handshake is cut off.
    setTimeout(() => this.ws.terminate(), 2000).unref()
  }

  /** The socket is gone: forget it everywhere. */
  closed(): void {
    this.#closed = true
    this.live = false
    clearTimeout(this.#authTimer)
    if (!this.session) return
    const { hub, ephemeral } = this.gateway.services
    hub.remove(this)
    if (!hub.isOnline(this.session.userId)) ephemeral.disconnected(this.session.userId)
  }

  heartbeat(): void {
    if (this.#closed) return
    if (this.session && !this.gateway.services.accounts.stillValid(this.session)) {
      this.close(CLOSE_CODES.UNAUTHORIZED, 'session expired or revoked')
      return
    }
    // Two pings without a pong: the peer is gone (half-open) or wedged.
    if (this.#missedPongs >= 2) {
      this.#closed = true
      this.ws.terminate()
      return
    }
    this.#missedPongs++
    this.ws.ping()
  }

  #error(err: ParleyError, txnId?: string): void {
    const body: Record<string, unknown> = { type: 'error', ...err.toBody() }
    if (txnId !== undefined) body.txn_id = txnId
    this.send(JSON.stringify(body))
  }

  /** An invalid client frame. Before auth it also ends the socket: the first frame must be auth (WS-1). */
  #badFrame(err: ParleyError): void {
    this.#error(err)
    if (!this.session) this.close(CLOSE_CODES.UNAUTHORIZED, 'authenticate first')
  }

  onFrame(data: unknown): void {
    if (this.#closed) return
    // The heartbeat re-validates sessions only every tick; a frame arriving after expiry is not served (AUTH-3).
    if (this.session && this.session.accessExpiresTs <= this.gateway.services.clock.now()) {
      this.#error(new ParleyError('P_UNKNOWN_TOKEN', 'access token expired'))
      return this.close(CLOSE_CODES.UNAUTHORIZED, 'session expired')
    }
    if (!this.#frames.take()) {
      this.close(CLOSE_CODES.POLICY, 'too many frames')
      return
    }
    if (typeof data !== 'string') return this.#badFrame(new ParleyError('P_BAD_JSON', 'frames are JSON text'))
    const parsed = parseJson(ClientFrame, data)
    if (!parsed.ok) {
      return this.#badFrame(
        new ParleyError(
          parsed.error.kind === 'bad_json' ? 'P_BAD_JSON' : 'P_BAD_REQUEST',
          parsed.error.message,
        ),
      )
    }
    const frame = parsed.value
    try {
      if (!this.session) this.#authenticate(frame)
      else this.#dispatch(this.session, frame)
    } catch (err) {
      this.#fail(err, frame.type === 'send' ? frame.txn_id : undefined)
    }
  }

  #fail(err: unknown, txnId?: string): void {
    if (err instanceof ParleyError) return this.#error(err, txnId)
    this.gateway.services.log.error({ err: String(err), stack: (err as Error).stack }, 'ws handler failed')
    this.#error(new ParleyError('P_UNKNOWN', 'internal error'), txnId)
  }

  #authenticate(frame: Frame): void {
    const { services } = this.gateway
    if (frame.type !== 'auth') {
      this.#error(new ParleyError('P_UNAUTHORIZED', 'the first frame must be auth'))
      return this.close(CLOSE_CODES.UNAUTHORIZED, 'authenticate first')
    }
    const session = services.accounts.check(frame.token)
    if (!session) {
      this.#error(new ParleyError('P_UNKNOWN_TOKEN', 'unknown, expired or revoked access token'))
      return this.close(CLOSE_CODES.UNAUTHORIZED, 'bad token')
    }
    if (services.hub.connectionsOf(session.userId).size >= services.config.limits.maxConnectionsPerUser) {
      this.#error(new ParleyError('P_LIMIT_EXCEEDED', 'too many connections for this user'))
      return this.close(CLOSE_CODES.POLICY, 'too many connections')
    }
    clearTimeout(this.#authTimer)
    this.session = session
    const firstConnection = !services.hub.isOnline(session.userId)
    services.hub.add(this)
    this.send(
      JSON.stringify({
        type: 'ready',
        user_id: session.userId,
        device_id: session.deviceId,
        server_name: services.config.serverName,
        stream_head: services.sequencer.streamHead,
      }),
    )
    if (firstConnection) services.ephemeral.setPresence(session.userId, 'online')
  }

  #dispatch(session: Session, frame: Frame): void {
    const s = this.gateway.services
    switch (frame.type) {
      case 'auth':
        throw new ParleyError('P_BAD_REQUEST', 'already authenticated')
      case 'sync': {
        this.live = false
        const page = s.sync.page(
          session.userId,
          frame.since,
          Math.min(frame.limit ?? s.config.limits.syncPageSize, s.config.limits.syncPageSize),
          // Text length (UTF-16 units) approximates bytes; a quarter of the buffer leaves room for live traffic.
          s.config.limits.sendBufferBytes / 4,
        )
        this.send(page.frame)
        // Same tick as the last page: nothing committed in between can be missed or sent twice.
        if (page.done && !this.#closed) {
          this.live = true
          s.toDevice.deliver(this)
        }
        return
      }
      case 'send': {
        try {
          s.messages.checkRate(session.deviceId)
          this.#refusedInARow = 0
        } catch (err) {
          // A client that ignores the limit is cut off; a polite one just waits retry_after_ms (WS-4).
          if (++this.#refusedInARow >= s.config.limits.floodDisconnectAfter) {
            this.close(CLOSE_CODES.POLICY, 'flooding')
            return
          }
          throw err
        }
        const txnId = frame.txn_id
        // Callbacks, not a promise: the ack leaves inside the delivery bracket, in the same corked
        // write as the batch, and validation errors answer at once, in frame order.
        s.messages.sendWith(
          session,
          frame,
          (event) =>
            this.send(
              `{"type":"sent","txn_id":${JSON.stringify(txnId)},"event_id":"${event.event_id}","seq":${event.seq}}`,
            ),
          (err: unknown) => this.#fail(err, txnId),
          (eventId) =>
            this.send(`{"type":"pending","txn_id":${JSON.stringify(txnId)},"event_id":"${eventId}"}`),
        )
        return
      }
      case 'typing':
        return s.ephemeral.setTyping(session.userId, frame.room, frame.typing)
      case 'receipt':
        return s.ephemeral.receipt(session.userId, frame.room, frame.event_id)
      case 'presence':
        return s.ephemeral.requestPresence(session.userId, frame.status)
      case 'to_device': {
        s.messages.checkRate(session.deviceId)
        const txnId = frame.txn_id
        s.toDevice.send(session, frame).then(
          () => this.send(`{"type":"to_device_sent","txn_id":${JSON.stringify(txnId)}}`),
          (err: unknown) => this.#fail(err, txnId),
        )
        return
      }
      case 'to_device_ack':
        return s.toDevice.ack(session, frame.upto)
      case 'ping':
        return this.send(
          JSON.stringify(frame.id === undefined ? { type: 'pong' } : { type: 'pong', id: frame.id }),
        )
    }
  }
}

export type { WSContext }
