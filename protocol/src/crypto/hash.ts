/**
 * BLAKE2b-256 (RFC 7693 with a 32-byte digest), the hash of DESIGN.md sections 2-3; SHA-256 (FIPS
 * 180-4) names media bytes (docs/federation.md, "Media").
 */
import { sodium } from './sodium.ts'
import { utf8 } from '../encoding.ts'

/** BLAKE2b with a 32-byte output (not a truncated BLAKE2b-512: the digest length is in the parameter block). */
export function blake2b256(data: Uint8Array | string): Uint8Array {
  return sodium().crypto_generichash(32, typeof data === 'string' ? utf8(data) : data, null)
}

/** SHA-256 (FIPS 180-4) of `data`, 32 bytes. Call `sodiumReady()` first. */
export function sha256(data: Uint8Array): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new TypeError('sha256 takes a Uint8Array')
  return sodium().crypto_hash_sha256(data)
}

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += b.toString(16).padStart(2, '0')
  return out
}

/** Constant-time equality of two byte arrays (lengths are public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}
