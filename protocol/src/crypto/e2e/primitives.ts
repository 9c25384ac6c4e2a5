/**
 * Fail-closed libsodium primitives for the end-to-end encryption core (E2E.md section 2; KATs in
 * section 3 row 1). Every function checks the type and length of its inputs and throws an
 * {@link E2eError} (never a bare libsodium error, never a `false` that a caller could forget to check)
 * when libsodium refuses something. Random bytes come from Web Crypto (`globalThis.crypto`), which is
 * much cheaper here than libsodium's `randombytes_buf`; nothing in this folder imports a Node built-in,
 * so it runs in Node and in the browser alike. Call `sodiumReady()` once before using any of it.
 */
import { concatBytes, pooledRandomBytes, randomBytes, utf8 } from '../../encoding.ts'
import { ed25519Verify } from '../ed25519.ts'
import { bytesEqual } from '../hash.ts'
import { sodium } from '../sodium.ts'
import { E2eError } from './errors.ts'

/** Bytes of an XChaCha20-Poly1305-IETF key (E2E.md section 2.2). */
export const AEAD_KEY_BYTES = 32
/** Bytes of an XChaCha20-Poly1305-IETF nonce: 24, so random nonces are safe (E2E.md section 2.2). */
export const AEAD_NONCE_BYTES = 24
/** Bytes the Poly1305 tag adds to a ciphertext (E2E.md section 2.2). */
export const AEAD_TAG_BYTES = 16
/** Bytes of an Ed25519 public key (E2E.md section 2.1). */
export const SIGN_PUBLIC_KEY_BYTES = 32
/** Bytes of a libsodium Ed25519 secret key (seed followed by public key; E2E.md section 2.1). */
export const SIGN_SECRET_KEY_BYTES = 64
/** Bytes of an Ed25519 seed (E2E.md section 2.1). */
export const SIGN_SEED_BYTES = 32
/** Bytes of an Ed25519 signature (E2E.md section 2.1). */
export const SIGNATURE_BYTES = 64
/** Bytes of an X25519 public or secret key (E2E.md section 2.1). */
export const DH_KEY_BYTES = 32
/** Block size of message padding, `sodium.pad(plaintext, 256)` (E2E.md section 2.4). */
export const PAD_BLOCK_BYTES = 256

/** Throws `bad_input` unless `value` is a `Uint8Array` (of `length` bytes, if given): the input checks of E2E.md section 2. */
export function assertBytes(name: string, value: unknown, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new E2eError('bad_input', `${name} must be a Uint8Array`)
  if (length !== undefined && value.length !== length)
    throw new E2eError('bad_input', `${name} must be ${length} bytes, got ${value.length}`)
}

/** Fresh random bytes from Web Crypto, for key material (E2E.md section 2). */
export function secretRandomBytes(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0 || length > 65536)
    throw new E2eError('bad_input', 'random length out of range')
  return randomBytes(length)
}

/** Overwrites every array with zeros (`sodium.memzero`; E2E.md section 2.1, "memzero'd and deleted"). */
export function memzero(...arrays: ReadonlyArray<Uint8Array | null | undefined>): void {
  const s = sodium()
  for (const bytes of arrays) if (bytes instanceof Uint8Array) s.memzero(bytes)
}

/** Constant-time equality of two byte strings; lengths are public (STYLE.md rule 7, E2E.md section 2.1). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a instanceof Uint8Array && b instanceof Uint8Array && bytesEqual(a, b)
}

/** Big-endian unsigned 64-bit encoding of a safe integer: the `u64(i)` of E2E.md section 2.4. */
export function u64be(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new E2eError('bad_input', 'u64 out of range')
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(value))
  return out
}

/**
 * An unambiguous byte string for the `‖` concatenations of E2E.md section 2 that mix variable-length
 * fields: the label's UTF-8 bytes, then every field as a 4-byte big-endian length and its bytes
 * (strings as UTF-8). Plain concatenation of variable-length ids would let `("ab","c")` collide with
 * `("a","bc")`.
 */
