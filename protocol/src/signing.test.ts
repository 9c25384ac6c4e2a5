import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { toBase64Url, utf8 } from './encoding.ts'
import { generateSeed, signerFromSeed, verifySignature, verifySignatureB64 } from './signing.ts'

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'))

/** A copy of `bytes` with bit `bit` of byte `index` flipped. */
function flip(bytes: Uint8Array, index: number, bit = 0): Uint8Array {
  const out = bytes.slice()
  out[index]! ^= 1 << bit
  return out
}

// RFC 8032 section 7.1: TEST 1, TEST 2 and TEST 3 (secret key = 32-byte seed).
const RFC8032 = [
  {
    name: 'TEST 1 (empty message)',
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2 (one byte)',
    seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature:
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    name: 'TEST 3 (two bytes)',
    seed: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    publicKey: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature:
      '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
] as const

describe('RFC 8032 section 7.1 test vectors', () => {
  it.each(RFC8032)('$name: derives the public key and signature from the seed', (vector) => {
    const signer = signerFromSeed('ed25519:rfc', hex(vector.seed))
    expect(signer.kid).toBe('ed25519:rfc')
    expect(signer.publicKey).toEqual(hex(vector.publicKey))
    expect(signer.sign(hex(vector.message))).toEqual(hex(vector.signature))
    expect(verifySignature(hex(vector.publicKey), hex(vector.message), hex(vector.signature))).toBe(true)
    expect(
      verifySignatureB64(
        toBase64Url(hex(vector.publicKey)),
        hex(vector.message),
        toBase64Url(hex(vector.signature)),
      ),
    ).toBe(true)
  })
})

describe('signerFromSeed', () => {
  it.each([0, 31, 33, 64])('throws a TypeError on a %i-byte seed (a caller bug)', (length) => {
    expect(() => signerFromSeed('ed25519:a1', new Uint8Array(length))).toThrow(TypeError)
  })

  it('returns a 32-byte public key and deterministic 64-byte signatures', () => {
    const signer = signerFromSeed('ed25519:a1', hex(RFC8032[0].seed))
    const message = utf8('hello')
    expect(signer.publicKey.length).toBe(32)
    expect(signer.sign(message).length).toBe(64)
    expect(signer.sign(message)).toEqual(signer.sign(message))
  })

  it('does not keep a reference to the caller seed array', () => {
    const seed = hex(RFC8032[0].seed)
    const signer = signerFromSeed('ed25519:a1', seed)
    seed.fill(0)
    expect(signer.sign(new Uint8Array(0))).toEqual(hex(RFC8032[0].signature))
  })
})

describe('generateSeed', () => {
  it('returns 32 fresh random bytes', () => {
    const a = generateSeed()
    expect(a.length).toBe(32)
    expect(toBase64Url(a)).not.toBe(toBase64Url(generateSeed()))
    expect(() => signerFromSeed('ed25519:a1', a)).not.toThrow()
  })
})

describe('verifySignature on bad input', () => {
  const vector = RFC8032[2]
  const publicKey = hex(vector.publicKey)
  const message = hex(vector.message)
  const signature = hex(vector.signature)
  // The group order L = 2^252 + 27742317777372353535851937790883648493 (RFC 8032 section 5.1).
  const L = 2n ** 252n + 27742317777372353535851937790883648493n

  /** The same signature with S replaced by S + L: valid for a lax verifier, rejected by RFC 8032 5.1.7. */
  function malleated(sig: Uint8Array): Uint8Array {
    let s = 0n
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!)
    s += L
    const out = sig.slice()
    for (let i = 32; i < 64; i++) {
      out[i] = Number(s & 0xffn)
      s >>= 8n
    }
    return out
  }

  it.each([
    ['first bit of R', () => [publicKey, message, flip(signature, 0)]],
    ['a bit in the middle of R', () => [publicKey, message, flip(signature, 17, 5)]],
    ['first bit of S', () => [publicKey, message, flip(signature, 32)]],
    ['last bit of S', () => [publicKey, message, flip(signature, 63, 7)]],
    ['a bit of the message', () => [publicKey, flip(message, 1, 3), signature]],
    ['the first bit of the public key', () => [flip(publicKey, 0), message, signature]],
    ['the last bit of the public key', () => [flip(publicKey, 31, 7), message, signature]],
    ['a message with an extra byte', () => [publicKey, Uint8Array.from([...message, 0]), signature]],
    ['a truncated message', () => [publicKey, message.subarray(0, 1), signature]],
    ['S + L (a malleated signature)', () => [publicKey, message, malleated(signature)]],
    ['another key', () => [hex(RFC8032[0].publicKey), message, signature]],
    ['a 31-byte key', () => [publicKey.subarray(0, 31), message, signature]],
    ['a 33-byte key', () => [Uint8Array.from([...publicKey, 0]), message, signature]],
    ['an empty key', () => [new Uint8Array(0), message, signature]],
    ['a 63-byte signature', () => [publicKey, message, signature.subarray(0, 63)]],
    ['a 65-byte signature', () => [publicKey, message, Uint8Array.from([...signature, 0])]],
    ['an empty signature', () => [publicKey, message, new Uint8Array(0)]],
    ['an all-zero key and signature', () => [new Uint8Array(32), message, new Uint8Array(64)]],
    ['an all-0xff key', () => [new Uint8Array(32).fill(0xff), message, signature]],
    ['an all-0xff signature', () => [publicKey, message, new Uint8Array(64).fill(0xff)]],
  ] as ReadonlyArray<readonly [string, () => Uint8Array[]]>)('returns false for %s', (_name, args) => {
    const [key, msg, sig] = args()
    expect(verifySignature(key!, msg!, sig!)).toBe(false)
  })

  it('returns false, never throws, for random keys and signatures', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        (key, sig) => {
          expect(verifySignature(key, message, sig)).toBe(false)
        },
      ),
      {
        numRuns: 200,
      },
    )
  })
})

