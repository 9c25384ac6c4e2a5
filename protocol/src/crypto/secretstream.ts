/**
 * Authenticated encryption of a message stream with libsodium's `crypto_secretstream_xchacha20poly1305`
 * (https://doc.libsodium.org/secret-key_cryptography/secretstream): XChaCha20 with Poly1305 tags, a
 * 24-byte header carrying the nonce, and an internal counter so that reordered, replayed, dropped or
 * altered messages fail to decrypt. Each encrypted message is 17 bytes longer than its plaintext
 * (1 encrypted tag byte + 16-byte MAC).
 *
 * Both wrappers are fail-closed: after one failure, or after the final message, every later call
 * fails. Their state lives on libsodium's WASM heap; {@link SecretStreamPusher.dispose} and
 * {@link SecretStreamPuller.dispose} wipe and free it.
 */
import type { StateAddress } from 'libsodium-wrappers-sumo'
import { err, ok, type Result } from '../result.ts'
import { sodium } from './sodium.ts'

/** Bytes of a secretstream key. */
export const SECRETSTREAM_KEY_BYTES = 32
/** Bytes of a secretstream header (sent once, before the first message). */
export const SECRETSTREAM_HEADER_BYTES = 24
/** Bytes a sealed message adds to its plaintext. */
export const SECRETSTREAM_ABYTES = 17

/** The tag of a message: `message` (ordinary), `push`, `rekey` or `final` (end of stream). */
export type SecretStreamTag = 'message' | 'push' | 'rekey' | 'final'

/** A decrypted message. */
export interface PulledMessage {
  readonly message: Uint8Array
  readonly tag: SecretStreamTag
}

/**
 * Why pulling failed: `bad_header` (not 24 bytes), `bad_ciphertext` (too short, forged, reordered,
 * replayed or truncated: indistinguishable by design), `bad_tag` (authentic, but a tag byte outside
 * libsodium's four) or `closed` (after a failure or the final message).
 */
export type SecretStreamFailure = 'bad_header' | 'bad_ciphertext' | 'bad_tag' | 'closed'

interface WasmHeap {
  readonly HEAPU8: Uint8Array
  _free(pointer: number): void
  _crypto_secretstream_xchacha20poly1305_statebytes(): number
}

/**
 * Zeroes and frees a state allocated by libsodium-wrappers (which never frees it itself). The state
 * handle is a WASM heap address; this reaches into the wrapper's `libsodium` module and does nothing
 * if its shape is not what we expect.
 */
export function freeSecretStreamState(state: StateAddress): void {
  const address = state as unknown
  const heap = (sodium() as unknown as { libsodium?: Partial<WasmHeap> }).libsodium
  if (typeof address !== 'number' || !heap || !(heap.HEAPU8 instanceof Uint8Array)) return
  if (typeof heap._free !== 'function') return
  const size =
    typeof heap._crypto_secretstream_xchacha20poly1305_statebytes === 'function'
      ? heap._crypto_secretstream_xchacha20poly1305_statebytes()
      : 52
  if (address <= 0 || address + size > heap.HEAPU8.length) return
  heap.HEAPU8.fill(0, address, address + size)
  heap._free(address)
}

function assertKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== SECRETSTREAM_KEY_BYTES)
    throw new TypeError(`secretstream key must be a Uint8Array of ${SECRETSTREAM_KEY_BYTES} bytes`)
}

/** The sending half of a stream. */
export class SecretStreamPusher {
  #state: StateAddress | null

  private constructor(state: StateAddress) {
    this.#state = state
  }

  /**
   * Starts a stream under `key` with a fresh random header, which must reach the receiver before the
   * first message. Throws on a wrong key length (a caller bug).
   */
  static init(key: Uint8Array): { pusher: SecretStreamPusher; header: Uint8Array } {
    assertKey(key)
    const { state, header } = sodium().crypto_secretstream_xchacha20poly1305_init_push(key)
    return { pusher: new SecretStreamPusher(state), header }
  }

  /** True once the final message has been pushed or the stream disposed. */
  get closed(): boolean {
    return this.#state === null
  }

  /**
   * Encrypts one message; `final` marks the end of the stream (TAG_FINAL) and disposes the state.
   * Throws if the stream is closed (a caller bug).
   */
  push(message: Uint8Array, final = false): Uint8Array {
    if (!(message instanceof Uint8Array)) throw new TypeError('message must be a Uint8Array')
    if (this.#state === null) throw new Error('secretstream pusher is closed')
    const s = sodium()
    const tag = final
      ? s.crypto_secretstream_xchacha20poly1305_TAG_FINAL
      : s.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
    const sealed = s.crypto_secretstream_xchacha20poly1305_push(this.#state, message, null, tag)
    if (final) this.dispose()
    return sealed
  }

  /** Wipes and frees the state. Idempotent. */
  dispose(): void {
    if (this.#state === null) return
    const state = this.#state
    this.#state = null
    freeSecretStreamState(state)
  }
}

/** The receiving half of a stream. */
export class SecretStreamPuller {
  #state: StateAddress | null

  private constructor(state: StateAddress) {
    this.#state = state
  }

  /**
   * Starts pulling a stream from its header (untrusted: a wrong length returns `bad_header`; any
   * other corruption shows up as `bad_ciphertext` on the first pull). Throws on a wrong key length.
   */
  static init(header: Uint8Array, key: Uint8Array): Result<SecretStreamPuller, SecretStreamFailure> {
    assertKey(key)
    if (!(header instanceof Uint8Array) || header.length !== SECRETSTREAM_HEADER_BYTES)
      return err('bad_header')
    const state = sodium().crypto_secretstream_xchacha20poly1305_init_pull(header, key)
    return ok(new SecretStreamPuller(state))
  }

  /** True once the final message has been pulled, a pull failed, or the stream was disposed. */
  get closed(): boolean {
    return this.#state === null
  }

  /**
   * Decrypts and authenticates the next message. Any failure closes the stream for good, as does
   * the final message.
   */
  pull(sealed: Uint8Array): Result<PulledMessage, SecretStreamFailure> {
    if (this.#state === null) return err('closed')
    if (!(sealed instanceof Uint8Array) || sealed.length < SECRETSTREAM_ABYTES) {
      this.dispose()
      return err('bad_ciphertext')
    }
    const s = sodium()
    let pulled: { message: Uint8Array; tag: number } | false
    try {
      // Returns false when the MAC does not verify.
      pulled = s.crypto_secretstream_xchacha20poly1305_pull(this.#state, sealed, null) as
        { message: Uint8Array; tag: number } | false
    } catch {
      pulled = false
    }
    if (pulled === false || typeof pulled !== 'object') {
      this.dispose()
      return err('bad_ciphertext')
    }
    const tag = tagName(pulled.tag)
    if (tag === null) {
      this.dispose()
      return err('bad_tag')
    }
    if (tag === 'final') this.dispose()
    return ok({ message: pulled.message, tag })
  }

  /** Wipes and frees the state. Idempotent. */
  dispose(): void {
    if (this.#state === null) return
    const state = this.#state
    this.#state = null
    freeSecretStreamState(state)
  }
}

function tagName(tag: number): SecretStreamTag | null {
  const s = sodium()
  switch (tag) {
    case s.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE:
      return 'message'
    case s.crypto_secretstream_xchacha20poly1305_TAG_PUSH:
      return 'push'
    case s.crypto_secretstream_xchacha20poly1305_TAG_REKEY:
      return 'rekey'
    case s.crypto_secretstream_xchacha20poly1305_TAG_FINAL:
      return 'final'
    default:
      return null
  }
}
