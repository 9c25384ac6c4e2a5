import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  concatBytes,
  fromBase64Url,
  fromUtf8,
  pooledRandomBytes,
  randomBytes,
  toBase64Url,
  utf8,
} from './encoding.ts'

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0))
const URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

describe('base64url', () => {
  // RFC 4648 section 10 test vectors, without the padding that section 5 lets us omit.
  const rfc4648: ReadonlyArray<readonly [string, string]> = [
    ['', ''],
    ['f', 'Zg'],
    ['fo', 'Zm8'],
    ['foo', 'Zm9v'],
    ['foob', 'Zm9vYg'],
    ['fooba', 'Zm9vYmE'],
    ['foobar', 'Zm9vYmFy'],
  ]
  // Bytes that hit the two characters in which the URL alphabet differs from the standard one.
  const urlAlphabet: ReadonlyArray<readonly [number[], string]> = [
    [[0xfb, 0xff], '-_8'],
    [[0xfb, 0xef, 0xbe], '----'],
    [[0xff, 0xff, 0xff], '____'],
    [[0x00, 0x00, 0x00], 'AAAA'],
    [[0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f], 'ABCDEFGHIJKLMNOP'],
  ]

  it.each(rfc4648)('encodes RFC 4648 vector %j as %j', (input, encoded) => {
    expect(toBase64Url(ascii(input))).toBe(encoded)
    expect(fromBase64Url(encoded)).toEqual(ascii(input))
  })

  it.each(urlAlphabet)('encodes %j with the URL alphabet as %j', (bytes, encoded) => {
    expect(toBase64Url(Uint8Array.from(bytes))).toBe(encoded)
    expect(fromBase64Url(encoded)).toEqual(Uint8Array.from(bytes))
  })

  it('encodes 32 zero bytes as 43 As', () => {
    expect(toBase64Url(new Uint8Array(32))).toBe('A'.repeat(43))
  })

  it('decodes every alphabet character to its index', () => {
    for (let i = 0; i < 64; i++) {
      // "xAA" + padding-free tail: the character carries the top 6 bits of the first byte.
      const decoded = fromBase64Url(URL_ALPHABET[i]! + 'AAA')
      expect(decoded).toEqual(Uint8Array.from([i << 2, 0, 0]))
    }
  })

  it.each([
    ['padding', 'Zg=='],
    ['a single pad character', 'Zm8='],
    ['a padded full quantum', 'Zm9v===='],
    ['the standard alphabet "+"', '+-8'],
    ['the standard alphabet "/"', '_/8'],
    ['a length of 1 mod 4', 'Z'],
    ['a length of 5', 'Zm9vY'],
    ['non-zero trailing bits after 2 characters', 'Zh'],
    ['non-zero trailing bits after 3 characters', 'Zm9'],
    ['a space', 'Zm9v Yg'],
    ['a newline', 'Zm9v\nYg'],
    ['a non-ASCII letter', 'Zm9vé'],
    ['a character above U+00FF', 'Zm9\u0100'],
    ['a NUL', 'Zm\u00009v'],
    ['a dot', 'Zm9.'],
  ])('rejects %s', (_name, text) => {
    expect(fromBase64Url(text)).toBeNull()
  })

  it('round-trips arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const text = toBase64Url(bytes)
        expect(text).toMatch(/^[A-Za-z0-9_-]*$/)
        expect(text.length).toBe(Math.ceil((bytes.length * 4) / 3))
        expect(fromBase64Url(text)).toEqual(bytes)
      }),
    )
  })

  it("matches Node's base64url encoder", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        expect(toBase64Url(bytes)).toBe(Buffer.from(bytes).toString('base64url'))
      }),
    )
  })

  const nearlyBase64 = fc.string({
    unit: fc.constantFrom(...URL_ALPHABET, '=', '+', '/', ' '),
    maxLength: 24,
  })

  it('gives every byte string exactly one accepted encoding', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), nearlyBase64), (text) => {
        const bytes = fromBase64Url(text)
        if (bytes !== null) expect(toBase64Url(bytes)).toBe(text)
      }),
      { numRuns: 500 },
    )
  })

  it('returns a fresh array of the exact decoded length', () => {
    const bytes = fromBase64Url('Zm9vYmE')!
    expect(bytes).toBeInstanceOf(Uint8Array)
    expect(bytes.length).toBe(5)
    expect(bytes.buffer.byteLength).toBe(5)
  })
})

