/**
 * A fake peer homeserver on the wire (TESTPLAN.md section 2, "fake peer"), for hostile-peer tests. It
 * dials a real homeserver's link endpoint as the initiator and runs the real handshake with its own
 * Ed25519 key (the real server fetches that key's document through the `keyFetcher` it was started
 * with: {@link fakePeersFetcher}). After the handshake it owns its half of the sealed channel outright
 * (raw secretstream, not `SealedChannel`), so a test can send any frame: well-formed, forged, or over
 * the 1 MiB limit. Frames from the real server are decrypted and queued; tests await them by
 * predicate, never by sleeping.
 *
 * {@link FakeRoom} is the fake peer's side of a room it owns: a hash-chained, owner-signed log built
 * with the protocol's own helpers, from which tests cut valid frames and forge invalid ones.
 */
import WebSocket from 'ws'
import {
  buildHeader,
  canonicalJson,
  envelopeHash,
  envelopeSigningBytes,
  eventIdOf,
  eventSigningBytes,
  GENESIS_PREV,
  newRoomId,
  parseUserId,
  SecretStreamPuller,
  SecretStreamPusher,
  sodiumReady,
  toBase64Url,
  utf8,
  type Envelope,
  type EventHeader,
  type JsonObject,
} from '@parley/protocol'
import { LinkInitiator, MemoryReplayCache } from '@parley/protocol/federation'
import { verifySignature, type Signer } from '@parley/protocol/signing'
import type { KeyFetcher } from '../../src/federation/peer-keys.ts'
import type { TestServer } from '../helpers.ts'
import type { FakePeer } from './fake-peer.ts'

/** A decrypted frame from the real server. */
export type LinkFrame = Record<string, unknown> & { type: string }

/** How the socket closed. */
export interface CloseInfo {
  readonly code: number
  readonly reason: string
}

/** A key fetcher that serves the documents of several fake peers (and fails for anyone else). */
export function fakePeersFetcher(...peers: FakePeer[]): KeyFetcher {
  return (server) => {
    const peer = peers.find((p) => p.serverName === server)
    return peer ? peer.fetch(server) : Promise.reject(new Error(`no route to ${server}`))
  }
}

type Raw = string | Uint8Array

function toRaw(data: WebSocket.RawData, isBinary: boolean): Raw {
  const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
  return isBinary ? new Uint8Array(buffer) : buffer.toString('utf8')
}

/** The handshake was refused: the socket closed (with the failure code as reason) before the link was up. */
export class LinkRefused extends Error {
  constructor(readonly close: CloseInfo) {
    super(`link refused: ${close.code} ${close.reason}`)
    this.name = 'LinkRefused'
  }
}

export interface FakeLinkOptions {
  /** The fake peer's server name (`from` of its HELLO). */
  readonly serverName: string
  /** The fake peer's signing key; its document must be served to the real server. */
  readonly signer: Signer
  /** Interval of our sealed PINGs, so the real server never sees the link as idle. Default 5 s. */
  readonly pingMs?: number
}

