/**
 * Serves the built web client (`--web-client DIR`, DESIGN.md section 9): static files from one
 * directory, never outside it, with a strict Content-Security-Policy; any other non-API path gets
 * `index.html` (the client routes itself). The same policy as the desktop shell's app:// scheme.
 */
import { readFile, realpath, stat } from 'node:fs/promises'
import { extname, join, sep } from 'node:path'
import type { Context } from 'hono'

/** What the client may load: its own files, and connections to the server that served it. */
export const WEB_CLIENT_CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  // Images: the client's own files, and blob: URLs it makes of attachments it downloaded (and
  // checked) through the API; no data: URIs and no remote images (a remote <img> would tell its
  // server who read what, when).
  "img-src 'self' blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
}

/** A handler for GET requests outside /api that answers from `dir`. */
export function webClient(dir: string) {
  const rootPromise = realpath(dir)
  return async (c: Context) => {
    const root = await rootPromise
    let path: string
    try {
      path = decodeURIComponent(new URL(c.req.url).pathname)
    } catch {
      return c.text('bad path', 400)
    }
    // No dot segments, NULs or backslashes: the file must be inside root, and realpath confirms it.
    if (path.includes('\0') || path.includes('\\') || path.split('/').some((p) => p === '..'))
      return c.text('bad path', 400)
    let file = join(root, path)
    let real: string | null = null
    try {
      real = await realpath(file)
      if (!(await stat(real)).isFile()) real = null
    } catch {
      real = null
    }
    if (real === null || !(real === root || real.startsWith(root + sep))) {
      // Unknown paths are client routes; a missing asset (with an extension) is a 404.
      if (extname(path) !== '') return c.text('not found', 404)
      file = join(root, 'index.html')
      real = file
    }
    const body = await readFile(real)
    const type = TYPES[extname(real)] ?? 'application/octet-stream'
    c.header('Content-Type', type)
    c.header('Content-Security-Policy', WEB_CLIENT_CSP)
    c.header('Referrer-Policy', 'no-referrer')
    c.header('X-Frame-Options', 'DENY')
    // Hashed asset names can be cached for good; index.html must be fresh to pick up a new build.
    c.header(
      'Cache-Control',
      real.includes(`${sep}assets${sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache',
    )
    return c.body(body)
  }
}