describe('utf8', () => {
  it.each([
    ['ASCII', 'A', [0x41]],
    ['a two-byte character', 'é', [0xc3, 0xa9]],
    ['a three-byte character', '€', [0xe2, 0x82, 0xac]],
    ['a four-byte character', '😀', [0xf0, 0x9f, 0x98, 0x80]],
    ['NUL', '\u0000', [0x00]],
    ['the empty string', '', []],
  ])('encodes %s', (_name, text, bytes) => {
    expect(utf8(text)).toEqual(Uint8Array.from(bytes))
    expect(fromUtf8(Uint8Array.from(bytes))).toBe(text)
  })

  it('encodes a lone surrogate as U+FFFD', () => {
    expect(utf8('\ud800')).toEqual(Uint8Array.from([0xef, 0xbf, 0xbd]))
  })

  it('keeps a leading U+FEFF instead of stripping it as a byte order mark', () => {
    expect(fromUtf8(utf8('\ufeffhi'))).toBe('\ufeffhi')
    expect(fromUtf8(Uint8Array.from([0xef, 0xbb, 0xbf]))).toBe('\ufeff')
  })

  it('round-trips well-formed strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 64 }), (text) => {
        expect(fromUtf8(utf8(text))).toBe(text)
        expect(utf8(text)).toEqual(new Uint8Array(Buffer.from(text, 'utf8')))
      }),
    )
  })

  it('round-trips strings that begin with U+FEFF', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('\ufeff', ''),
        fc.string({ unit: 'grapheme', maxLength: 16 }),
        (prefix, text) => {
          expect(fromUtf8(utf8(prefix + text))).toBe(prefix + text)
        },
      ),
    )
  })

  it.each([
    ['an invalid byte', [0xff]],
    ['a lone continuation byte', [0x80]],
    ['a truncated two-byte sequence', [0xc3]],
    ['a truncated three-byte sequence', [0xe2, 0x82]],
    ['an overlong encoding of "/"', [0xc0, 0xaf]],
    ['an overlong encoding of NUL', [0xc0, 0x80]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['a code point above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['valid text followed by garbage', [0x61, 0x62, 0xfe]],
  ])('fromUtf8 throws a TypeError on %s', (_name, bytes) => {
    expect(() => fromUtf8(Uint8Array.from(bytes))).toThrow(TypeError)
  })
})

describe('concatBytes', () => {
  it('concatenates in order, including empty parts', () => {
    const out = concatBytes(Uint8Array.from([1, 2]), new Uint8Array(0), Uint8Array.from([3]))
    expect(out).toEqual(Uint8Array.from([1, 2, 3]))
    expect(concatBytes()).toEqual(new Uint8Array(0))
  })

  it('returns a copy, not a view of its input', () => {
    const part = Uint8Array.from([1, 2])
    const out = concatBytes(part)
    part[0] = 9
    expect(out).toEqual(Uint8Array.from([1, 2]))
  })
})

describe('randomBytes', () => {
  it('returns the requested number of bytes, differently each time', () => {
    expect(randomBytes(0)).toEqual(new Uint8Array(0))
    const a = randomBytes(32)
    const b = randomBytes(32)
    expect(a.length).toBe(32)
    expect(toBase64Url(a)).not.toBe(toBase64Url(b))
  })
})

describe('pooledRandomBytes', () => {
  it('hands out distinct bytes of the requested length across pool refills', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 1000; i++) {
      const b = pooledRandomBytes(16)
      expect(b.length).toBe(16)
      seen.add(toBase64Url(b))
    }
    expect(seen.size).toBe(1000)
    expect(pooledRandomBytes(300).length).toBe(300)
  })
})