export function encodeFields(label: string, ...fields: ReadonlyArray<Uint8Array | string>): Uint8Array {
  const parts: Uint8Array[] = [utf8(label)]
  for (const field of fields) {
    const bytes = typeof field === 'string' ? utf8(field) : field
    if (!(bytes instanceof Uint8Array)) throw new E2eError('bad_input', 'field must be bytes or a string')
    const length = new Uint8Array(4)
    new DataView(length.buffer).setUint32(0, bytes.length)
    parts.push(length, bytes)
  }
  return concatBytes(...parts)
}

/** A nonce and the ciphertext (with its 16-byte tag) of XChaCha20-Poly1305-IETF (E2E.md section 2.2). */
export interface AeadSealed {
  readonly nonce: Uint8Array
  readonly ciphertext: Uint8Array
}

/**
 * XChaCha20-Poly1305-IETF with a fresh random 24-byte nonce (E2E.md sections 2.2 and 2.4). `ad` is
 * authenticated, not encrypted.
 */
export function aeadEncrypt(key: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): AeadSealed {
  const nonce = pooledRandomBytes(AEAD_NONCE_BYTES)
  return { nonce, ciphertext: aeadEncryptWithNonce(key, nonce, plaintext, ad) }
}

/**
 * XChaCha20-Poly1305-IETF under a caller-chosen nonce (E2E.md section 3 row 1). For known-answer tests
 * only: reusing a nonce under one key breaks confidentiality; use {@link aeadEncrypt}.
 */
export function aeadEncryptWithNonce(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  assertBytes('AEAD key', key, AEAD_KEY_BYTES)
  assertBytes('AEAD nonce', nonce, AEAD_NONCE_BYTES)
  assertBytes('plaintext', plaintext)
  assertBytes('associated data', ad)
  return sodium().crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key)
}

/**
 * Opens XChaCha20-Poly1305-IETF (E2E.md sections 2.2 and 2.4). libsodium throws on a bad tag; this
 * turns that, and every malformed input, into `decrypt_failed` or `bad_input`.
 */
export function aeadDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  assertBytes('AEAD key', key, AEAD_KEY_BYTES)
  assertBytes('AEAD nonce', nonce, AEAD_NONCE_BYTES)
  assertBytes('ciphertext', ciphertext)
  assertBytes('associated data', ad)
  if (ciphertext.length < AEAD_TAG_BYTES)
    throw new E2eError('decrypt_failed', 'ciphertext shorter than its tag')
  const s = sodium()
  let plaintext: unknown
  try {
    plaintext = s.crypto_aead_xchacha20poly1305_ietf_decrypt(null, ciphertext, ad, nonce, key)
  } catch {
    throw new E2eError('decrypt_failed', 'AEAD authentication failed')
  }
  if (!(plaintext instanceof Uint8Array)) throw new E2eError('decrypt_failed', 'AEAD returned no plaintext')
  return plaintext
}

/** An Ed25519 key pair in libsodium's layout: 32-byte public key, 64-byte secret key (E2E.md section 2.1). */
export interface SigningKeyPair {
  readonly publicKey: Uint8Array
  readonly secretKey: Uint8Array
}

/** A fresh Ed25519 key pair (UIK, DSK, session signing key; E2E.md sections 2.1 and 2.4), or one from `seed`. */
export function signingKeyPair(seed?: Uint8Array): SigningKeyPair {
  const ownSeed = seed === undefined
  const bytes = seed ?? secretRandomBytes(SIGN_SEED_BYTES)
  assertBytes('Ed25519 seed', bytes, SIGN_SEED_BYTES)
  try {
    const pair = sodium().crypto_sign_seed_keypair(bytes)
    return { publicKey: pair.publicKey, secretKey: pair.privateKey }
  } finally {
    if (ownSeed) memzero(bytes)
  }
}

/** Detached Ed25519 signature of `message` (RFC 8032 section 5.1.6; E2E.md sections 2.1 and 2.4). */
export function sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  assertBytes('Ed25519 secret key', secretKey, SIGN_SECRET_KEY_BYTES)
  assertBytes('message', message)
  return sodium().crypto_sign_detached(message, secretKey)
}

