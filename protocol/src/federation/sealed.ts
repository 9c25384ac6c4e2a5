/**
 * Sealed framing after AUTH (DESIGN.md section 6; docs/federation.md, "Sealed frames"). Each
 * direction is one `crypto_secretstream_xchacha20poly1305` stream under that direction's crypto_kx
 * key, carried in WebSocket binary frames:
 *
 * 1. the sender's first binary frame is its 24-byte stream header, in the clear;
 * 2. each application frame (canonical JSON, UTF-8, 1 to 1 MiB) is pushed as one message with
 *    TAG_MESSAGE and no additional data, and sent as one binary frame (plaintext + 17 bytes);
 * 3. a clean close is one message with TAG_FINAL and an empty plaintext; nothing may follow it.
 *
 * A text frame, a wrong-size header, a frame that fails to decrypt (forged, altered, reordered,
 * replayed, truncated, or after a dropped one), another tag, an oversized frame or anything after
 * FINAL is fatal for the whole channel. The two directions are independent: each side may send its
 * header and frames without waiting for the other's.
 */
import { canonicalJson, type JsonObject } from '../canonical-json.ts'
import type { KxSessionKeys } from '../crypto/kx.ts'
import { wipe } from '../crypto/kx.ts'
import {
  SECRETSTREAM_ABYTES,
  SECRETSTREAM_HEADER_BYTES,
  SecretStreamPuller,
  SecretStreamPusher,
} from '../crypto/secretstream.ts'
import { fromUtf8, utf8 } from '../encoding.ts'
import { err, ok, type Result } from '../result.ts'
import { MAX_FRAME_BYTES } from './constants.ts'
import type { LinkFailure, LinkFailureReason } from './failure.ts'

/** Largest binary frame a peer may send after its header: a full frame plus the secretstream overhead. */
export const MAX_SEALED_FRAME_BYTES = MAX_FRAME_BYTES + SECRETSTREAM_ABYTES

/** What one received binary frame amounted to. */
export type SealedInput =
  /** The peer's stream header: nothing to deliver yet. */
  | { readonly kind: 'header' }
  /** One application frame, as its JSON text (parse it with the frame schemas). */
  | { readonly kind: 'frame'; readonly text: string }
  /** The peer closed its direction cleanly. */
  | { readonly kind: 'final' }

/** Where the receiving direction stands. */
export type SealedReceiveState = 'awaiting_header' | 'open' | 'final' | 'failed'

/**
 * Both directions of a link after the handshake. Sending (`seal`, `finish`) throws on misuse, since
 * that is our own bug; receiving never throws and any failure kills both directions.
 */
export class SealedChannel {
  #pusher: SecretStreamPusher | null
  #puller: SecretStreamPuller | null = null
  #rx: Uint8Array | null
  #receive: SealedReceiveState = 'awaiting_header'
  #failure: LinkFailure | null = null

  private constructor(pusher: SecretStreamPusher, rx: Uint8Array) {
    this.#pusher = pusher
    this.#rx = rx
  }

  /**
   * Starts both directions from a link's session keys and returns the stream header, which must be
   * the first binary frame we send. Wipes `keys.rx` and `keys.tx` (it keeps its own copy of `rx`
   * until the peer's header arrives). Throws on keys that are not 32 bytes (a caller bug).
   */
  static open(keys: KxSessionKeys): { channel: SealedChannel; header: Uint8Array } {
    if (typeof keys !== 'object' || keys === null) throw new TypeError('keys are required')
    if (!(keys.rx instanceof Uint8Array) || keys.rx.length !== 32)
      throw new TypeError('keys.rx must be 32 bytes')
    const { pusher, header } = SecretStreamPusher.init(keys.tx)
    const rx = keys.rx.slice()
    wipe(keys.tx)
    wipe(keys.rx)
    return { channel: new SealedChannel(pusher, rx), header }
  }

  /** Where the receiving direction stands. */
  get receiveState(): SealedReceiveState {
    return this.#receive
  }

  /** True while we may still send (not finished, not failed). */
  get canSend(): boolean {
    return this.#pusher !== null
  }

  /** The failure that killed the channel, or `null`. */
  get failure(): LinkFailure | null {
    return this.#failure
  }

