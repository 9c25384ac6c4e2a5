/**
 * Key directory frames: how one homeserver asks another for the E2E keys of its users, and tells it
 * that a user's device list changed (docs/federation.md, "Keys"). `keys_query` names at most
 * {@link MAX_KEYS_PER_FRAME} users of the answering server; `keys_answer` echoes the request id with
 * what the answering server may show the asking one (only users who share a room, joined or
 * invited, with some user of the asking server), or an error. `keys_changed` carries no keys: the
 * receiving server tells its users, who query again.
 */
import { z } from 'zod'
import { UserId } from '../schema/common.ts'
import { DevicePrekeys, SignedDeviceList } from '../schema/keys.ts'

/**
 * Most users in one `keys_query` (and so in one answer). A user's keys are at most ~100 KB of JSON
 * (256 devices, a list entry and a prekey each), so a full answer stays under the 1 MiB frame limit.
 */
export const MAX_KEYS_PER_FRAME = 8

/** A request id: 16 random bytes, base64url (chosen by the asking server, echoed in the answer). */
export const KeysRequestId = z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'req_id must be 16 bytes of base64url')

/** Asking server -> answering server: the keys of these users of yours. */
export const KeysQueryFrame = z.strictObject({
  type: z.literal('keys_query'),
  req_id: KeysRequestId,
  users: z.array(UserId).min(1).max(MAX_KEYS_PER_FRAME),
})

/**
 * Answering server -> asking server: the device lists and signed prekeys (by device) of the asked
 * users it may show; the others are absent. Or a refusal (`errcode`, e.g. `P_LIMIT_EXCEEDED`).
 */
export const KeysAnswerFrame = z.union([
  z.strictObject({
    type: z.literal('keys_answer'),
    req_id: KeysRequestId,
    device_lists: z
      .record(UserId, SignedDeviceList)
      .refine((r) => Object.keys(r).length <= MAX_KEYS_PER_FRAME, 'too many users'),
    prekeys: z
      .record(UserId, DevicePrekeys)
      .refine((r) => Object.keys(r).length <= MAX_KEYS_PER_FRAME, 'too many users'),
  }),
  z.strictObject({
    type: z.literal('keys_answer'),
    req_id: KeysRequestId,
    errcode: z.string().regex(/^P_[A-Z_]{1,40}$/),
    error: z.string().max(500),
  }),
])

/** A user's server -> servers with users in a room with them: that user's device list changed. */
export const KeysChangedRelayFrame = z.strictObject({ type: z.literal('keys_changed'), user_id: UserId })

export type KeysQueryFrame = z.infer<typeof KeysQueryFrame>
export type KeysAnswerFrame = z.infer<typeof KeysAnswerFrame>
export type KeysChangedRelayFrame = z.infer<typeof KeysChangedRelayFrame>
