/**
 * Replication frames: what travels inside a sealed link once it is up (DESIGN.md sections 4 and 6;
 * docs/federation.md, "Replication"). Every frame is one JSON object with a `type`; the link has
 * already bounded its size (1 MiB) and depth (16). These schemas are the boundary check for the rest.
 *
 * Owner side: `events`, `snapshot`, `submit_ack`. Replica / origin side: `submit`, `ack`, `fetch`,
 * `cursors`. Either side: `ephemeral`, `to_device`, `to_device_ack`, the media frames of `media.ts`
 * and the key directory frames of `keys.ts`.
 */
import { z } from 'zod'
import { EVENT_VERSION } from '../events.ts'
import {
  Cursor,
  DeviceId,
  EventId,
  Membership,
  PresenceStatus,
  RoomId,
  RoomKind,
  ServerName,
  UserId,
} from '../schema/common.ts'
import { JsonObjectSchema } from '../schema/events.ts'
import { Ed25519Signature, KeyId, TimestampMs } from './frames.ts'
import { KeysAnswerFrame, KeysChangedRelayFrame, KeysQueryFrame } from './keys.ts'
import { MediaErrorFrame, MediaGetFrame, MediaPartFrame } from './media.ts'

/** Most events in one `events` or `snapshot` frame. */
export const MAX_EVENTS_PER_FRAME = 50
/** Most rooms listed in one `cursors` frame. */
export const MAX_CURSORS_PER_FRAME = 2000
/** Most membership rows in a snapshot (bigger rooms need paged snapshots: not built yet). */
export const MAX_SNAPSHOT_MEMBERS = 5000

/** A signature and the id of the key that made it. */
export const KeyedSignature = z.strictObject({ kid: KeyId, sig: Ed25519Signature })
export type KeyedSignature = z.infer<typeof KeyedSignature>

const Base64Hash = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a 32-byte base64url hash')

/** The signed part of an event (events.ts `EventHeader`), exactly: no extra keys. */
export const EventHeaderSchema = z.strictObject({
  v: z.literal(EVENT_VERSION),
  room: RoomId,
  type: z.string().min(1).max(128),
  state_key: z.string().max(255).optional(),
  sender: UserId,
  origin: ServerName,
  origin_ts: TimestampMs,
  nonce: z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'nonce must be 16 bytes of base64url'),
  content_hash: Base64Hash,
})

/** The owner's envelope (events.ts `Envelope`). */
export const EnvelopeSchema = z.strictObject({
  room: RoomId,
  seq: Cursor.min(1),
  event_id: EventId,
  prev: Base64Hash,
  owner_ts: TimestampMs,
})

/** One sequenced event: header, content (`null` once redacted), envelope, and the origin's signature
 * when the origin is not the owner. */
export const ReplicatedEvent = z.strictObject({
  header: EventHeaderSchema,
  content: JsonObjectSchema.nullable(),
  envelope: EnvelopeSchema,
  origin_sig: KeyedSignature.optional(),
  /** Set when the content was dropped by a redaction: which one (the owner's word, not signed). */
  redacted_by: EventId.optional(),
  /** With null content: the event it related to (edits, reactions), so later redactions still find it. */
  relates_to: EventId.optional(),
})
export type ReplicatedEvent = z.infer<typeof ReplicatedEvent>

/** Owner -> replica: consecutive events of one room; `owner_sig` signs the last envelope. */
export const EventsFrame = z.strictObject({
  type: z.literal('events'),
  room: RoomId,
  events: z.array(ReplicatedEvent).min(1).max(MAX_EVENTS_PER_FRAME),
  owner_sig: KeyedSignature,
})

/** A member row of a snapshot's state. */
export const SnapshotMember = z.strictObject({
  user_id: UserId,
  membership: Membership,
  level: z.number().int().min(0).max(100),
})

/**
 * Owner -> a server that has no copy of the room yet: the room's state after its newest event, and
 * its recent events (ending at that event; `owner_sig` signs its envelope). The replica's history
 * starts at the first of them.
 */
export const SnapshotFrame = z.strictObject({
  type: z.literal('snapshot'),
  room: RoomId,
  state: z.strictObject({
    kind: RoomKind,
    creator: UserId,
    encrypted: z.boolean(),
    name: z.string().max(255),
    topic: z.string().max(4096),
    members: z.array(SnapshotMember).max(MAX_SNAPSHOT_MEMBERS),
  }),
  events: z.array(ReplicatedEvent).min(1).max(MAX_EVENTS_PER_FRAME),
  owner_sig: KeyedSignature,
})

/** Replica -> owner: everything of `room` up to `upto_seq` is committed here (cumulative). */
export const AckFrame = z.strictObject({ type: z.literal('ack'), room: RoomId, upto_seq: Cursor })

