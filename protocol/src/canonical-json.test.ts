import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  CanonicalJsonError,
  MAX_CANONICAL_DEPTH,
  canonicalJson,
  exceedsJsonDepth,
  jsonDepth,
  tryCanonicalJson,
  type JsonValue,
} from './canonical-json.ts'

/** `n` nested arrays around a scalar: `nestArrays(2)` is `[[0]]`, of depth 2. Built iteratively. */
function nestArrays(n: number): unknown {
  let value: unknown = 0
  for (let i = 0; i < n; i++) value = [value]
  return value
}

/** `n` nested objects around a scalar: `nestObjects(2)` is `{"a":{"a":0}}`, of depth 2. */
function nestObjects(n: number): unknown {
  let value: unknown = 0
  for (let i = 0; i < n; i++) value = { a: value }
  return value
}

// mulberry32: a tiny seeded PRNG, so a shuffle is reproducible from the seed fast-check chose.
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A deep copy of `value` whose objects have their keys inserted in a shuffled order. */
function reorderKeys(value: JsonValue, random: () => number): JsonValue {
  if (Array.isArray(value)) return value.map((item) => reorderKeys(item, random))
  if (value === null || typeof value !== 'object') return value
  const entries = Object.entries(value)
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[entries[i], entries[j]] = [entries[j]!, entries[i]!]
  }
  // fromEntries defines own properties, so a `__proto__` key stays a key and never sets a prototype.
  return Object.fromEntries(entries.map(([k, v]) => [k, reorderKeys(v, random)]))
}

// Values that have a canonical form: safe integers, ASCII keys, well-formed (possibly astral) strings.
// Prototype-related and integer-like keys are mixed in: JS objects treat both specially.
const asciiKey = fc.oneof(
  fc.string({ unit: 'binary-ascii', maxLength: 8 }),
  fc.constantFrom('__proto__', 'constructor', 'toString', '0', '10', '9'),
)
const wellFormedText = fc.string({ unit: 'binary', maxLength: 12 })
const scalar = fc.oneof(fc.constant(null), fc.boolean(), fc.maxSafeInteger(), wellFormedText)
const { json: canonicalValue } = fc.letrec<{ json: JsonValue }>((tie) => ({
  json: fc.oneof(
    { maxDepth: 4, depthSize: 'small' },
    scalar,
    fc.array(tie('json'), { maxLength: 5 }),
    fc.dictionary(asciiKey, tie('json'), { maxKeys: 5 }),
  ),
}))

describe('canonicalJson known answers', () => {
  const vectors: ReadonlyArray<readonly [string, unknown, string]> = [
    ['null', null, 'null'],
    ['true', true, 'true'],
    ['false', false, 'false'],
    ['zero', 0, '0'],
    ['negative zero as zero', -0, '0'],
    ['negative integer', -42, '-42'],
    ['largest safe integer', Number.MAX_SAFE_INTEGER, '9007199254740991'],
    ['smallest safe integer', Number.MIN_SAFE_INTEGER, '-9007199254740991'],
    ['empty string', '', '""'],
    ['empty object', {}, '{}'],
    ['empty array', [], '[]'],
    ['arrays keep their order', [3, 1, 2], '[3,1,2]'],
    ['object keys sorted', { b: 1, a: 2 }, '{"a":2,"b":1}'],
    [
      'nested keys sorted at every level',
      { z: { y: 1, x: [3, { d: 1, c: 2 }] }, a: null },
      '{"a":null,"z":{"x":[3,{"c":2,"d":1}],"y":1}}',
    ],
    [
      'keys sorted by code point, not case-folded',
      { a: 1, B: 2, _: 3, '1': 4, '': 5 },
      '{"":5,"1":4,"B":2,"_":3,"a":1}',
    ],
    ['integer-like keys sorted as strings', { '10': 1, '9': 2, '2': 3 }, '{"10":1,"2":3,"9":2}'],
    ['no insignificant whitespace', { a: [1, 2], b: { c: true } }, '{"a":[1,2],"b":{"c":true}}'],
    ['control characters as \\u escapes', '\u0000\u0001\u001f', String.raw`"\u0000\u0001\u001f"`],
    ['short escapes for \\b \\f \\n \\r \\t', '\b\f\n\r\t', String.raw`"\b\f\n\r\t"`],
    ['quote and backslash escaped', 'say "hi" \\ now', String.raw`"say \"hi\" \\ now"`],
    ['slash and DEL emitted raw', 'a/b\u007f', '"a/b\u007f"'],
    ['non-ASCII emitted raw', 'café ü 日本', '"café ü 日本"'],
    ['astral characters emitted raw', 'hi 😀', '"hi 😀"'],
    ['line and paragraph separators emitted raw', '\u2028\u2029', '"\u2028\u2029"'],
    ['keys escaped like strings', { 'a"b': 1, 'a\\b': 2, '\n': 3 }, String.raw`{"\n":3,"a\"b":1,"a\\b":2}`],
    ['null-prototype objects', Object.assign(Object.create(null) as object, { b: 1, a: 2 }), '{"a":2,"b":1}'],
    ['__proto__ as an ordinary own key', JSON.parse('{"__proto__":1,"a":2}'), '{"__proto__":1,"a":2}'],
  ]

  it.each(vectors)('encodes %s', (_name, input, expected) => {
    expect(canonicalJson(input)).toBe(expected)
    expect(tryCanonicalJson(input)).toBe(expected)
  })

  it('accepts exactly MAX_CANONICAL_DEPTH levels of nesting', () => {
    expect(MAX_CANONICAL_DEPTH).toBe(64)
    expect(canonicalJson(nestArrays(MAX_CANONICAL_DEPTH))).toBe(
      '['.repeat(MAX_CANONICAL_DEPTH) + '0' + ']'.repeat(MAX_CANONICAL_DEPTH),
    )
    expect(jsonDepth(nestObjects(MAX_CANONICAL_DEPTH))).toBe(MAX_CANONICAL_DEPTH)
    expect(tryCanonicalJson(nestObjects(MAX_CANONICAL_DEPTH))).not.toBeNull()
  })
})

