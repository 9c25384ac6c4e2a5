/**
 * One server-to-server link over one WebSocket (docs/federation.md, "Link" and "Link driver"): runs
 * the handshake state machine of `@parley/protocol/federation` over the socket, then the sealed
 * channel. Transport glue only: which links to keep, dial or redial is `link-manager.ts`'s business.
 *
 * Handshake frames are WebSocket text frames, everything after them binary. A link counts as up only
 * once the peer's stream header arrived: for the initiator that is the evidence that the responder
 * accepted AUTH (a refusal shows up only as a close).
 */
import type WebSocket from 'ws'
import { z } from 'zod'
import type { JsonObject, JsonValue } from '@parley/protocol'
import {
  LinkInitiator,
  LinkResponder,
  SealedChannel,
  type EstablishedLink,
  type HandshakeOptions,
  type LinkFailureReason,
} from '@parley/protocol/federation'
import type { Logger } from '../logger.ts'

/** WebSocket close codes of the link (docs/federation.md, "Failure codes"). */
export const LINK_CLOSE = {
  normal: 1000,
  goingAway: 1001,
  tooLarge: 1009,
  handshake: 4001,
  sealed: 4008,
  idle: 4009,
} as const

/** Deepest JSON nesting accepted in an application frame (DESIGN.md section 6). */
export const MAX_FRAME_DEPTH = 16

/** How long a clean close waits for the peer's FINAL, then for the socket to close. */
const CLOSE_GRACE_MS = 1000

/**
 * An application frame as delivered to handlers: a JSON object with a `type`. Its own schema is the
 * job of whoever handles that type (replication frames come later).
 */
export type AppFrame = { readonly type: string } & JsonObject

/** The frames the link itself understands, under every application frame. */
const FrameEnvelope = z.looseObject({ type: z.string().min(1).max(64) })

/** Why a link could not be established, or ended. */
export class LinkError extends Error {
  constructor(
    readonly reason: LinkFailureReason | 'closed_by_peer' | 'idle' | 'shutdown' | 'dial_failed',
    message: string,
  ) {
    super(`${reason}: ${message}`)
    this.name = 'LinkError'
  }
}

/** What `openLink` needs. */
export interface LinkSocketOptions {
  /** The handshake options (name, signer, policy, key lookup, replay cache, clock). */
  readonly handshake: HandshakeOptions
  /** Milliseconds left for the handshake, including the peer's stream header. */
  readonly timeoutMs: number
  /** Interval of sealed PINGs; a link that hears nothing for two intervals is dead. */
  readonly pingMs: number
  readonly log: Logger
}

/** Callbacks of an established link. */
export interface LinkEvents {
  frame(link: Link, frame: AppFrame): void
  /** Called once, when the socket is gone. */
  closed(link: Link, why: LinkError): void
}

type Frame = string | Uint8Array

/** Normalises a `ws` message: text as a string (ws has checked its UTF-8), binary as bytes. */
function toFrame(data: WebSocket.RawData, isBinary: boolean): Frame {
  const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
  return isBinary
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : buffer.toString('utf8')
}

/** Close reasons are at most 123 bytes; ours are short ASCII codes. */
function closeSocket(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason.slice(0, 120))
}

const closeCodeFor = (reason: LinkFailureReason): number =>
  reason === 'too_large'
    ? LINK_CLOSE.tooLarge
    : ['bad_header', 'bad_ciphertext', 'bad_tag', 'after_final'].includes(reason)
      ? LINK_CLOSE.sealed
      : LINK_CLOSE.handshake

/** True if `value` nests arrays/objects no deeper than `limit` (iterative: a deep frame cannot blow the stack). */
export function withinDepth(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!
    if (typeof node !== 'object' || node === null) continue
    if (depth > limit) return false
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1])
  }
  return true
}

/**
 * Runs the handshake on an open socket and resolves with the established link once the peer's stream
 * header arrived. On any failure (a handshake refusal, the deadline, the socket closing) it closes the
 * socket with the failure code as reason and rejects with a {@link LinkError}. `peer` is required for
 * the initiator (the server it dialled).
 */
