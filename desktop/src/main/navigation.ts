/**
 * Where the app window may go: nowhere. In-app navigation away from `app://parley/` and every
 * `window.open` are denied; a link meant for the outside world is opened in the system browser only
 * if it parses as http, https or mailto (no file:, javascript:, custom schemes, credentials in URLs).
 */
export const APP_ORIGIN = 'app://parley'

/** Whether a navigation inside the window is allowed (only within the app itself). */
export function mayNavigate(url: string): boolean {
  try {
    const u = new URL(url)
    return u.protocol === 'app:' && u.host === 'parley'
  } catch {
    return false
  }
}

/** The URL to hand to the system browser, or null if the link must not leave the app at all. */
export function externalUrl(url: string): string | null {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return null
  }
  if (u.protocol === 'mailto:') return u.href
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null
  // user:pass@host links are a phishing classic; a real link never needs them.
  if (u.username !== '' || u.password !== '') return null
  return u.href
}