export class FakeLink {
  /** Frames received and not yet taken by {@link next} (PINGs are dropped). */
  readonly frames: LinkFrame[] = []
  /** The real server closed its direction with FINAL. */
  finalReceived = false
  /** Why the real server's stream stopped decrypting, if it did (should never happen). */
  receiveError: string | null = null
  closeInfo: CloseInfo | null = null
  readonly closed: Promise<CloseInfo>
  readonly #ws: WebSocket
  #pusher: SecretStreamPusher | null
  readonly #puller: SecretStreamPuller
  readonly #ping: ReturnType<typeof setInterval>
  #waiters: Array<{
    pred: (f: LinkFrame) => boolean
    resolve: (f: LinkFrame) => void
    reject: (e: Error) => void
    timer: ReturnType<typeof setTimeout>
  }> = []

  private constructor(
    ws: WebSocket,
    closed: Promise<CloseInfo>,
    pusher: SecretStreamPusher,
    puller: SecretStreamPuller,
    pingMs: number,
  ) {
    this.#ws = ws
    this.closed = closed
    this.#pusher = pusher
    this.#puller = puller
    this.#ping = setInterval(() => {
      if (this.#ws.readyState === WebSocket.OPEN && this.#pusher) this.send({ type: 'ping' })
    }, pingMs)
    this.#ping.unref()
    void closed.then((info) => {
      clearInterval(this.#ping)
      this.closeInfo = info
      this.#pusher?.dispose()
      this.#pusher = null
      this.#puller.dispose()
      for (const w of this.#waiters.splice(0)) {
        clearTimeout(w.timer)
        w.reject(new Error(`link closed (${info.code} ${info.reason}) while waiting for a frame`))
      }
    })
  }

  /**
   * Dials `target`'s link endpoint as `options.serverName` and completes the handshake. Resolves once
   * the real server's stream header arrived (it accepted our AUTH); rejects with {@link LinkRefused}
   * if the server closes the socket first.
   */
  static async connect(target: TestServer, options: FakeLinkOptions): Promise<FakeLink> {
    await sodiumReady()
    const url = target.url.replace(/^http/, 'ws') + '/api/v1/federation'
    const ws = new WebSocket(url, { perMessageDeflate: false })
    const raw: Raw[] = []
    let wake: (() => void) | null = null
    const onRaw = (data: WebSocket.RawData, isBinary: boolean) => {
      raw.push(toRaw(data, isBinary))
      wake?.()
    }
    ws.on('message', onRaw)
    ws.on('error', () => {}) // a 'close' follows
    let closeInfo: CloseInfo | null = null
    const closed = new Promise<CloseInfo>((resolve) =>
      ws.once('close', (code, reason) => {
        closeInfo = { code, reason: reason.toString() }
        wake?.()
        resolve(closeInfo)
      }),
    )
    const nextRaw = async (): Promise<Raw> => {
      for (;;) {
        const frame = raw.shift()
        if (frame !== undefined) return frame
        if (closeInfo) throw new LinkRefused(closeInfo)
        await new Promise<void>((resolve) => (wake = resolve))
        wake = null
      }
    }
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      void closed.then((info) => reject(new LinkRefused(info)))
    })

    const server = target.services.signer
    const initiator = new LinkInitiator({
      serverName: options.serverName,
      signer: options.signer,
      verify: verifySignature,
      lookupKey: (name, kid) =>
        name === target.config.serverName && kid === server.kid ? server.publicKey : null,
      isAllowed: () => true,
      replayCache: new MemoryReplayCache(),
      peer: target.config.serverName,
    })
    try {
      ws.send(initiator.start())
      const step = await initiator.receive(await nextRaw())
      if (!step.ok) throw new Error(`handshake failed at the fake peer: ${step.error.reason}`)
      const link = step.value.link
      if (step.value.send === null || link === null) throw new Error('handshake did not complete')
      ws.send(step.value.send)
      const rx = link.keys.rx.slice()
      const { pusher, header } = SecretStreamPusher.init(link.keys.tx)
      ws.send(header)
      const theirs = await nextRaw()
      if (typeof theirs === 'string') throw new Error('a text frame instead of a stream header')
      const puller = SecretStreamPuller.init(theirs, rx)
      if (!puller.ok) throw new Error('bad stream header from the real server')
      const fake = new FakeLink(ws, closed, pusher, puller.value, options.pingMs ?? 5000)
      ws.off('message', onRaw)
      ws.on('message', (data, isBinary) => fake.#receive(toRaw(data, isBinary)))
      for (const frame of raw.splice(0)) fake.#receive(frame)
      return fake
    } catch (error) {
      ws.terminate()
      throw error
    }
  }

  /** The socket is open and our direction not finished. */
  get open(): boolean {
    return this.#ws.readyState === WebSocket.OPEN && this.#pusher !== null
  }

  /** Seals one frame as canonical JSON (no schema, no size check: that is the point). */
  send(frame: object): void {
    this.sendText(canonicalJson(frame))
  }

  /** Seals arbitrary text as one MESSAGE, whatever its size. */
  sendText(text: string): void {
    if (!this.#pusher) throw new Error('our direction is finished')
    this.#ws.send(this.#pusher.push(utf8(text)))
  }

  /** Sends raw bytes as one binary WebSocket frame (not sealed). */
  sendBytes(bytes: Uint8Array): void {
    this.#ws.send(bytes)
  }

  /** Resolves with the first frame (already received or future) matching `pred`, and takes it. */
  next(pred: (f: LinkFrame) => boolean, timeoutMs = 10_000): Promise<LinkFrame> {
    const have = this.frames.find(pred)
    if (have) {
      this.frames.splice(this.frames.indexOf(have), 1)
      return Promise.resolve(have)
    }
    if (this.closeInfo) return Promise.reject(new Error('link closed'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.timer !== timer)
        reject(new Error(`timed out waiting for a frame; have: ${JSON.stringify(this.frames.slice(-5))}`))
      }, timeoutMs)
      this.#waiters.push({ pred, resolve, reject, timer })
    })
  }

  /** Closes at once (no FINAL) and waits for the socket to be gone. Idempotent. */
  async close(): Promise<void> {
    clearInterval(this.#ping)
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.terminate()
    await this.closed
  }

  #receive(raw: Raw): void {
    if (this.receiveError !== null || this.finalReceived) return
    if (typeof raw === 'string') {
      this.receiveError = 'text frame after the handshake'
      return
    }
    const pulled = this.#puller.pull(raw)
    if (!pulled.ok) {
      this.receiveError = pulled.error
      return
    }
    if (pulled.value.tag === 'final') {
      // Answer as a real peer does: our FINAL, then a normal close.
      this.finalReceived = true
      if (this.#pusher && this.#ws.readyState === WebSocket.OPEN) {
        this.#ws.send(this.#pusher.push(new Uint8Array(0), true))
        this.#pusher = null
      }
      this.#ws.close(1000, 'final')
      return
    }
    const frame = JSON.parse(Buffer.from(pulled.value.message).toString('utf8')) as LinkFrame
    if (frame.type === 'ping') return
    const waiter = this.#waiters.find((w) => w.pred(frame))
    if (!waiter) {
      this.frames.push(frame)
      return
    }
    clearTimeout(waiter.timer)
    this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
    waiter.resolve(frame)
  }
}