export function openLink(ws: WebSocket, options: LinkSocketOptions, peer?: string): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    const machine =
      peer === undefined
        ? new LinkResponder(options.handshake)
        : new LinkInitiator({ ...options.handshake, peer })
    let established: EstablishedLink | null = null
    let channel: SealedChannel | null = null
    let settled = false
    let busy = false
    const queue: Frame[] = []

    const detach = () => {
      clearTimeout(deadline)
      ws.off('message', onMessage)
      ws.off('close', onClose)
      ws.off('error', onError)
    }
    const fail = (error: LinkError, closeCode: number | null) => {
      if (settled) return
      settled = true
      detach()
      machine.abort(error.message)
      channel?.dispose()
      if (closeCode !== null) closeSocket(ws, closeCode, error.reason)
      reject(error)
    }
    const onClose = (code: number, reason: Buffer) =>
      fail(
        new LinkError('closed_by_peer', `socket closed during the handshake (${code} ${reason.toString()})`),
        null,
      )
    // An 'error' is followed by 'close'; terminate so a half-dead socket does not linger.
    const onError = (error: Error) => {
      fail(new LinkError('aborted', `socket error: ${error.message}`), null)
      ws.terminate()
    }
    const onMessage = (data: WebSocket.RawData, isBinary: boolean) => {
      queue.push(toFrame(data, isBinary))
      void pump()
    }

    // Frames are fed strictly in order, one at a time: a step may await a key lookup.
    const pump = async () => {
      if (busy) return
      busy = true
      try {
        while (queue.length > 0 && !settled) await step(queue.shift()!)
      } catch (error) {
        fail(new LinkError('aborted', `handshake callback failed: ${String(error)}`), LINK_CLOSE.handshake)
      } finally {
        busy = false
      }
    }
    const step = async (frame: Frame) => {
      if (channel === null) {
        const result = await machine.receive(frame)
        if (settled) return
        if (!result.ok)
          return fail(new LinkError(result.error.reason, result.error.message), LINK_CLOSE.handshake)
        if (result.value.send !== null) ws.send(result.value.send)
        if (result.value.link !== null) {
          established = result.value.link
          const opened = SealedChannel.open(established.keys)
          channel = opened.channel
          ws.send(opened.header)
        }
        return
      }
      const input = channel.receive(frame)
      if (!input.ok)
        return fail(new LinkError(input.error.reason, input.error.message), closeCodeFor(input.error.reason))
      // The channel accepts nothing but the header first, so this is the header.
      if (input.value.kind !== 'header') return
      settled = true
      detach()
      // Frames that arrived right behind the header go to the link, in order.
      resolve(new Link(ws, established!, channel, queue.splice(0), options))
    }

    const deadline = setTimeout(
      () => fail(new LinkError('aborted', 'handshake deadline passed'), LINK_CLOSE.handshake),
      Math.max(0, options.timeoutMs),
    )
    ws.on('message', onMessage)
    ws.on('close', onClose)
    ws.on('error', onError)
    if (machine instanceof LinkInitiator) ws.send(machine.start())
  })
}

/**
 * An authenticated, sealed link. Sends `{type:"ping"}` every `pingMs` (the peer does the same, so no
 * PONG is needed); two intervals without any inbound frame mean the peer (or the path) is dead, and
 * the socket is terminated without a closing handshake (a blackholed path would never answer one).
 */
export class Link {
  readonly peer: string
  readonly role: 'initiator' | 'responder'
  /** Identifies this session on both sides (th_C). */
  readonly transcriptHash: Uint8Array
  readonly #ws: WebSocket
  readonly #channel: SealedChannel
  readonly #options: LinkSocketOptions
  #events: LinkEvents | null = null
  #pending: Frame[]
  #ping: ReturnType<typeof setInterval> | null = null
  /** Fires when nothing was heard for two ping intervals; pushed back by every inbound frame. */
  #idle: ReturnType<typeof setTimeout> | null = null
  #ending: LinkError | null = null
  #closed: Promise<void>

  constructor(
    ws: WebSocket,
    link: EstablishedLink,
    channel: SealedChannel,
    pending: Frame[],
    options: LinkSocketOptions,
  ) {
    this.peer = link.peer
    this.role = link.role
    this.transcriptHash = link.transcriptHash
    this.#ws = ws
    this.#channel = channel
    this.#options = options
    this.#pending = pending
    this.#closed = new Promise<void>((resolve) =>
      ws.once('close', (code, reason) => {
        this.#stopPing()
        this.#channel.dispose()
        const why =
          this.#ending ?? new LinkError('closed_by_peer', `socket closed (${code} ${reason.toString()})`)
        this.#ending = why
        this.#events?.closed(this, why)
        resolve()
      }),
    )
    ws.on('error', () => ws.terminate())
    ws.on('message', (data, isBinary) => {
      const frame = toFrame(data, isBinary)
      if (this.#events === null) this.#pending.push(frame)
      else this.#receive(frame)
    })
  }

  /** True until the socket is closing. */
  get open(): boolean {
    return this.#ending === null && this.#ws.readyState === this.#ws.OPEN && this.#channel.canSend
  }