describe('canonicalJson rejects values without a canonical form', () => {
  class Point {
    x = 1
  }
  const sparse: unknown[] = []
  sparse[1] = 1
  const rejected: ReadonlyArray<readonly [string, unknown]> = [
    ['a float', 1.5],
    ['a tiny float', Number.EPSILON],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['2^53', 2 ** 53],
    ['-(2^53)', -(2 ** 53)],
    ['1e300', 1e300],
    ['undefined', undefined],
    ['undefined as an object value', { a: undefined }],
    ['undefined in an array', [1, undefined]],
    ['a hole in a sparse array', sparse],
    ['a function', () => 1],
    ['a function as an object value', { f: () => 1 }],
    ['a bigint', 1n],
    ['a symbol', Symbol('s')],
    ['a Date', new Date(0)],
    ['a Map', new Map([['a', 1]])],
    ['a Set', new Set([1])],
    ['a RegExp', /a/],
    ['a class instance', new Point()],
    ['a Uint8Array', new Uint8Array(2)],
    ['a boxed string', new String('a')],
    ['a boxed number', new Number(1)],
    ['a lone high surrogate', '\ud800'],
    ['a lone low surrogate', '\udc00'],
    ['a high surrogate followed by ASCII', 'a\ud83dz'],
    ['a reversed surrogate pair', '\ude00\ud83d'],
    ['a lone surrogate in a key', { '\ud800': 1 }],
    ['a lone surrogate in a nested value', { a: [{ b: 'x\udfffy' }] }],
    ['a non-ASCII key', { café: 1 }],
    ['an astral key', { '😀': 1 }],
    ['a float nested deep inside', { a: [1, { b: [2, 0.1] }] }],
    ['nesting one level too deep (arrays)', nestArrays(MAX_CANONICAL_DEPTH + 1)],
    ['nesting one level too deep (objects)', nestObjects(MAX_CANONICAL_DEPTH + 1)],
  ]

  it.each(rejected)('rejects %s', (_name, input) => {
    expect(() => canonicalJson(input)).toThrow(CanonicalJsonError)
    expect(tryCanonicalJson(input)).toBeNull()
  })

  it('names its error class', () => {
    const error = (() => {
      try {
        canonicalJson(1.5)
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(Error)
    expect(error).toHaveProperty('name', 'CanonicalJsonError')
  })

  it('rejects 100k-deep nesting with CanonicalJsonError, not a stack overflow', () => {
    const deep = nestArrays(100_000)
    expect(() => canonicalJson(deep)).toThrow(CanonicalJsonError)
    expect(tryCanonicalJson(deep)).toBeNull()
  })

  it('lets tryCanonicalJson rethrow errors that are not about canonical form', () => {
    const hostile = {
      get a(): never {
        throw new TypeError('boom')
      },
    }
    expect(() => tryCanonicalJson(hostile)).toThrow(TypeError)
  })
})

describe('canonicalJson properties', () => {
  it('round-trips through JSON.parse', () => {
    fc.assert(
      fc.property(canonicalValue, (value) => {
        expect(JSON.parse(canonicalJson(value))).toEqual(value)
      }),
      { numRuns: 300 },
    )
  })

  it('does not depend on key insertion order', () => {
    fc.assert(
      fc.property(canonicalValue, fc.integer(), (value, seed) => {
        expect(canonicalJson(reorderKeys(value, prng(seed)))).toBe(canonicalJson(value))
      }),
      { numRuns: 300 },
    )
  })

  it('is idempotent', () => {
    fc.assert(
      fc.property(canonicalValue, (value) => {
        const once = canonicalJson(value)
        expect(canonicalJson(JSON.parse(once))).toBe(once)
      }),
      { numRuns: 300 },
    )
  })

  it('agrees with tryCanonicalJson', () => {
    fc.assert(
      fc.property(canonicalValue, (value) => {
        expect(tryCanonicalJson(value)).toBe(canonicalJson(value))
      }),
      { numRuns: 200 },
    )
  })

  const nonInteger = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n))
  const unsafeInteger = fc.double({ min: 2 ** 53, noNaN: true }).chain((n) => fc.constantFrom(n, -n))
  const loneSurrogate = fc
    .tuple(
      fc.string({ unit: 'grapheme-ascii', maxLength: 4 }),
      fc.integer({ min: 0xd800, max: 0xdfff }),
      fc.string({ unit: 'grapheme-ascii', maxLength: 4 }),
    )
    .map(([before, unit, after]) => before + String.fromCharCode(unit) + after)
  const nonAsciiKey = fc
    .string({ unit: 'binary', minLength: 1, maxLength: 6 })
    .filter((key) => [...key].some((c) => c.codePointAt(0)! > 0x7f))
  const unsupported = fc.constantFrom<unknown>(undefined, () => 0, 10n, Symbol('x'), new Date(1), new Map())
  const badValue = fc.oneof(
    nonInteger,
    unsafeInteger,
    fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
    loneSurrogate,
    unsupported,
    nonAsciiKey.map((key) => ({ [key]: 1 })),
    loneSurrogate.map((key) => ({ [key]: 1 })),
  )

  it('rejects a bad value wherever it is embedded', () => {
    fc.assert(
      fc.property(canonicalValue, badValue, fc.boolean(), (good, bad, inArray) => {
        const value = inArray ? [good, bad] : { good, bad }
        expect(() => canonicalJson(value)).toThrow(CanonicalJsonError)
        expect(tryCanonicalJson(value)).toBeNull()
      }),
      { numRuns: 300 },
    )
  })
})

describe('jsonDepth', () => {
  it.each([
    ['a scalar', 'x', 0],
    ['null', null, 0],
    ['an empty array', [], 1],
    ['an empty object', {}, 1],
    ['a flat array of scalars', [1, 'a', null], 1],
    ['nested arrays', [[]], 2],
    ['mixed nesting', { a: [{}] }, 3],
    ['the deepest branch wins', { a: 1, b: [[[]]], c: [{}] }, 4],
  ])('measures %s', (_name, value, depth) => {
    expect(jsonDepth(value)).toBe(depth)
  })

  it('handles 100k-deep arrays and objects without overflowing the stack', () => {
    expect(jsonDepth(nestArrays(100_000))).toBe(100_000)
    expect(jsonDepth(nestObjects(100_000))).toBe(100_000)
  })

  it('matches the depth of the canonical text', () => {
    fc.assert(
      fc.property(canonicalValue, (value) => {
        // Depth is the deepest run of unclosed brackets outside strings.
        const text = canonicalJson(value)
        let depth = 0
        let max = 0
        let inString = false
        for (let i = 0; i < text.length; i++) {
          const c = text[i]
          if (inString) {
            if (c === '\\') i++
            else if (c === '"') inString = false
          } else if (c === '"') inString = true
          else if (c === '[' || c === '{') max = Math.max(max, ++depth)
          else if (c === ']' || c === '}') depth--
        }
        expect(jsonDepth(value)).toBe(max)
      }),
      { numRuns: 100 },
    )
  })
})

describe('exceedsJsonDepth', () => {
  it('agrees with jsonDepth around the limit and survives hostile depth', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 0, max: 8 }), (v, max) => {
        expect(exceedsJsonDepth(v, max)).toBe(jsonDepth(v) > max)
      }),
      { numRuns: 300 },
    )
    let deep: unknown = 1
    for (let i = 0; i < 100_000; i++) deep = [deep]
    expect(exceedsJsonDepth(deep, 16)).toBe(true)
  })
})
