/** BLAKE2b-256 (RFC 7693 with a 32-byte digest), the hash of DESIGN.md sections 2-3. */
import { sodium } from './sodium.ts'
import { utf8 } from '../encoding.ts'

/** BLAKE2b with a 32-byte output (not a truncated BLAKE2b-512: the digest length is in the parameter block). */
export function blake2b256(data: Uint8Array | string): Uint8Array {
  return sodium().crypto_generichash(32, typeof data === 'string' ? utf8(data) : data, null)
}

/** Constant-time equality of two byte arrays (lengths are public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}
