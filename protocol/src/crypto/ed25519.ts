/**
 * Ed25519 (RFC 8032 section 5.1) on libsodium, for code that must also run in browsers. Servers sign
 * with Node's faster built-in crypto in `signing.ts`; both produce identical signatures (Ed25519 is
 * deterministic, RFC 8032 section 5.1.6).
 */
import { sodium } from './sodium.ts'

/** Bytes of an Ed25519 seed (the RFC 8032 secret key). */
export const ED25519_SEED_BYTES = 32
/** Bytes of an Ed25519 public key. */
export const ED25519_PUBLIC_KEY_BYTES = 32
/** Bytes of an Ed25519 signature. */
export const ED25519_SIGNATURE_BYTES = 64

/** Something that signs with one Ed25519 key: the shape of `signing.ts`'s `Signer`. */
export interface Ed25519Signer {
  /** Key id, e.g. `ed25519:a1`. Never reused. */
  readonly kid: string
  /** Raw 32-byte public key. */
  readonly publicKey: Uint8Array
  /** Signs `message`, returning a 64-byte signature. */
  sign(message: Uint8Array): Uint8Array
}

/**
 * A signer over libsodium's `crypto_sign_detached` from a 32-byte seed. Throws on a wrong seed length
 * (a caller bug). The expanded secret key stays inside the returned closure.
 */
export function ed25519SignerFromSeed(kid: string, seed: Uint8Array): Ed25519Signer {
  if (typeof kid !== 'string' || kid.length === 0) throw new TypeError('kid must be a non-empty string')
  if (!(seed instanceof Uint8Array) || seed.length !== ED25519_SEED_BYTES)
    throw new TypeError('Ed25519 seed must be a Uint8Array of 32 bytes')
  const pair = sodium().crypto_sign_seed_keypair(seed)
  const secretKey = pair.privateKey
  return {
    kid,
    publicKey: pair.publicKey,
    sign(message) {
      if (!(message instanceof Uint8Array)) throw new TypeError('message must be a Uint8Array')
      return sodium().crypto_sign_detached(message, secretKey)
    },
  }
}

/**
 * Verifies an Ed25519 signature with libsodium's `crypto_sign_verify_detached` (which also refuses
 * non-canonical encodings and small-order keys). Untrusted input: `false` for anything malformed,
 * never throws.
 */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_BYTES) return false
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_BYTES) return false
  if (!(message instanceof Uint8Array)) return false
  const s = sodium() // outside the try: libsodium not being ready is a caller bug, not a bad signature
  try {
    return s.crypto_sign_verify_detached(signature, message, publicKey)
  } catch {
    return false
  }
}
