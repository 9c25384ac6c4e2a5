/**
 * Untrusted names made fit to show (renderer process, pure): display names and attachment file names
 * come from other people. Svelte puts them in text nodes and attributes, never HTML, so markup in them
 * stays text; this handles what text alone can still do on screen: control characters (CR/LF, NUL),
 * bidirectional overrides that reorder what follows (`\u202Egnp.exe` shows as `exe.png`), stacks of
 * combining marks ("zalgo") painting over the lines around them, and sheer length.
 */

/** C0 and C1 controls, DEL, and the line and paragraph separators. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g
/** Bidi embeddings, overrides, isolates and marks (Unicode TR9 explicit formatting characters). */
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g
/** More than two combining marks in a row: keep two (enough for any real script). */
const MARK_STACK = /(\p{M}{2})\p{M}+/gu

/**
 * `text` with controls turned into spaces, bidi formatting characters and excess combining marks
 * dropped, runs of white space collapsed, and at most `max` code points (the last one `…` if cut).
 */
export function cleanText(text: string, max: number): string {
  const out = text
    .replace(CONTROLS, ' ')
    .replace(BIDI, '')
    .replace(MARK_STACK, '$1')
    .replace(/\s+/g, ' ')
    .trim()
  if (out.length <= max) return out
  const chars = Array.from(out)
  return chars.length <= max ? out : chars.slice(0, Math.max(0, max - 1)).join('') + '…'
}

/** Longest display name shown (the server allows 128 characters; CSS caps the width as well). */
export const MAX_NAME_CHARS = 64

/** What to call a user: their display name, cleaned, or their user id when it is empty. */
export function displayName(name: string | undefined, userId: string): string {
  const cleaned = cleanText(name ?? '', MAX_NAME_CHARS)
  return cleaned === '' ? userId : cleaned
}

/** Characters no file system takes in a name (Windows' list covers the others), and path separators. */
const UNSAFE_IN_FILE_NAME = /[\\/:*?"<>|]/g

/**
 * A name to save a downloaded attachment under: cleaned text without path separators or characters
 * file systems refuse, no leading dots (no hidden files, no `..`), at most 120 code points keeping the
 * extension, `download` if nothing is left. The browser sanitises the `download` attribute as well;
 * this does not rely on it.
 */
export function safeFileName(name: string): string {
  const cleaned = cleanText(name, 1000)
    .replace(UNSAFE_IN_FILE_NAME, '_')
    .replace(/^[.\s]+/, '')
  const chars = Array.from(cleaned)
  if (chars.length === 0) return 'download'
  if (chars.length <= 120) return cleaned
  const dot = cleaned.lastIndexOf('.')
  const ext = dot > 0 && cleaned.length - dot <= 16 ? cleaned.slice(dot) : ''
  return chars.slice(0, 120 - 1 - Array.from(ext).length).join('') + '…' + ext
}