/** One event as it travels in `events` and `snapshot` frames. */
export interface WireEvent {
  readonly header: EventHeader
  readonly content: JsonObject | null
  readonly envelope: Envelope
  readonly origin_sig?: { readonly kid: string; readonly sig: string }
}

/** What {@link FakeRoom.build} makes one event from. */
export interface EventSpec {
  readonly type: string
  readonly sender: string
  readonly content: JsonObject
  readonly stateKey?: string
  /** Signs as the origin (the sender's server) when that is not the owner. Omit to leave it unsigned. */
  readonly originSigner?: Signer
}

/** A signature as frames carry it. */
export interface KeyedSig {
  readonly kid: string
  readonly sig: string
}

/** Signs `bytes` with `signer`, optionally claiming another key id. */
export function keyedSig(signer: Signer, bytes: Uint8Array, kid = signer.kid): KeyedSig {
  return { kid, sig: toBase64Url(signer.sign(bytes)) }
}

/** The origin's signature over an event header. */
export function originSig(signer: Signer, header: EventHeader, kid = signer.kid): KeyedSig {
  return keyedSig(signer, eventSigningBytes(header), kid)
}

/**
 * A room owned by the fake peer: its id (`!<22 chars>:<owner>`) and the head of its chain. `build`
 * makes the next events without adopting them, so a test can forge variants; `adopt` moves the head
 * once the replica has accepted them.
 */
export class FakeRoom {
  readonly id: string
  seq = 0
  head = GENESIS_PREV
  /** Every adopted event, in seq order (the log the replica holds). */
  readonly log: WireEvent[] = []

  constructor(
    readonly owner: string,
    readonly ownerSigner: Signer,
    id = newRoomId(owner),
  ) {
    this.id = id
  }

  /** The next events after the head (or after `from`), chained, owner-timestamped now. */
  build(specs: readonly EventSpec[], from: { seq: number; head: string } = this): WireEvent[] {
    let seq = from.seq
    let prev = from.head
    return specs.map((spec) => {
      const origin = parseUserId(spec.sender)?.server ?? this.owner
      const header = buildHeader({
        room: this.id,
        type: spec.type,
        stateKey: spec.stateKey,
        sender: spec.sender,
        origin,
        originTs: Date.now(),
        content: spec.content,
      })
      const envelope: Envelope = {
        room: this.id,
        seq: ++seq,
        event_id: eventIdOf(header),
        prev,
        owner_ts: Date.now(),
      }
      prev = envelopeHash(envelope)
      const event: WireEvent = { header, content: spec.content, envelope }
      return spec.originSigner ? { ...event, origin_sig: originSig(spec.originSigner, header) } : event
    })
  }

  /** Moves the head past `events` (the replica accepted them). */
  adopt(events: readonly WireEvent[]): void {
    const last = events.at(-1)!.envelope
    this.log.push(...events)
    this.seq = last.seq
    this.head = envelopeHash(last)
  }

  /** The owner's signature over the last envelope of `events` (by default with the room owner's key). */
  ownerSig(events: readonly WireEvent[], signer = this.ownerSigner, kid = signer.kid): KeyedSig {
    return keyedSig(signer, envelopeSigningBytes(events.at(-1)!.envelope), kid)
  }

  /** An `events` frame, owner-signed unless a signature is given. */
  events(events: readonly WireEvent[], sig: KeyedSig = this.ownerSig(events)): object {
    return { type: 'events', room: this.id, events, owner_sig: sig }
  }

  /** A `snapshot` frame with the given state, owner-signed unless a signature is given. */
  snapshot(state: object, events: readonly WireEvent[], sig: KeyedSig = this.ownerSig(events)): object {
    return { type: 'snapshot', room: this.id, state, events, owner_sig: sig }
  }
}
