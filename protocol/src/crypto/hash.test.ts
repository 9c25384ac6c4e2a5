import { beforeAll, describe, expect, it } from 'vitest'
import { utf8 } from '../encoding.ts'
import { sha256, toHex } from './hash.ts'
import { sodiumReady } from './sodium.ts'

beforeAll(async () => {
  await sodiumReady()
})

describe('sha256', () => {
  // FIPS 180-4 examples (NIST CSRC "SHA256.pdf") and the empty string.
  it.each([
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [
      'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq',
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    ],
  ])('hashes %j to the FIPS 180-4 digest', (input, digest) => {
    expect(toHex(sha256(utf8(input)))).toBe(digest)
  })

  it('refuses what is not bytes (a caller bug)', () => {
    expect(() => sha256('abc' as unknown as Uint8Array)).toThrow(TypeError)
  })
})