describe('verifySignatureB64', () => {
  const vector = RFC8032[1]
  const message = hex(vector.message)
  const keyB64 = toBase64Url(hex(vector.publicKey))
  const sigB64 = toBase64Url(hex(vector.signature))
  const standard = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')

  it.each([
    ['a padded key', () => [keyB64 + '=', sigB64]],
    ['a padded signature', () => [keyB64, sigB64 + '==']],
    ['a key in the standard alphabet with padding', () => [standard(hex(vector.publicKey)), sigB64]],
    ['a signature in the standard alphabet with padding', () => [keyB64, standard(hex(vector.signature))]],
    ['an empty key', () => ['', sigB64]],
    ['an empty signature', () => [keyB64, '']],
    ['a key with a space', () => [' ' + keyB64, sigB64]],
    ['a signature with a non-ASCII character', () => [keyB64, sigB64.slice(0, -1) + 'é']],
    ['a key of impossible length', () => [keyB64 + 'A', sigB64]],
    ['garbage', () => ['not base64!', '???']],
    ['a valid signature under another key', () => [toBase64Url(hex(RFC8032[0].publicKey)), sigB64]],
  ] as ReadonlyArray<readonly [string, () => [string, string]]>)('returns false for %s', (_name, args) => {
    const [key, sig] = args()
    expect(verifySignatureB64(key, message, sig)).toBe(false)
  })

  it('never throws on arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (key, sig) => {
        expect(verifySignatureB64(key, message, sig)).toBe(false)
      }),
      { numRuns: 200 },
    )
  })
})

describe('sign then verify', () => {
  const seed = fc.uint8Array({ minLength: 32, maxLength: 32 })
  const message = fc.uint8Array({ maxLength: 256 })

  it('verifies what it signs and nothing else', () => {
    fc.assert(
      fc.property(seed, message, (seedBytes, msg) => {
        const signer = signerFromSeed('ed25519:p', seedBytes)
        const sig = signer.sign(msg)
        expect(verifySignature(signer.publicKey, msg, sig)).toBe(true)
        expect(verifySignatureB64(toBase64Url(signer.publicKey), msg, toBase64Url(sig))).toBe(true)
        expect(verifySignature(signer.publicKey, Uint8Array.from([...msg, 1]), sig)).toBe(false)
        expect(verifySignature(signer.publicKey, msg, flip(sig, msg.length % 64))).toBe(false)
        if (msg.length > 0) expect(verifySignature(signer.publicKey, flip(msg, 0), sig)).toBe(false)
      }),
      { numRuns: 100 },
    )
  })

  it('keeps verifying one key after many other keys were used', () => {
    const first = signerFromSeed('ed25519:first', new Uint8Array(32).fill(1))
    const sig = first.sign(utf8('hi'))
    for (let i = 0; i < 50; i++) {
      const other = signerFromSeed('ed25519:o', new Uint8Array(32).fill(i + 2))
      expect(verifySignature(other.publicKey, utf8('hi'), other.sign(utf8('hi')))).toBe(true)
    }
    expect(verifySignature(first.publicKey, utf8('hi'), sig)).toBe(true)
  })
})
