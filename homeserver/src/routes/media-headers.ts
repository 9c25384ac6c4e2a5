/**
 * Response headers of every media download (AC-5; docs/protocol.md, "Media"). Media is someone
 * else's bytes: it must never run as a page of our origin, never be sniffed into HTML, and its file
 * name must never break out of its header.
 */

/** Types a browser may show inline: raster images that cannot carry script. SVG is not one of them. */
export const INLINE_TYPES: ReadonlySet<string> = new Set([
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
])

/** Characters of an RFC 8187 (was 5987) `attr-char`: anything else in `filename*` is %-encoded. */
const ATTR_CHAR = /[A-Za-z0-9!#$&+\-.^_`|~]/

/**
 * `value` as an RFC 8187 `ext-value` (`UTF-8''` + percent-encoded UTF-8). Lone surrogates (which
 * have no UTF-8) become U+FFFD first, so this never throws.
 */
export function extValue(value: string): string {
  const bytes = new TextEncoder().encode(value) // encodes lone surrogates as U+FFFD
  let out = "UTF-8''"
  for (const byte of bytes) {
    const ch = String.fromCharCode(byte)
    out += byte < 0x80 && ATTR_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/**
 * A plain-ASCII stand-in for old clients (RFC 6266 section 4.3: `filename` beside `filename*`), as an
 * unquoted token: every character outside `attr-char` becomes `_`, so it holds no quote, backslash,
 * slash, `%`, `;` or control character.
 */
export function asciiFallback(value: string): string {
  let out = ''
  for (const ch of value) out += ch.length === 1 && ATTR_CHAR.test(ch) ? ch : '_'
  return out.slice(0, 128) || 'file'
}

/** The headers of a media answer. */
export interface MediaHeaders {
  readonly 'Content-Type': string
  readonly 'Content-Length': string
  readonly 'Content-Disposition': string
  readonly 'X-Content-Type-Options': 'nosniff'
  readonly 'Content-Security-Policy': string
  readonly [name: string]: string
}

/** Headers for serving stored media with its stored type and name. */
export function mediaHeaders(media: {
  readonly content_type: string
  readonly filename: string
  readonly size: number
}): MediaHeaders {
  const inline = INLINE_TYPES.has(media.content_type)
  const disposition = inline ? 'inline' : 'attachment'
  return {
    // Outside the allow-list the type is not ours to vouch for: an opaque download.
    'Content-Type': inline ? media.content_type : 'application/octet-stream',
    'Content-Length': String(media.size),
    'Content-Disposition': `${disposition}; filename=${asciiFallback(media.filename)}; filename*=${extValue(media.filename)}`,
    'X-Content-Type-Options': 'nosniff',
    // Opened directly, it is a sandboxed document that may load and run nothing.
    'Content-Security-Policy': "sandbox; default-src 'none'",
  }
}
