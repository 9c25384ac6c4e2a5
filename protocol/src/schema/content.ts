/**
 * Content of every event type. Clients send only {@link SENDABLE_TYPES} through `send`; the other
 * types are produced by the server for REST operations (membership, settings, power levels).
 */
import { z } from 'zod'
import { EventId, MediaId, Membership, RoomKind, Sha256Hex, UserId } from './common.ts'
import { AttachmentEncryption, EncryptedContent } from './keys.ts'
import { MembershipStatement, RoomEncryptionContent } from './membership.ts'

/** Longest message body, in UTF-16 units (the canonical content limit of 64 KiB applies as well). */
export const MAX_BODY_LENGTH = 32_000

const Body = z.string().min(1).max(MAX_BODY_LENGTH)
const Format = z.enum(['plain', 'markdown'])

/**
 * An attachment reference inside a message. The media lives on the homeserver of the event's
 * `sender` (media is uploaded to one's own server): another server's user downloads it through
 * their own homeserver with `GET /media/{sender's server}/{media_id}` (docs/federation.md, "Media").
 * `sha256` (optional; the upload answer carries it) is the digest of the bytes: it sits inside the
 * content the sender's server signed, so a client can check what any server hands it.
 *
 * In an end-to-end encrypted room the uploaded bytes are ciphertext (E2E.md section 2.5): `encryption`
 * says how to decrypt them, `sha256` (if set) is the digest of the ciphertext, and `name`, `mime`,
 * `size` (plaintext bytes), `width` and `height` describe the plaintext. The whole attachment then
 * travels inside the `m.encrypted` event's ciphertext.
 */
export const Attachment = z.strictObject({
  media_id: MediaId,
  name: z.string().min(1).max(255),
  mime: z.string().min(1).max(127),
  size: z.number().int().min(0),
  width: z.number().int().min(1).max(100_000).optional(),
  height: z.number().int().min(1).max(100_000).optional(),
  sha256: Sha256Hex.optional(),
  encryption: AttachmentEncryption.optional(),
})

/** `m.message`: a text message (markdown source), optionally a reply or carrying an attachment. */
export const MessageContent = z.strictObject({
  body: Body,
  format: Format.optional(),
  reply_to: EventId.optional(),
  attachment: Attachment.optional(),
  /**
   * Users the sender means to notify (the client fills it from `@user:server` in the body). Explicit,
   * so quoting an id does not ping anyone, and inside the content, so it works in encrypted rooms.
   */
  mentions: z.array(UserId).max(50).optional(),
})
/** `m.edit`: replaces the body of one of the sender's own messages. */
export const EditContent = z.strictObject({ target: EventId, body: Body, format: Format.optional() })
/** `m.redaction`: deletes an event's content; the event itself stays in the log and still verifies. */
export const RedactionContent = z.strictObject({ target: EventId, reason: z.string().max(512).optional() })
/** `m.reaction`: an emoji (or short text) on an event. Remove it by redacting the reaction. */
export const ReactionContent = z.strictObject({ target: EventId, key: z.string().min(1).max(64) })
/** `m.room.create`: the first event of every room. */
export const CreateContent = z.strictObject({ kind: RoomKind, creator: UserId, encrypted: z.boolean() })
/** `m.room.name`. */
export const NameContent = z.strictObject({ name: z.string().max(255) })
/** `m.room.topic`. */
export const TopicContent = z.strictObject({ topic: z.string().max(1024) })
/**
 * `m.member` (state_key = the affected user). `statement`: the actor device's signed statement of
 * this change (E2E.md section 2.3), stored and relayed unchanged; required in encrypted rooms.
 * `device_sig` is an older reservation, unused.
 */
export const MemberContent = z.strictObject({
  membership: Membership,
  reason: z.string().max(512).optional(),
  device_sig: z.string().max(256).optional(),
  statement: MembershipStatement.optional(),
  /**
   * On a signed join: the signed invite it accepts, copied by the joiner's server from the invite
   * event, so every client can check that a validated member invited them (E2E.md section 2.3).
   */
  invite_statement: MembershipStatement.optional(),
})
/** `m.power_levels` (state_key = the affected user): that user's new level. */
export const PowerContent = z.strictObject({ level: z.number().int().min(0).max(100) })

/** Schemas by event type. */
export const CONTENT_SCHEMAS = {
  'm.message': MessageContent,
  'm.edit': EditContent,
  'm.redaction': RedactionContent,
  'm.reaction': ReactionContent,
  'm.room.create': CreateContent,
  'm.room.name': NameContent,
  'm.room.topic': TopicContent,
  'm.member': MemberContent,
  'm.power_levels': PowerContent,
  'm.encrypted': EncryptedContent,
  'm.room.encryption': RoomEncryptionContent,
} as const

/** Every event type. */
export type EventType = keyof typeof CONTENT_SCHEMAS

/** The types a client may send with the `send` frame. */
export const SENDABLE_TYPES = ['m.message', 'm.edit', 'm.redaction', 'm.reaction', 'm.encrypted'] as const
/**
 * The only types a client may send to an end-to-end encrypted room: everything else (text, edits,
 * reactions) travels inside `m.encrypted`, where the server cannot read it.
 */
export const ENCRYPTED_ROOM_TYPES: ReadonlySet<string> = new Set(['m.encrypted', 'm.redaction'])
/** A client-sendable event type. */
export type SendableType = (typeof SENDABLE_TYPES)[number]

/** Event types that point at another event through `content.target`. */
export const RELATION_TYPES: ReadonlySet<string> = new Set(['m.edit', 'm.redaction', 'm.reaction'])

export type Attachment = z.infer<typeof Attachment>
export type MessageContent = z.infer<typeof MessageContent>
export type EditContent = z.infer<typeof EditContent>
export type RedactionContent = z.infer<typeof RedactionContent>
export type ReactionContent = z.infer<typeof ReactionContent>
export type CreateContent = z.infer<typeof CreateContent>
export type MemberContent = z.infer<typeof MemberContent>
