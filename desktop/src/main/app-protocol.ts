/**
 * The `app://parley/` scheme that serves the UI from the packaged renderer (DESIGN.md section 9):
 * a path guard (nothing outside the renderer directory, no dot segments or encoded escapes), the
 * content type, and the CSP sent with every file (the same as the homeserver's web-client route).
 */
import { extname, join, normalize, sep } from 'node:path'

export const APP_CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  // Images: the app's own files, and blob: URLs the app makes of attachments it downloaded (and
  // checked) through the API; no data: URIs and no remote images (a remote <img> would tell its
  // server who read what, when).
  "img-src 'self' blob:",
  "font-src 'self'",
  // The renderer talks to the user's homeserver, wherever it is.
  'connect-src https: wss: http://127.0.0.1:* ws://127.0.0.1:* http://localhost:* ws://localhost:*',
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
  '.wasm': 'application/wasm',
  '.woff2': 'font/woff2',
}

/**
 * The file under `root` that `url` names, or null if it is not an app:// URL of ours or would leave
 * `root`. `/` is index.html.
 */
export function resolveAppFile(root: string, url: string): { path: string; type: string } | null {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return null
  }
  if (u.protocol !== 'app:' || u.host !== 'parley') return null
  let pathname: string
  try {
    pathname = decodeURIComponent(u.pathname)
  } catch {
    return null
  }
  if (pathname.includes('\0') || pathname.includes('\\') || pathname.split('/').includes('..')) return null
  const relative = pathname === '/' ? 'index.html' : pathname.replace(/^\/+/, '')
  const path = normalize(join(root, relative))
  if (path !== root && !path.startsWith(root.endsWith(sep) ? root : root + sep)) return null
  const type = TYPES[extname(path)]
  if (!type) return null
  return { path, type }
}