  /** Seals an application frame as canonical JSON. Throws if it has no canonical form or is too large. */
  seal(frame: JsonObject): Uint8Array {
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame))
      throw new TypeError('a frame is a JSON object')
    return this.sealText(canonicalJson(frame))
  }

  /**
   * Seals a frame already serialised (canonical JSON text, as the sender's hot path has it). Throws
   * if it is empty or over {@link MAX_FRAME_BYTES} bytes of UTF-8 (split the batch first), or if the
   * sending direction is closed.
   */
  sealText(text: string): Uint8Array {
    if (typeof text !== 'string') throw new TypeError('text must be a string')
    const bytes = utf8(text)
    if (bytes.length === 0) throw new RangeError('a frame is never empty')
    if (bytes.length > MAX_FRAME_BYTES) throw new RangeError(`frame of ${bytes.length} bytes exceeds 1 MiB`)
    return this.#push(bytes, false)
  }

  /** Closes our direction cleanly: returns the TAG_FINAL frame to send last. Throws if already closed. */
  finish(): Uint8Array {
    return this.#push(new Uint8Array(0), true)
  }

  #push(bytes: Uint8Array, final: boolean): Uint8Array {
    if (this.#pusher === null)
      throw new Error(this.#failure ? 'the channel failed' : 'our direction is already finished')
    const sealed = this.#pusher.push(bytes, final)
    if (final) this.#pusher = null // push(…, true) disposed it
    return sealed
  }

  /** Feeds one received WebSocket frame (text as string, binary as bytes). Never throws on input. */
  receive(frame: string | Uint8Array): Result<SealedInput, LinkFailure> {
    switch (this.#receive) {
      case 'failed':
        return err({ reason: 'closed', message: 'the channel already failed' })
      case 'final':
        return this.#fail('after_final', "frame after the peer's FINAL")
    }
    if (!(frame instanceof Uint8Array))
      return this.#fail('unexpected_frame', 'text frame after the handshake')
    if (this.#receive === 'awaiting_header') {
      if (frame.length !== SECRETSTREAM_HEADER_BYTES)
        return this.#fail('bad_header', `stream header must be ${SECRETSTREAM_HEADER_BYTES} bytes`)
      const puller = SecretStreamPuller.init(frame, this.#rx!)
      wipe(this.#rx!)
      this.#rx = null
      if (!puller.ok) return this.#fail('bad_header', 'bad stream header')
      this.#puller = puller.value
      this.#receive = 'open'
      return ok({ kind: 'header' })
    }
    if (frame.length > MAX_SEALED_FRAME_BYTES) return this.#fail('too_large', 'sealed frame exceeds 1 MiB')
    const pulled = this.#puller!.pull(frame)
    if (!pulled.ok) {
      return pulled.error === 'bad_tag'
        ? this.#fail('bad_tag', 'unknown secretstream tag')
        : this.#fail('bad_ciphertext', 'sealed frame does not decrypt')
    }
    const { message, tag } = pulled.value
    if (tag === 'final') {
      if (message.length !== 0) return this.#fail('bad_frame', 'FINAL must be empty')
      this.#puller = null // pull() disposed it on FINAL
      this.#receive = 'final'
      return ok({ kind: 'final' })
    }
    if (tag !== 'message') return this.#fail('bad_tag', `unexpected secretstream tag ${tag}`)
    if (message.length === 0) return this.#fail('bad_frame', 'empty frame')
    let text: string
    try {
      text = fromUtf8(message)
    } catch {
      return this.#fail('bad_frame', 'frame is not UTF-8')
    }
    return ok({ kind: 'frame', text })
  }

  /** Kills both directions and wipes all key state (socket closed, shutdown). Idempotent. */
  dispose(): void {
    if (this.#receive !== 'final' && this.#receive !== 'failed') {
      this.#receive = 'failed'
      this.#failure = { reason: 'aborted', message: 'channel disposed' }
    }
    this.#release()
  }

  #fail(reason: LinkFailureReason, message: string): Result<never, LinkFailure> {
    this.#failure = { reason, message }
    this.#receive = 'failed'
    this.#release()
    return err(this.#failure)
  }

  #release(): void {
    this.#pusher?.dispose()
    this.#pusher = null
    this.#puller?.dispose()
    this.#puller = null
    if (this.#rx) wipe(this.#rx)
    this.#rx = null
  }
}