/** Replica -> owner: please send `room` from seq `from` to `to` (inclusive) again (a gap). */
export const FetchFrame = z
  .strictObject({ type: z.literal('fetch'), room: RoomId, from: Cursor.min(1), to: Cursor.min(1) })
  .refine((f) => f.to >= f.from, 'to must be >= from')

/**
 * Replica -> owner, first thing on a new link: the rooms of that owner this server replicates and the
 * seq each is applied up to. `done` marks the last frame of the list; the owner resumes each room
 * from there, and sends a snapshot for rooms the replica does not list.
 */
export const CursorsFrame = z.strictObject({
  type: z.literal('cursors'),
  rooms: z.array(z.tuple([RoomId, Cursor])).max(MAX_CURSORS_PER_FRAME),
  done: z.boolean(),
})

/** Origin -> owner: an event of one of the origin's users, signed by the origin. */
export const SubmitFrame = z.strictObject({
  type: z.literal('submit'),
  header: EventHeaderSchema,
  content: JsonObjectSchema,
  origin_sig: KeyedSignature,
  /** For a `leave` of someone else: a kick or an unban (not part of the event; decided by the owner). */
  intent: z.enum(['kick', 'unban']).optional(),
})

/** Owner -> origin: the submitted event was sequenced at `seq` (after commit), or refused. */
export const SubmitAckFrame = z.union([
  z.strictObject({ type: z.literal('submit_ack'), event_id: EventId, seq: Cursor.min(1) }),
  z.strictObject({
    type: z.literal('submit_ack'),
    event_id: EventId,
    errcode: z.string().regex(/^P_[A-Z_]{1,40}$/),
    error: z.string().max(500),
  }),
])

/** Typing, receipts and presence of one of the sender's users (never stored in a room log). */
export const EphemeralFrame = z.discriminatedUnion('kind', [
  z.strictObject({
    type: z.literal('ephemeral'),
    kind: z.literal('typing'),
    room: RoomId,
    user_id: UserId,
    typing: z.boolean(),
  }),
  z.strictObject({
    type: z.literal('ephemeral'),
    kind: z.literal('receipt'),
    room: RoomId,
    user_id: UserId,
    event_id: EventId,
  }),
  z.strictObject({
    type: z.literal('ephemeral'),
    kind: z.literal('presence'),
    user_id: UserId,
    status: PresenceStatus,
  }),
])

/**
 * Sender's server -> recipients' server: a to-device message of one of the sender's users for users
 * of the receiving server (`messages[user][device | "*"]`). Durable on both ends; the receiver
 * answers `to_device_ack` after storing it, and ignores a `message_id` it has seen.
 */
export const ToDeviceRelayFrame = z.strictObject({
  type: z.literal('to_device'),
  message_id: z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'message_id must be 16 bytes of base64url'),
  sender: UserId,
  sender_device: DeviceId,
  event_type: z.string().min(1).max(128),
  messages: z.record(UserId, z.record(z.union([DeviceId, z.literal('*')]), JsonObjectSchema)),
})
/** The to-device message is stored on the receiving server. */
export const ToDeviceAckRelayFrame = z.strictObject({
  type: z.literal('to_device_ack'),
  message_id: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
})

/** Frames whose schema is checked by this module, by `type`. */
export const REPLICATION_FRAMES = {
  events: EventsFrame,
  snapshot: SnapshotFrame,
  ack: AckFrame,
  fetch: FetchFrame,
  cursors: CursorsFrame,
  submit: SubmitFrame,
  submit_ack: SubmitAckFrame,
  ephemeral: EphemeralFrame,
  to_device: ToDeviceRelayFrame,
  to_device_ack: ToDeviceAckRelayFrame,
  media_get: MediaGetFrame,
  media_part: MediaPartFrame,
  media_error: MediaErrorFrame,
  keys_query: KeysQueryFrame,
  keys_answer: KeysAnswerFrame,
  keys_changed: KeysChangedRelayFrame,
} as const

export type EventsFrame = z.infer<typeof EventsFrame>
export type SnapshotFrame = z.infer<typeof SnapshotFrame>
export type AckFrame = z.infer<typeof AckFrame>
export type FetchFrame = z.infer<typeof FetchFrame>
export type CursorsFrame = z.infer<typeof CursorsFrame>
export type SubmitFrame = z.infer<typeof SubmitFrame>
export type SubmitAckFrame = z.infer<typeof SubmitAckFrame>
export type EphemeralFrame = z.infer<typeof EphemeralFrame>
export type ToDeviceRelayFrame = z.infer<typeof ToDeviceRelayFrame>
export type ToDeviceAckRelayFrame = z.infer<typeof ToDeviceAckRelayFrame>
