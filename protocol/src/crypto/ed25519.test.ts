import { beforeAll, describe, expect, it } from 'vitest'
import { signerFromSeed } from '../signing.ts'
import { ed25519SignerFromSeed, ed25519Verify } from './ed25519.ts'
import { sodiumReady } from './sodium.ts'

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'))

beforeAll(async () => {
  await sodiumReady()
})

// RFC 8032 section 7.1, TEST 2.
const TEST2 = {
  seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
  publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
  message: '72',
  signature:
    '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
} as const

describe('Ed25519 on libsodium', () => {
  it('reproduces RFC 8032 section 7.1 TEST 2', () => {
    const signer = ed25519SignerFromSeed('ed25519:t', hex(TEST2.seed))
    expect(signer.publicKey).toEqual(hex(TEST2.publicKey))
    expect(signer.sign(hex(TEST2.message))).toEqual(hex(TEST2.signature))
    expect(ed25519Verify(hex(TEST2.publicKey), hex(TEST2.message), hex(TEST2.signature))).toBe(true)
  })

  it('signs exactly like the Node signer in signing.ts', () => {
    const seed = new Uint8Array(32).fill(9)
    const message = new Uint8Array([1, 2, 3])
    expect(ed25519SignerFromSeed('ed25519:a', seed).sign(message)).toEqual(
      signerFromSeed('ed25519:a', seed).sign(message),
    )
  })

  it('returns false for flipped bits, wrong lengths and non-bytes, never throwing', () => {
    const pk = hex(TEST2.publicKey)
    const msg = hex(TEST2.message)
    const sig = hex(TEST2.signature)
    for (let i = 0; i < 64; i++) {
      const bad = sig.slice()
      bad[i]! ^= 1 << (i % 8)
      expect(ed25519Verify(pk, msg, bad)).toBe(false)
    }
    expect(ed25519Verify(pk, Uint8Array.of(0x73), sig)).toBe(false)
    expect(ed25519Verify(pk.subarray(1), msg, sig)).toBe(false)
    expect(ed25519Verify(pk, msg, sig.subarray(1))).toBe(false)
    expect(ed25519Verify(new Uint8Array(32), msg, sig)).toBe(false) // small-order key
    expect(ed25519Verify(pk, 'text' as never, sig)).toBe(false)
  })

  it('throws on a bad seed or kid (caller bugs)', () => {
    expect(() => ed25519SignerFromSeed('ed25519:a', new Uint8Array(31))).toThrow(TypeError)
    expect(() => ed25519SignerFromSeed('', new Uint8Array(32))).toThrow(TypeError)
  })
})
