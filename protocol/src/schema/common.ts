/** Building blocks shared by every schema. */
import { z } from 'zod'
import { isDeviceId, isEventId, isLocalpart, isServerName, parseRoomId, parseUserId } from '../ids.ts'

/** `@localpart:server`. */
export const UserId = z.string().refine((s) => parseUserId(s) !== null, 'invalid user id')
/** `!opaque:owner`. */
export const RoomId = z.string().refine((s) => parseRoomId(s) !== null, 'invalid room id')
/** `$` + 43 base64url chars. */
export const EventId = z.string().refine(isEventId, 'invalid event id')
/** 12 characters `A-Z 0-9`. */
export const DeviceId = z.string().refine(isDeviceId, 'invalid device id')
/** A DNS server name. */
export const ServerName = z.string().refine(isServerName, 'invalid server name')
/** Client transaction id: makes a send idempotent per device. */
export const TxnId = z.string().regex(/^[A-Za-z0-9._~-]{1,64}$/, 'txn_id must be 1-64 of A-Z a-z 0-9 . _ ~ -')
/** A user name as typed at sign-up: a localpart. */
export const Username = z
  .string()
  .transform((s) => s.toLowerCase())
  .refine(isLocalpart, 'user name must be 1-64 of a-z 0-9 . _ = -')
/** A media id: 16 random bytes, base64url (22 characters). Unique on the server that minted it only. */
export const MediaId = z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'media_id must be 16 bytes of base64url')
/** A SHA-256 digest (FIPS 180-4) as 64 lowercase hex digits. */
export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lowercase hex digits')
/** Non-negative safe integer. */
export const Cursor = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
/** Room kinds (DESIGN.md section 4). */
export const RoomKind = z.enum(['dm', 'group', 'broadcast'])
/** Named power levels; numeric levels are owner 100, admin 50, moderator 25, member 0. */
export const Role = z.enum(['owner', 'admin', 'moderator', 'member'])
/** Membership states. */
export const Membership = z.enum(['invite', 'join', 'leave', 'ban'])
/** Presence states. */
export const PresenceStatus = z.enum(['online', 'away', 'offline'])

export type RoomKind = z.infer<typeof RoomKind>
export type Role = z.infer<typeof Role>
export type Membership = z.infer<typeof Membership>
export type PresenceStatus = z.infer<typeof PresenceStatus>

/** Numeric level of each role. */
export const ROLE_LEVEL: Readonly<Record<Role, number>> = { owner: 100, admin: 50, moderator: 25, member: 0 }

/** The role a numeric level amounts to. */
export function roleOfLevel(level: number): Role {
  if (level >= 100) return 'owner'
  if (level >= 50) return 'admin'
  if (level >= 25) return 'moderator'
  return 'member'
}
