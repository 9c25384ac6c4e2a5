/**
 * Ed25519 server signing keys on Node's built-in crypto (29 us per signature here, faster than libsodium's WASM: docs/architecture.md).
 * Server-side only: import it as `@parley/protocol/signing`, never from browser code.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import { fromBase64Url, randomBytes, toBase64Url } from './encoding.ts'

// RFC 8410 DER prefixes for raw Ed25519 keys.
const PKCS8_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
])
const SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])

/** A key that signs on behalf of a server. */
export interface Signer {
  /** Key id, e.g. `ed25519:a1`. Never reused. */
  readonly kid: string
  /** Raw 32-byte public key. */
  readonly publicKey: Uint8Array
  /** Signs `message`, returning a 64-byte signature. */
  sign(message: Uint8Array): Uint8Array
}

/** A fresh 32-byte Ed25519 seed. */
export function generateSeed(): Uint8Array {
  return randomBytes(32)
}

/** Builds a {@link Signer} from a 32-byte seed. Throws on a wrong length (a caller bug). */
export function signerFromSeed(kid: string, seed: Uint8Array): Signer {
  if (seed.length !== 32) throw new TypeError('Ed25519 seed must be 32 bytes')
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' })
  const publicKey = new Uint8Array(spki.subarray(SPKI_PREFIX.length))
  return { kid, publicKey, sign: (message) => new Uint8Array(sign(null, message, key)) }
}

const publicKeyCache = new Map<string, KeyObject>()

function publicKeyObject(raw: Uint8Array): KeyObject {
  const id = toBase64Url(raw)
  let key = publicKeyCache.get(id)
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
    if (publicKeyCache.size > 10_000) publicKeyCache.clear()
    publicKeyCache.set(id, key)
  }
  return key
}

/** Verifies an Ed25519 signature. Untrusted input: returns `false` for anything malformed, never throws. */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  try {
    return verify(null, message, publicKeyObject(publicKey), signature)
  } catch {
    return false
  }
}

/** Verifies a base64url signature with a base64url public key; `false` for anything malformed. */
export function verifySignatureB64(publicKeyB64: string, message: Uint8Array, signatureB64: string): boolean {
  const key = fromBase64Url(publicKeyB64)
  const sig = fromBase64Url(signatureB64)
  return key !== null && sig !== null && verifySignature(key, message, sig)
}
