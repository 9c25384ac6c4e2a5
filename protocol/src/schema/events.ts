/** The event as clients see it. */
import { z } from 'zod'
import { Cursor, EventId, RoomId, UserId } from './common.ts'

/** A JSON object (content is validated per type by the server; clients re-validate what they render). */
export const JsonObjectSchema = z.record(z.string(), z.unknown())

/** An event delivered to a client: the fields of its header that matter to people, plus its position. */
export const ClientEvent = z.object({
  event_id: EventId,
  room: RoomId,
  seq: Cursor,
  stream_pos: Cursor,
  type: z.string().min(1).max(128),
  state_key: z.string().max(255).optional(),
  sender: UserId,
  origin_ts: Cursor,
  /** `{}` once redacted. */
  content: JsonObjectSchema,
  /** Set once redacted: the redaction's event id. */
  redacted_by: EventId.optional(),
})
export type ClientEvent = z.infer<typeof ClientEvent>