/**
 * Verifies a detached Ed25519 signature (E2E.md section 2). libsodium's `crypto_sign_verify_detached`
 * returns `false` on failure; this returns `false` for that and for any malformed input, never throws.
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return ed25519Verify(publicKey, message, signature) === true
}

/** Like {@link verify} but throws `bad_signature` instead of returning `false` (E2E.md section 2, fail closed). */
export function verifyOrThrow(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): void {
  if (!verify(publicKey, message, signature))
    throw new E2eError('bad_signature', 'Ed25519 signature did not verify')
}

/** An X25519 key pair (DXK, SPK, EK; E2E.md sections 2.1 and 2.2). */
export interface DhKeyPair {
  readonly publicKey: Uint8Array
  readonly secretKey: Uint8Array
}

/** A fresh X25519 key pair, or the one of `secretKey` (RFC 7748 section 6.1; E2E.md section 2.2). */
export function dhKeyPair(secretKey?: Uint8Array): DhKeyPair {
  const secret = secretKey ?? secretRandomBytes(DH_KEY_BYTES)
  assertBytes('X25519 secret key', secret, DH_KEY_BYTES)
  return { publicKey: sodium().crypto_scalarmult_base(secret), secretKey: secret }
}

/**
 * X25519(secret, public) (RFC 7748 section 5; E2E.md section 2.2). libsodium throws when the result is
 * all zeros (a low-order peer key); that becomes `bad_key`.
 */
export function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  assertBytes('X25519 secret key', secretKey, DH_KEY_BYTES)
  assertBytes('X25519 public key', publicKey, DH_KEY_BYTES)
  const s = sodium()
  try {
    return s.crypto_scalarmult(secretKey, publicKey)
  } catch {
    throw new E2eError('bad_key', 'X25519 refused the public key')
  }
}

/** BLAKE2b (RFC 7693) with a `length`-byte digest, keyed if `key` is given (`crypto_generichash`; E2E.md section 2). */
export function generichash(length: number, message: Uint8Array, key?: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 16 || length > 64)
    throw new E2eError('bad_input', 'generichash length must be 16..64')
  assertBytes('message', message)
  if (key !== undefined) {
    assertBytes('generichash key', key)
    if (key.length < 16 || key.length > 64)
      throw new E2eError('bad_input', 'generichash key must be 16..64 bytes')
  }
  return sodium().crypto_generichash(length, message, key ?? null)
}

/**
 * `crypto_kdf_derive_from_key(length, subkeyId, context, key)` (E2E.md sections 2.4 and 2.5): BLAKE2b
 * keyed with `key`, salt `LE64(subkeyId) ‖ 0^8`, personal `context ‖ 0^8`. `context` is 8 ASCII chars.
 */
export function kdfDerive(length: number, subkeyId: number, context: string, key: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 16 || length > 64)
    throw new E2eError('bad_input', 'kdf length must be 16..64')
  if (!Number.isSafeInteger(subkeyId) || subkeyId < 0)
    throw new E2eError('bad_input', 'kdf subkey id out of range')
  if (typeof context !== 'string' || !/^[\x20-\x7e]{8}$/.test(context))
    throw new E2eError('bad_input', 'kdf context must be 8 printable ASCII characters')
  assertBytes('kdf key', key, 32)
  return sodium().crypto_kdf_derive_from_key(length, subkeyId, context, key)
}

/** Pads to a multiple of 256 bytes with ISO/IEC 7816-4 padding, always adding at least one byte (E2E.md section 2.4). */
export function pad(plaintext: Uint8Array): Uint8Array {
  assertBytes('plaintext', plaintext)
  return sodium().pad(plaintext, PAD_BLOCK_BYTES)
}

/** Removes {@link pad}'s padding; malformed padding (after a successful AEAD) is `bad_padding` (E2E.md section 2.4). */
export function unpad(padded: Uint8Array): Uint8Array {
  assertBytes('padded plaintext', padded)
  if (padded.length === 0 || padded.length % PAD_BLOCK_BYTES !== 0)
    throw new E2eError('bad_padding', 'padded length is not a multiple of 256')
  try {
    return sodium().unpad(padded, PAD_BLOCK_BYTES)
  } catch {
    throw new E2eError('bad_padding', 'invalid padding')
  }
}
