import { describe, expect, it } from 'vitest'
import { utf8 } from '../../encoding.ts'
import { sodiumReady } from '../sodium.ts'
import { E2eError } from './errors.ts'
import {
  aeadDecrypt,
  aeadEncrypt,
  aeadEncryptWithNonce,
  dhKeyPair,
  encodeFields,
  generichash,
  kdfDerive,
  memzero,
  pad,
  sign,
  signingKeyPair,
  u64be,
  unpad,
  verify,
  verifyOrThrow,
  x25519,
} from './primitives.ts'

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'))
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

function expectE2eError(fn: () => unknown, code: string): void {
  let caught: unknown
  try {
    fn()
  } catch (error) {
    caught = error
  }
  expect(caught).toBeInstanceOf(E2eError)
  expect((caught as E2eError).code).toBe(code)
}

// Top-level: some fixtures are built while the suites are collected.
await sodiumReady()

// E2E.md section 3 row 1: published known-answer vectors.
describe('primitive KATs (E2E.md section 3 row 1)', () => {
  it('signs RFC 8032 section 7.1 TEST 1 to e5564300...7a100b', () => {
    const seed = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60')
    const pair = signingKeyPair(seed)
    expect(toHex(pair.publicKey)).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')
    const signature = sign(pair.secretKey, new Uint8Array(0))
    expect(toHex(signature)).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    )
    expect(verify(pair.publicKey, new Uint8Array(0), signature)).toBe(true)
    expect(seed).toEqual(hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60')) // caller's seed untouched
  })

  it('derives the RFC 7748 section 6.1 public keys (8520f009...9b4e6a) and shared secret', () => {
    const alice = dhKeyPair(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'))
    const bob = dhKeyPair(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'))
    expect(toHex(alice.publicKey)).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a')
    expect(toHex(bob.publicKey)).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f')
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'
    expect(toHex(x25519(alice.secretKey, bob.publicKey))).toBe(shared)
    expect(toHex(x25519(bob.secretKey, alice.publicKey))).toBe(shared)
  })

  it('seals draft-irtf-cfrg-xchacha A.3.1 to tag c0875924c1c7987947deafd8780acf49 and opens it', () => {
    const plaintext = utf8(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
    )
    const ad = hex('50515253c0c1c2c3c4c5c6c7')
    const key = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f')
    const nonce = hex('404142434445464748494a4b4c4d4e4f5051525354555657')
    const expected =
      'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb' +
      '731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452' +
      '2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9' +
      '21f9664c97637da9768812f615c68b13b52e' +
      'c0875924c1c7987947deafd8780acf49'
    const sealed = aeadEncryptWithNonce(key, nonce, plaintext, ad)
    expect(toHex(sealed)).toBe(expected)
    expect(aeadDecrypt(key, nonce, sealed, ad)).toEqual(plaintext)
  })

  it('hashes "abc" with BLAKE2b-512 to RFC 7693 appendix A ba80a53f981c4d0d...', () => {
    expect(toHex(generichash(64, utf8('abc')))).toBe(
      'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1' +
        '7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923',
    )
  })
})

describe('fail-closed wrappers (E2E.md section 2)', () => {
  const key = new Uint8Array(32).fill(7)
  const ad = utf8('ad')

  it('round-trips AEAD with a fresh nonce each time', () => {
    const a = aeadEncrypt(key, utf8('hi'), ad)
    const b = aeadEncrypt(key, utf8('hi'), ad)
    expect(a.nonce).not.toEqual(b.nonce)
    expect(aeadDecrypt(key, a.nonce, a.ciphertext, ad)).toEqual(utf8('hi'))
  })

  it('turns every AEAD failure into decrypt_failed or bad_input, never plaintext', () => {
    const { nonce, ciphertext } = aeadEncrypt(key, utf8('secret'), ad)
    for (let i = 0; i < ciphertext.length; i++) {
      const bad = ciphertext.slice()
      bad[i]! ^= 0x01
      expectE2eError(() => aeadDecrypt(key, nonce, bad, ad), 'decrypt_failed')
    }
    for (let i = 0; i < nonce.length; i++) {
      const bad = nonce.slice()
      bad[i]! ^= 0x80
      expectE2eError(() => aeadDecrypt(key, bad, ciphertext, ad), 'decrypt_failed')
    }
    expectE2eError(() => aeadDecrypt(key, nonce, ciphertext, utf8('other')), 'decrypt_failed')
    expectE2eError(() => aeadDecrypt(new Uint8Array(32), nonce, ciphertext, ad), 'decrypt_failed')
    expectE2eError(() => aeadDecrypt(key, nonce, ciphertext.subarray(0, 15), ad), 'decrypt_failed')
    expectE2eError(() => aeadDecrypt(key, nonce.subarray(1), ciphertext, ad), 'bad_input')
    expectE2eError(() => aeadDecrypt(key.subarray(1), nonce, ciphertext, ad), 'bad_input')
    expectE2eError(() => aeadDecrypt(key, nonce, 'text' as never, ad), 'bad_input')
  })

  it('turns a false from crypto_sign_verify_detached into bad_signature', () => {
    const pair = signingKeyPair()
    const message = utf8('m')
    const signature = sign(pair.secretKey, message)
    verifyOrThrow(pair.publicKey, message, signature)
    const bad = signature.slice()
    bad[0]! ^= 1
    expect(verify(pair.publicKey, message, bad)).toBe(false)
    expectE2eError(() => verifyOrThrow(pair.publicKey, message, bad), 'bad_signature')
    expectE2eError(() => verifyOrThrow(pair.publicKey, message, signature.subarray(1)), 'bad_signature')
    expectE2eError(() => verifyOrThrow(new Uint8Array(32), message, signature), 'bad_signature')
  })

  it('refuses low-order X25519 public keys with bad_key', () => {
    const own = dhKeyPair()
    expectE2eError(() => x25519(own.secretKey, new Uint8Array(32)), 'bad_key')
    expectE2eError(() => x25519(own.secretKey, new Uint8Array(31)), 'bad_input')
  })

  it('pads to 256-byte blocks, always adding a byte, and refuses bad padding', () => {
    expect(pad(new Uint8Array(0)).length).toBe(256)
    expect(pad(new Uint8Array(255)).length).toBe(256)
    expect(pad(new Uint8Array(256)).length).toBe(512)
    const text = utf8('hello')
    expect(unpad(pad(text))).toEqual(text)
    expectE2eError(() => unpad(new Uint8Array(256)), 'bad_padding')
    expectE2eError(() => unpad(new Uint8Array(100)), 'bad_padding')
  })

  it('derives crypto_kdf subkeys and checks its parameters', () => {
    const k = Uint8Array.from({ length: 32 }, (_, i) => i)
    expect(toHex(kdfDerive(32, 1, 'grpratch', k)).slice(0, 8)).toBe('1f4d1d7e')
    expectE2eError(() => kdfDerive(32, 1, 'short', k), 'bad_input')
    expectE2eError(() => kdfDerive(32, 1, 'grpratch', k.subarray(1)), 'bad_input')
    expectE2eError(() => kdfDerive(8, 1, 'grpratch', k), 'bad_input')
  })

  it('frames fields unambiguously and encodes u64 big-endian', () => {
    expect(encodeFields('x', 'ab', 'c')).not.toEqual(encodeFields('x', 'a', 'bc'))
    expect(toHex(u64be(258))).toBe('0000000000000102')
    expectE2eError(() => u64be(-1), 'bad_input')
  })

  it('memzero wipes in place', () => {
    const secret = new Uint8Array(32).fill(9)
    memzero(secret, null)
    expect(secret).toEqual(new Uint8Array(32))
  })
})