  /** Bytes queued on the socket and not yet handed to the network (a peer that stops reading grows it). */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount
  }

  /** Starts delivery (frames received so far first) and the heartbeat. Called once by the manager. */
  start(events: LinkEvents): void {
    if (this.#events !== null) throw new Error('link already started')
    this.#events = events
    if (this.#ending === null) {
      const { pingMs } = this.#options
      this.#ping = setInterval(() => this.send({ type: 'ping' }), pingMs)
      this.#ping.unref()
      this.#idle = setTimeout(
        () => this.#abort(new LinkError('idle', `nothing heard for ${2 * pingMs} ms`), null),
        2 * pingMs,
      )
      this.#idle.unref()
    }
    for (const frame of this.#pending.splice(0)) this.#receive(frame)
  }

  /**
   * Stops reading the peer's frames for `ms` (the per-peer rate limit): TCP backpressure slows the
   * peer down, and nothing it sends meanwhile costs us work.
   */
  pauseFor(ms: number): void {
    if (this.#ws.isPaused || this.#ending !== null) return
    this.#ws.pause()
    setTimeout(() => {
      if (this.#ws.readyState === this.#ws.OPEN) this.#ws.resume()
    }, ms).unref()
  }

  /** Seals and sends one application frame; false if the link is closing. Throws if it is over 1 MiB. */
  send(frame: JsonObject): boolean {
    if (!this.open) return false
    this.#ws.send(this.#channel.seal(frame))
    return true
  }

  /**
   * Closes cleanly: our FINAL, a short wait for the peer's FINAL (or its close), then a normal close.
   * Resolves once the socket is closed. Idempotent.
   */
  close(reason = 'closing', why: LinkError = new LinkError('shutdown', reason)): Promise<void> {
    if (this.#ending !== null) return this.#closed
    this.#ending = why
    this.#stopPing()
    if (this.#ws.readyState !== this.#ws.OPEN) return this.#closed
    if (this.#channel.canSend) this.#ws.send(this.#channel.finish())
    const grace = setTimeout(() => closeSocket(this.#ws, LINK_CLOSE.normal, reason), CLOSE_GRACE_MS)
    const kill = setTimeout(() => this.#ws.terminate(), 2 * CLOSE_GRACE_MS)
    void this.#closed.then(() => {
      clearTimeout(grace)
      clearTimeout(kill)
    })
    return this.#closed
  }

  /** Kills the link at once (dead peer, broken frame): no FINAL, since nothing would read it. */
  #abort(why: LinkError, code: number | null): void {
    if (this.#ending === null) this.#ending = why
    this.#stopPing()
    this.#options.log.warn(
      { peer: this.peer, reason: why.reason, detail: why.message },
      'federation link failed',
    )
    if (code === null) this.#ws.terminate()
    else {
      closeSocket(this.#ws, code, why.reason)
      setTimeout(() => this.#ws.terminate(), CLOSE_GRACE_MS).unref()
    }
  }

  #receive(frame: Frame): void {
    if (this.#channel.receiveState === 'failed') return
    this.#idle?.refresh()
    const input = this.#channel.receive(frame)
    if (!input.ok) {
      return this.#abort(
        new LinkError(input.error.reason, input.error.message),
        closeCodeFor(input.error.reason),
      )
    }
    if (input.value.kind === 'final') {
      // The peer is done: answer with our FINAL unless we sent it already, then close without waiting.
      if (this.#ending === null)
        void this.close('peer finished', new LinkError('closed_by_peer', 'peer sent FINAL'))
      return closeSocket(this.#ws, LINK_CLOSE.normal, 'final')
    }
    if (input.value.kind !== 'frame') return
    let value: unknown
    try {
      value = JSON.parse(input.value.text)
    } catch {
      return this.#abort(new LinkError('bad_frame', 'frame is not JSON'), LINK_CLOSE.sealed)
    }
    const parsed = FrameEnvelope.safeParse(value)
    if (!parsed.success || !withinDepth(value, MAX_FRAME_DEPTH)) {
      return this.#abort(
        new LinkError('bad_frame', 'frame is not a typed JSON object of depth <= 16'),
        LINK_CLOSE.sealed,
      )
    }
    if (parsed.data.type === 'ping') return
    // JSON.parse output is JSON by construction; the envelope schema checked the object and its type.
    this.#events?.frame(this, toAppFrame(parsed.data))
  }

  #stopPing(): void {
    if (this.#ping !== null) clearInterval(this.#ping)
    if (this.#idle !== null) clearTimeout(this.#idle)
    this.#ping = null
    this.#idle = null
  }
}

/** Re-types the parsed envelope: every value came out of JSON.parse, so it is JSON. */
function toAppFrame(frame: z.infer<typeof FrameEnvelope>): AppFrame {
  const out: AppFrame = { type: frame.type }
  for (const [key, value] of Object.entries(frame)) if (isJson(value)) out[key] = value
  return out
}

function isJson(value: unknown): value is JsonValue {
  return (
    value === null ||
    typeof value === 'string' ||
    typeof value === 'number' ||
    typeof value === 'boolean' ||
    typeof value === 'object'
  )
}
