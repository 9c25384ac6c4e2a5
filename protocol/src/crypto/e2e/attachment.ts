/**
 * Attachment encryption (E2E.md section 2.5, "Attachments"): a random key per file, libsodium's
 * secretstream XChaCha20-Poly1305 over 64 KiB chunks, the first chunk authenticated with
 * `AD = "e2e/v1/att" ‖ room_id ‖ upload_id`, the last chunk tagged `TAG_FINAL`, and BLAKE2b-256 of the
 * whole ciphertext. The encrypted event carries `{uri, key, header, hash, size, mime}`.
 *
 * Decryption is all or nothing: the hash is checked first, every chunk must authenticate in order
 * (`crypto_secretstream_xchacha20poly1305_pull` returning `false` is `decrypt_failed`), the stream must
 * end with `TAG_FINAL` and nothing after it, and only then is the plaintext returned.
 */
import type { StateAddress } from 'libsodium-wrappers-sumo'
import { fromBase64Url, toBase64Url } from '../../encoding.ts'
import { freeSecretStreamState } from '../secretstream.ts'
import { sodium } from '../sodium.ts'
import { E2eError } from './errors.ts'
import {
  assertBytes,
  constantTimeEqual,
  encodeFields,
  generichash,
  memzero,
  secretRandomBytes,
} from './primitives.ts'

/** Plaintext bytes per chunk, 64 KiB (E2E.md section 2.5). */
export const ATTACHMENT_CHUNK_BYTES = 64 * 1024
/** Bytes secretstream adds per chunk: one encrypted tag byte and a 16-byte MAC (E2E.md section 2.5). */
export const ATTACHMENT_CHUNK_OVERHEAD = 17
/** Largest attachment accepted, 1 GiB (a bound on E2E.md section 2.5's attachments). */
export const MAX_ATTACHMENT_BYTES = 1024 * 1024 * 1024

const ATT_AD_LABEL = 'e2e/v1/att'
const MAX_ID_LENGTH = 255

/** Where an attachment belongs; bound into the first chunk's AD (E2E.md section 2.5). */
export interface AttachmentContext {
  readonly roomId: string
  readonly uploadId: string
}

/** What the encrypted event carries about an attachment besides `uri` and `mime` (E2E.md section 2.5). Bytes are base64url. */
export interface AttachmentInfo {
  readonly key: string
  readonly header: string
  /** BLAKE2b-256 of the ciphertext. */
  readonly hash: string
  /** Plaintext bytes. */
  readonly size: number
}

/** An encrypted attachment: the bytes to upload and the info to put in the event (E2E.md section 2.5). */
export interface EncryptedAttachment extends AttachmentInfo {
  readonly ciphertext: Uint8Array
}

function assertContext(context: AttachmentContext): void {
  for (const value of [context?.roomId, context?.uploadId])
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH)
      throw new E2eError('bad_input', 'roomId and uploadId must be non-empty strings')
}

function firstChunkAd(context: AttachmentContext): Uint8Array {
  return encodeFields(ATT_AD_LABEL, context.roomId, context.uploadId)
}

function chunkCount(size: number): number {
  return Math.max(1, Math.ceil(size / ATTACHMENT_CHUNK_BYTES))
}

/** Encrypts a file for `context` under a fresh random key (E2E.md section 2.5). */
export function encryptAttachment(plaintext: Uint8Array, context: AttachmentContext): EncryptedAttachment {
  assertBytes('attachment', plaintext)
  assertContext(context)
  if (plaintext.length > MAX_ATTACHMENT_BYTES) throw new E2eError('bad_input', 'attachment too large')
  const s = sodium()
  const key = secretRandomBytes(32)
  const { state, header } = s.crypto_secretstream_xchacha20poly1305_init_push(key)
  try {
    const chunks = chunkCount(plaintext.length)
    const ciphertext = new Uint8Array(plaintext.length + chunks * ATTACHMENT_CHUNK_OVERHEAD)
    let out = 0
    for (let i = 0; i < chunks; i++) {
      const chunk = plaintext.subarray(i * ATTACHMENT_CHUNK_BYTES, (i + 1) * ATTACHMENT_CHUNK_BYTES)
      const tag =
        i === chunks - 1
          ? s.crypto_secretstream_xchacha20poly1305_TAG_FINAL
          : s.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
      const sealed = s.crypto_secretstream_xchacha20poly1305_push(
        state,
        chunk,
        i === 0 ? firstChunkAd(context) : null,
        tag,
      )
      ciphertext.set(sealed, out)
      out += sealed.length
    }
    return {
      ciphertext,
      key: toBase64Url(key),
      header: toBase64Url(header),
      hash: toBase64Url(generichash(32, ciphertext)),
      size: plaintext.length,
    }
  } finally {
    freeSecretStreamState(state)
    memzero(key)
  }
}

