/**
 * Values main hands the renderer (the results of invoke channels), checked again in the preload before
 * they reach the page: a `parley://` link and the cache key. Main parses and validates links fully
 * (main/deep-links.ts, with the protocol's room id parser); the preload checks the shape with these
 * dependency-free guards (no zod in the sandboxed preload's bundle) and hands the page fresh plain
 * values. Shared by main and preload: imports neither Electron nor the DOM.
 */

export interface DeepLink {
  readonly kind: 'room' | 'invite'
  readonly room: string
}

/** Longest room id anywhere (protocol's MAX_ID_LENGTH). */
const MAX_ROOM = 255

/** A fresh `{kind, room}` if `value` has the shape of a deep link, else null (extra fields are dropped). */
export function toDeepLink(value: unknown): DeepLink | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null
  const { kind, room } = value as Record<string, unknown>
  if (kind !== 'room' && kind !== 'invite') return null
  if (typeof room !== 'string' || room.length === 0 || room.length > MAX_ROOM || room[0] !== '!') return null
  return { kind, room }
}

/** True for a cache key as the shell hands it out: 32 bytes as unpadded base64url (43 characters). */
export function isCacheKey(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/.test(value)
}

/** Longest notification title and body main accepts (the IPC schemas use these too). */
export const NOTIFY_TITLE_MAX = 200
export const NOTIFY_BODY_MAX = 1000

/** `text` cut to at most `max` UTF-16 units, with an ellipsis when cut (never a lone surrogate). */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text
  let cut = max - 1
  const last = text.charCodeAt(cut - 1)
  if (last >= 0xd800 && last <= 0xdbff) cut-- // do not split a surrogate pair
  return `${text.slice(0, cut)}…`
}
