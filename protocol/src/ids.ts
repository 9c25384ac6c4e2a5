/**
 * Identifiers (DESIGN.md section 2). Parsers return `null` for anything malformed; generators use
 * Web Crypto randomness.
 */
import { randomBytes, toBase64Url } from './encoding.ts'

/** Longest user, room or server identifier accepted anywhere. */
export const MAX_ID_LENGTH = 255

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const LOCALPART = /^[a-z0-9._=-]{1,64}$/
const ROOM_LOCAL = /^[A-Za-z0-9_-]{22}$/
const EVENT_ID = /^\$[A-Za-z0-9_-]{43}$/
const DEVICE_ID = /^[A-Z0-9]{12}$/
const KEY_ID = /^ed25519:[A-Za-z0-9_]{1,32}$/

/** True for a lowercase DNS name such as `acme.example` or `acme.localhost` (no port: a name is an identity). */
export function isServerName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false
  return name.split('.').every((label) => LABEL.test(label))
}

/** True for a user localpart: 1-64 of `a-z 0-9 . _ = -`. */
export function isLocalpart(localpart: string): boolean {
  return LOCALPART.test(localpart)
}

/** A parsed `@localpart:server` user id. */
export interface UserIdParts {
  readonly localpart: string
  readonly server: string
}

/** Parses `@alice:acme.example`; `null` if malformed. */
export function parseUserId(id: string): UserIdParts | null {
  if (id.length > MAX_ID_LENGTH || id[0] !== '@') return null
  const colon = id.indexOf(':')
  if (colon < 0) return null
  const localpart = id.slice(1, colon)
  const server = id.slice(colon + 1)
  if (!isLocalpart(localpart) || !isServerName(server)) return null
  return { localpart, server }
}

/** Builds a user id from its parts. Throws on invalid parts or an over-long id (a caller bug). */
export function userId(localpart: string, server: string): string {
  const id = `@${localpart}:${server}`
  // Also refuse an id too long for parseUserId: a builder must never produce what the parser rejects.
  if (!isLocalpart(localpart) || !isServerName(server) || id.length > MAX_ID_LENGTH)
    throw new TypeError('invalid user id parts')
  return id
}

/** A parsed `!opaque:owner` room id. */
export interface RoomIdParts {
  readonly local: string
  /** The owning (sequencing) server. */
  readonly server: string
}

/** Parses `!<22 base64url chars>:<owner server>`; `null` if malformed. */
export function parseRoomId(id: string): RoomIdParts | null {
  if (id.length > MAX_ID_LENGTH || id[0] !== '!') return null
  const colon = id.indexOf(':')
  if (colon < 0) return null
  const local = id.slice(1, colon)
  const server = id.slice(colon + 1)
  if (!ROOM_LOCAL.test(local) || !isServerName(server)) return null
  return { local, server }
}

/** A fresh room id owned by `server` (128 random bits). Throws on an invalid or over-long server name. */
export function newRoomId(server: string): string {
  // '!' + 22 + ':' leaves MAX_ID_LENGTH - 24 for the server, or parseRoomId would reject the id.
  if (!isServerName(server) || server.length > MAX_ID_LENGTH - 24) throw new TypeError('invalid server name')
  return `!${toBase64Url(randomBytes(16))}:${server}`
}

/** True for `$` + 43 base64url characters (a BLAKE2b-256 digest). */
export function isEventId(id: string): boolean {
  return EVENT_ID.test(id)
}

/** True for a device id: 12 characters of `A-Z 0-9`. */
export function isDeviceId(id: string): boolean {
  return DEVICE_ID.test(id)
}

const DEVICE_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

/** A fresh device id (12 characters, ~62 bits: unique per user, not a secret). */
export function newDeviceId(): string {
  const bytes = randomBytes(12)
  let out = ''
  for (const b of bytes) out += DEVICE_ALPHABET[b % 36]
  return out
}

/** The server part of a user or room id, or `null` if malformed. */
export function serverOf(id: string): string | null {
  return (id[0] === '!' ? parseRoomId(id) : parseUserId(id))?.server ?? null
}

/** True for a server key id: `ed25519:` and 1-32 of `A-Z a-z 0-9 _` (DESIGN.md section 6). */
export function isKeyId(kid: string): boolean {
  return KEY_ID.test(kid)
}

/** A fresh key id, `ed25519:` + 12 characters (72 random bits; callers still check it is unused). */
export function newKeyId(): string {
  return `ed25519:${toBase64Url(randomBytes(9)).replace(/-/g, '_')}`
}
