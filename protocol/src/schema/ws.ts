/**
 * WebSocket frames of `/api/v1/ws` (DESIGN.md sections 5 and 11). Every frame is one JSON object with
 * a `type`. The client authenticates with its first frame, never in the URL.
 */
import { z } from 'zod'
import { Cursor, DeviceId, EventId, PresenceStatus, RoomId, ServerName, TxnId, UserId } from './common.ts'
import { ClientEvent, JsonObjectSchema } from './events.ts'

// ---- client -> server ----

/** First frame: the access token. */
export const AuthFrame = z.strictObject({ type: z.literal('auth'), token: z.string().min(1).max(512) })
/** Asks for every visible event with stream position > `since`, then live events. */
export const SyncFrame = z.strictObject({
  type: z.literal('sync'),
  since: Cursor,
  /** Most events in one `sync` answer (default and maximum set by the server). */
  limit: z.number().int().min(1).max(1000).optional(),
})
/** Sends an event. Acked with `sent` only after it is durably committed; idempotent per device by `txn_id`. */
export const SendFrame = z.strictObject({
  type: z.literal('send'),
  txn_id: TxnId,
  room: RoomId,
  event_type: z.string().min(1).max(128),
  content: JsonObjectSchema,
})
/** Typing notification (ephemeral; expires after a few seconds unless repeated). */
export const TypingFrame = z.strictObject({ type: z.literal('typing'), room: RoomId, typing: z.boolean() })
/** Read receipt: the user has read up to and including `event_id`. */
export const ReceiptFrame = z.strictObject({ type: z.literal('receipt'), room: RoomId, event_id: EventId })
/** Sets the user's presence. */
export const PresenceFrame = z.strictObject({ type: z.literal('presence'), status: PresenceStatus })
/** Most recipients (user x device) of one `to_device` frame. */
export const MAX_TO_DEVICE_RECIPIENTS = 1000

/** A device id, or `*` for every device of the user. */
export const ToDeviceTarget = z.union([DeviceId, z.literal('*')])

/**
 * Direct messages to devices (E2E key sharing), outside any room: `messages[user][device]` is the
 * content for that device. Durable: each device gets it once, until it acknowledges it. Answered by
 * `to_device_sent` once stored (for remote users: stored in our outbox). Idempotent by `txn_id`.
 */
export const ToDeviceFrame = z.strictObject({
  type: z.literal('to_device'),
  txn_id: TxnId,
  event_type: z.string().min(1).max(128),
  messages: z
    .record(UserId, z.record(ToDeviceTarget, JsonObjectSchema))
    .refine(
      (m) =>
        Object.values(m).reduce((n, devices) => n + Object.keys(devices).length, 0) <=
        MAX_TO_DEVICE_RECIPIENTS,
      `at most ${MAX_TO_DEVICE_RECIPIENTS} recipients`,
    ),
})
/** The device has stored every to-device message up to `upto` (its `id`); they are deleted. */
export const ToDeviceAckFrame = z.strictObject({ type: z.literal('to_device_ack'), upto: Cursor })
/** Application-level ping; answered by `pong` with the same id. */
export const PingFrame = z.strictObject({ type: z.literal('ping'), id: z.string().max(64).optional() })

/** Any client frame. */
export const ClientFrame = z.discriminatedUnion('type', [
  AuthFrame,
  SyncFrame,
  SendFrame,
  TypingFrame,
  ReceiptFrame,
  PresenceFrame,
  ToDeviceFrame,
  ToDeviceAckFrame,
  PingFrame,
])
export type ClientFrame = z.infer<typeof ClientFrame>
export type SendFrame = z.infer<typeof SendFrame>
export type ToDeviceFrame = z.infer<typeof ToDeviceFrame>

// ---- server -> client ----

/** Answer to a valid `auth`. */
export const ReadyFrame = z.object({
  type: z.literal('ready'),
  user_id: UserId,
  device_id: DeviceId,
  server_name: ServerName,
  /** The newest stream position on the server at authentication time. */
  stream_head: Cursor,
})
/** One page of catch-up. If `done` is false the client asks again with `since` = `next`. */
export const SyncResultFrame = z.object({
  type: z.literal('sync'),
  events: z.array(ClientEvent),
  next: Cursor,
  done: z.boolean(),
})
/** A live event. */
export const EventFrame = z.object({
  type: z.literal('event'),
  room: RoomId,
  seq: Cursor,
  stream_pos: Cursor,
  event: ClientEvent,
})
/** A send was committed. */
export const SentFrame = z.object({ type: z.literal('sent'), txn_id: TxnId, event_id: EventId, seq: Cursor })
/** A send to a remote room was accepted by our server and waits for the owner (federation). */
export const PendingFrame = z.object({ type: z.literal('pending'), txn_id: TxnId, event_id: EventId })
/** Who is typing in a room now (the full set, excluding nobody). */
export const TypingStateFrame = z.object({
  type: z.literal('typing'),
  room: RoomId,
  user_ids: z.array(UserId),
})
/** A member's read position moved. */
export const ReceiptStateFrame = z.object({
  type: z.literal('receipt'),
  room: RoomId,
  user_id: UserId,
  event_id: EventId,
  seq: Cursor,
})
/** A user's presence changed. */
export const PresenceStateFrame = z.object({
  type: z.literal('presence'),
  user_id: UserId,
  status: PresenceStatus,
})
/** A to-device message for this device (delivered until acknowledged with `to_device_ack`). */
export const ToDeviceMessageFrame = z.object({
  type: z.literal('to_device'),
  id: Cursor,
  sender: UserId,
  sender_device: DeviceId,
  event_type: z.string().min(1).max(128),
  content: JsonObjectSchema,
})
/** A `to_device` frame was stored (and will reach every recipient device once). */
export const ToDeviceSentFrame = z.object({ type: z.literal('to_device_sent'), txn_id: TxnId })
/**
 * The device list of `user_id` changed (E2E.md section 2.1): sent to the user's own devices and to
 * everyone who shares a room with them. Clients query the keys again (`POST /keys/query`) and verify.
 */
export const KeysChangedFrame = z.object({ type: z.literal('keys_changed'), user_id: UserId })
/** Answer to `ping`. */
export const PongFrame = z.object({ type: z.literal('pong'), id: z.string().max(64).optional() })
/** An error; `txn_id` ties it to a `send`. */
export const ErrorFrame = z.object({
  type: z.literal('error'),
  txn_id: TxnId.optional(),
  errcode: z.string(),
  error: z.string(),
  retry_after_ms: z.number().int().min(0).optional(),
})

/** Any server frame. */
export const ServerFrame = z.discriminatedUnion('type', [
  ReadyFrame,
  SyncResultFrame,
  EventFrame,
  SentFrame,
  PendingFrame,
  TypingStateFrame,
  ReceiptStateFrame,
  PresenceStateFrame,
  ToDeviceMessageFrame,
  ToDeviceSentFrame,
  KeysChangedFrame,
  PongFrame,
  ErrorFrame,
])
export type ServerFrame = z.infer<typeof ServerFrame>
export type EventFrame = z.infer<typeof EventFrame>
export type ErrorFrame = z.infer<typeof ErrorFrame>
export type ReadyFrame = z.infer<typeof ReadyFrame>
export type ToDeviceMessageFrame = z.infer<typeof ToDeviceMessageFrame>