function parseInfo(info: unknown): { key: Uint8Array; header: Uint8Array; hash: Uint8Array; size: number } {
  if (typeof info !== 'object' || info === null)
    throw new E2eError('bad_input', 'attachment info must be an object')
  const { key, header, hash, size } = info as Record<string, unknown>
  const k = typeof key === 'string' ? fromBase64Url(key) : null
  const h = typeof header === 'string' ? fromBase64Url(header) : null
  const d = typeof hash === 'string' ? fromBase64Url(hash) : null
  if (k === null || k.length !== 32) throw new E2eError('bad_input', 'attachment key must be 32 bytes')
  if (h === null || h.length !== 24) throw new E2eError('bad_input', 'attachment header must be 24 bytes')
  if (d === null || d.length !== 32) throw new E2eError('bad_input', 'attachment hash must be 32 bytes')
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > MAX_ATTACHMENT_BYTES)
    throw new E2eError('bad_input', 'attachment size out of range')
  return { key: k, header: h, hash: d, size }
}

/**
 * Decrypts a downloaded attachment (E2E.md section 2.5; section 3 row 17). Throws `hash_mismatch` if
 * the bytes are not the ones announced, `decrypt_failed` for a forged, reordered or misplaced chunk or
 * a wrong room/upload id, `truncated` if the stream ends without `TAG_FINAL`, `trailing_data` for bytes
 * after it, and `bad_input` if the plaintext size differs from `info.size`. Never returns part of a file.
 */
export function decryptAttachment(
  ciphertext: Uint8Array,
  info: unknown,
  context: AttachmentContext,
): Uint8Array {
  assertBytes('attachment ciphertext', ciphertext)
  assertContext(context)
  const parsed = parseInfo(info)
  if (!constantTimeEqual(generichash(32, ciphertext), parsed.hash))
    throw new E2eError('hash_mismatch', 'ciphertext differs from the announced hash')
  if (ciphertext.length > parsed.size + chunkCount(parsed.size) * ATTACHMENT_CHUNK_OVERHEAD)
    throw new E2eError('trailing_data', 'ciphertext longer than its size allows')
  const s = sodium()
  let state: StateAddress
  try {
    state = s.crypto_secretstream_xchacha20poly1305_init_pull(parsed.header, parsed.key)
  } catch {
    throw new E2eError('decrypt_failed', 'secretstream refused the header')
  }
  // Never larger than the announced size nor than the ciphertext allows: a lying size cannot make us allocate.
  const plaintext = new Uint8Array(
    Math.min(parsed.size, Math.max(0, ciphertext.length - ATTACHMENT_CHUNK_OVERHEAD)),
  )
  let written = 0
  let ok = false
  try {
    let offset = 0
    let index = 0
    for (;;) {
      const end = Math.min(offset + ATTACHMENT_CHUNK_BYTES + ATTACHMENT_CHUNK_OVERHEAD, ciphertext.length)
      if (end - offset < ATTACHMENT_CHUNK_OVERHEAD)
        throw new E2eError('truncated', 'stream ended before TAG_FINAL')
      let pulled: { message: Uint8Array; tag: number } | false
      try {
        pulled = s.crypto_secretstream_xchacha20poly1305_pull(
          state,
          ciphertext.subarray(offset, end),
          index === 0 ? firstChunkAd(context) : null,
        )
      } catch {
        pulled = false
      }
      if (pulled === false || typeof pulled !== 'object' || !(pulled.message instanceof Uint8Array))
        throw new E2eError('decrypt_failed', 'chunk did not authenticate')
      if (written + pulled.message.length > plaintext.length) {
        memzero(pulled.message)
        throw new E2eError('bad_input', 'plaintext larger than expected')
      }
      plaintext.set(pulled.message, written)
      written += pulled.message.length
      memzero(pulled.message)
      offset = end
      index++
      if (pulled.tag === s.crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        if (offset !== ciphertext.length) throw new E2eError('trailing_data', 'bytes after TAG_FINAL')
        break
      }
      if (pulled.tag !== s.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        throw new E2eError('decrypt_failed', 'unexpected secretstream tag')
      if (offset === ciphertext.length) throw new E2eError('truncated', 'stream ended before TAG_FINAL')
    }
    if (written !== parsed.size)
      throw new E2eError('bad_input', 'plaintext size differs from the announced size')
    ok = true
    return plaintext // written === parsed.size >= plaintext.length >= written
  } finally {
    freeSecretStreamState(state)
    if (!ok) memzero(plaintext)
  }
}
