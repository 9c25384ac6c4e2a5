import { blake2b } from '@noble/hashes/blake2.js'
import { beforeAll, describe, expect, it } from 'vitest'
import { concatBytes } from '../encoding.ts'
import { kxClientSessionKeys, kxKeyPairFromSeed, kxServerSessionKeys, wipe } from './kx.ts'
import { sodiumReady } from './sodium.ts'

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'))
const fill = (byte: number, length = 32): Uint8Array => new Uint8Array(length).fill(byte)

beforeAll(async () => {
  await sodiumReady()
})

// RFC 7748 section 6.1: Alice's and Bob's X25519 key pairs and their shared secret.
const RFC7748 = {
  aliceSecret: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
  alicePublic: '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
  bobSecret: '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb',
  bobPublic: 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
  shared: '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
} as const

// Points of small order (and non-canonical encodings of them): X25519 with any of them is all zeros.
const LOW_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
] as const

describe('crypto_kx', () => {
  it('derives the RFC 7748 section 6.1 session keys as BLAKE2b-512(q || client_pk || server_pk)', () => {
    const alice = { publicKey: hex(RFC7748.alicePublic), secretKey: hex(RFC7748.aliceSecret) }
    const bob = { publicKey: hex(RFC7748.bobPublic), secretKey: hex(RFC7748.bobSecret) }
    const client = kxClientSessionKeys(alice.publicKey, alice.secretKey, bob.publicKey)
    const server = kxServerSessionKeys(bob.publicKey, bob.secretKey, alice.publicKey)
    const expected = blake2b(concatBytes(hex(RFC7748.shared), alice.publicKey, bob.publicKey), { dkLen: 64 })
    expect(client).toEqual({ ok: true, value: { rx: expected.subarray(0, 32), tx: expected.subarray(32) } })
    expect(server).toEqual({ ok: true, value: { rx: expected.subarray(32), tx: expected.subarray(0, 32) } })
  })

  it('derives a key pair from a seed deterministically (secret key = BLAKE2b-256(seed))', () => {
    const one = kxKeyPairFromSeed(fill(7))
    expect(kxKeyPairFromSeed(fill(7))).toEqual(one)
    expect(one.secretKey).toEqual(blake2b(fill(7), { dkLen: 32 }))
    expect(kxKeyPairFromSeed(fill(8)).publicKey).not.toEqual(one.publicKey)
  })

  it.each(LOW_ORDER)('refuses the low-order peer key %s', (point) => {
    const own = kxKeyPairFromSeed(fill(1))
    expect(kxClientSessionKeys(own.publicKey, own.secretKey, hex(point))).toEqual({
      ok: false,
      error: 'bad_public_key',
    })
    expect(kxServerSessionKeys(own.publicKey, own.secretKey, hex(point))).toEqual({
      ok: false,
      error: 'bad_public_key',
    })
  })

  it('refuses a peer key of the wrong length as untrusted input', () => {
    const own = kxKeyPairFromSeed(fill(1))
    for (const length of [0, 31, 33])
      expect(kxClientSessionKeys(own.publicKey, own.secretKey, fill(9, length)).ok).toBe(false)
  })

  it('throws on own keys or seeds of the wrong length (caller bugs)', () => {
    const own = kxKeyPairFromSeed(fill(1))
    const peer = kxKeyPairFromSeed(fill(2)).publicKey
    expect(() => kxKeyPairFromSeed(fill(1, 31))).toThrow(TypeError)
    expect(() => kxClientSessionKeys(fill(1, 31), own.secretKey, peer)).toThrow(TypeError)
    expect(() => kxServerSessionKeys(own.publicKey, fill(1, 33), peer)).toThrow(TypeError)
  })

  it('wipe() zeroes bytes in place', () => {
    const secret = fill(5)
    wipe(secret)
    expect(secret).toEqual(new Uint8Array(32))
  })
})
