/**
 * Canonical JSON (DESIGN.md section 2): the only serialisation that is ever hashed or signed.
 *
 * - object keys sorted by code point, ASCII only;
 * - no insignificant whitespace;
 * - numbers are integers with |n| <= 2^53 - 1 (no floats, NaN or infinities);
 * - strings are well-formed Unicode (no lone surrogates), escaped as `JSON.stringify` does;
 * - only plain objects, arrays, strings, integers, booleans and null.
 */

/** Thrown when a value has no canonical form. Caller bugs throw; untrusted input should be checked first. */
export class CanonicalJsonError extends Error {
  override name = 'CanonicalJsonError'
}

/** Values that have a canonical JSON form. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue }

/** Maximum nesting depth accepted by {@link canonicalJson}. */
export const MAX_CANONICAL_DEPTH = 64

// Any UTF-16 surrogate not part of a valid pair.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/

// Native String.prototype.isWellFormed (ES2024) where present: much cheaper than the regex.
const isWellFormed: (text: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (text) => (text as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (text) => !LONE_SURROGATE.test(text)

function encodeString(text: string): string {
  if (!isWellFormed(text)) throw new CanonicalJsonError('string contains a lone surrogate')
  return JSON.stringify(text)
}

function encode(value: unknown, depth: number): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false'
    case 'number':
      if (!Number.isSafeInteger(value)) throw new CanonicalJsonError(`not a safe integer: ${value}`)
      return Object.is(value, -0) ? '0' : String(value)
    case 'string':
      return encodeString(value)
    case 'object': {
      if (depth >= MAX_CANONICAL_DEPTH) throw new CanonicalJsonError('nesting too deep')
      if (Array.isArray(value)) {
        let out = '['
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ','
          out += encode(value[i], depth + 1)
        }
        return out + ']'
      }
      const proto = Object.getPrototypeOf(value) as unknown
      if (proto !== Object.prototype && proto !== null) throw new CanonicalJsonError('not a plain object')
      const keys = Object.keys(value).sort()
      let out = '{'
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!
        if (NON_ASCII.test(key)) throw new CanonicalJsonError(`non-ASCII key: ${JSON.stringify(key)}`)
        const item = (value as Record<string, unknown>)[key]
        if (item === undefined) throw new CanonicalJsonError(`undefined value at key ${key}`)
        if (i > 0) out += ','
        out += JSON.stringify(key) + ':' + encode(item, depth + 1)
      }
      return out + '}'
    }
    default:
      throw new CanonicalJsonError(`unsupported type: ${typeof value}`)
  }
}

/**
 * Serialises `value` canonically. Throws {@link CanonicalJsonError} if it has no canonical form.
 * ASCII keys sort identically by UTF-16 unit and by code point, so the default sort is exact.
 */
export function canonicalJson(value: unknown): string {
  return encode(value, 0)
}

/** Like {@link canonicalJson} but returns `null` instead of throwing: for untrusted input. */
export function tryCanonicalJson(value: unknown): string | null {
  try {
    return encode(value, 0)
  } catch (err) {
    if (err instanceof CanonicalJsonError) return null
    throw err
  }
}

/**
 * True if a parsed JSON value nests deeper than `max` (a scalar has depth 0). Stops descending past
 * `max`, so hostile depth costs nothing and recursion stays shallow.
 */
export function exceedsJsonDepth(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false
  if (max <= 0) return true
  if (Array.isArray(value)) {
    for (const item of value) if (exceedsJsonDepth(item, max - 1)) return true
    return false
  }
  for (const key in value) {
    if (exceedsJsonDepth((value as Record<string, unknown>)[key], max - 1)) return true
  }
  return false
}

/** Nesting depth of a parsed JSON value (a scalar has depth 0). Iterative, so hostile depth cannot overflow the stack. */
export function jsonDepth(value: unknown): number {
  let max = 0
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, d] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    const depth = d + 1
    if (depth > max) max = depth
    for (const child of Array.isArray(v) ? v : Object.values(v as object)) stack.push([child, depth])
  }
  return max
}
