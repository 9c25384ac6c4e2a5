/**
 * Media frames: how one homeserver fetches media another server holds, over the sealed link
 * (docs/federation.md, "Media"). Pull-based: the requester asks for one chunk at a time
 * (`media_get` at an offset), the origin answers `media_part` (the media's facts and up to
 * {@link MEDIA_CHUNK_BYTES} of bytes) or `media_error`. Every answer names the request it answers
 * (`req_id`), and every request is authorised on its own, so the origin keeps no state per transfer.
 */
import { z } from 'zod'
import { fromBase64Url } from '../encoding.ts'
import { Cursor, MediaId, RoomId, Sha256Hex } from '../schema/common.ts'

/**
 * Largest chunk of media bytes in one `media_part`: 512 KiB, which is 699,051 characters of
 * base64url, so a part with its facts stays well under the 1 MiB frame limit (`MAX_FRAME_BYTES`).
 */
export const MEDIA_CHUNK_BYTES = 512 * 1024

/** base64url characters of a full chunk. */
const MAX_CHUNK_CHARS = Math.ceil((MEDIA_CHUNK_BYTES * 4) / 3)

/** A request id: 16 random bytes, base64url (chosen by the requester, echoed by the origin). */
export const MediaRequestId = z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'req_id must be 16 bytes of base64url')

/** Requester -> origin: the bytes of `media_id` from `offset` on (at most one chunk answers). */
export const MediaGetFrame = z.strictObject({
  type: z.literal('media_get'),
  req_id: MediaRequestId,
  media_id: MediaId,
  offset: Cursor,
})

/**
 * Origin -> requester: the media's facts (the same in every part of one media) and the chunk at
 * `offset`: `data` is 1 to {@link MEDIA_CHUNK_BYTES} bytes of canonical unpadded base64url (empty
 * only for an empty media). `sha256` is the digest of all `size` bytes: the requester checks it over
 * what it assembled. `room` is the room the media was uploaded to: who may read it.
 */
export const MediaPartFrame = z.strictObject({
  type: z.literal('media_part'),
  req_id: MediaRequestId,
  media_id: MediaId,
  room: RoomId,
  size: Cursor,
  sha256: Sha256Hex,
  content_type: z.string().min(1).max(127),
  filename: z.string().min(1).max(255),
  offset: Cursor,
  data: z
    .string()
    .max(MAX_CHUNK_CHARS)
    .refine((s) => fromBase64Url(s) !== null, 'data must be canonical unpadded base64url'),
})

/**
 * Origin -> requester: the request is refused. `P_NOT_FOUND` for media that does not exist **and**
 * for media the requester may not read (the same body: existence is not revealed);
 * `P_LIMIT_EXCEEDED` when the requester has too many reads in flight; `P_BAD_REQUEST` for an offset
 * past the end; `P_UNAVAILABLE` when the origin cannot read it right now.
 */
export const MediaErrorFrame = z.strictObject({
  type: z.literal('media_error'),
  req_id: MediaRequestId,
  errcode: z.string().regex(/^P_[A-Z_]{1,40}$/),
  error: z.string().max(500),
})

export type MediaGetFrame = z.infer<typeof MediaGetFrame>
export type MediaPartFrame = z.infer<typeof MediaPartFrame>
export type MediaErrorFrame = z.infer<typeof MediaErrorFrame>
