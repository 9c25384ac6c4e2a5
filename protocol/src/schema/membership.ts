/**
 * Wire shapes of signed membership (E2E.md section 2.3): the statement a membership change of an
 * encrypted room carries in its `m.member` content, the snapshot `m.room.encryption` carries when a
 * room with members turns encryption on, the optional bodies of the membership endpoints, and the
 * answer of `GET /rooms/{room}/membership`. Shape only: the crypto core (`verifyMembership`,
 * `verifyMembershipSnapshot`) is the authority on signatures.
 */
import { z } from 'zod'
import { Cursor, DeviceId, Membership, RoomId, UserId } from './common.ts'
import { E2eHash, E2eSignature, E2eSuite } from './keys.ts'

/** Most members one membership snapshot may name (the crypto core's `MAX_SNAPSHOT_MEMBERS`). */
export const MAX_SNAPSHOT_MEMBERS = 1000

/**
 * A membership statement signed by the acting device's DSK (E2E.md section 2.3): `actor` sets
 * `target`'s membership in `room` to `membership` (a kick or an unban is `leave` of someone else).
 * `prev` is the hash of the latest statement the actor knew in the room, or the room's fixed root.
 */
export const MembershipStatement = z.strictObject({
  suite: E2eSuite,
  room: RoomId,
  target: UserId,
  membership: Membership,
  actor: UserId,
  actor_device: DeviceId,
  prev: E2eHash,
  signature: E2eSignature,
})
export type MembershipStatement = z.infer<typeof MembershipStatement>

/**
 * The members of a room when encryption was turned on, signed by the enabling device (E2E.md section
 * 2.3): the roots of the room's membership log. Members sorted by user id, each once.
 */
export const MembershipSnapshot = z
  .strictObject({
    suite: E2eSuite,
    room: RoomId,
    members: z
      .array(z.strictObject({ user_id: UserId, membership: z.enum(['join', 'invite']) }))
      .min(1)
      .max(MAX_SNAPSHOT_MEMBERS),
    actor: UserId,
    actor_device: DeviceId,
    prev: E2eHash,
    signature: E2eSignature,
  })
  .refine(
    (s) => s.members.every((m, i) => i === 0 || s.members[i - 1]!.user_id < m.user_id),
    'members must be sorted by user id, each once',
  )
export type MembershipSnapshot = z.infer<typeof MembershipSnapshot>

/**
 * `m.room.encryption`: the room is end-to-end encrypted from this event on (irreversible). `snapshot`:
 * the members at that moment, signed by the enabling device (E2E.md section 2.3). Optional in the
 * schema because events stored before signed membership lack it; the server requires it on new ones.
 */
export const RoomEncryptionContent = z.strictObject({
  suite: E2eSuite,
  snapshot: MembershipSnapshot.optional(),
})

/** Body of `POST /rooms/{room}/join` and `/leave`: optional, a signed statement (required in encrypted rooms). */
export const MembershipBody = z.strictObject({ statement: MembershipStatement.optional() })
/** Body of `POST /rooms/{room}/encryption`: the signed snapshot of the members (required when the room has any). */
export const EnableEncryptionBody = z.strictObject({ snapshot: MembershipSnapshot.optional() })

/** One user's latest membership in a room and the statement that set it, if any (E2E.md section 2.3). */
export const MembershipRecord = z.object({
  user_id: UserId,
  membership: Membership,
  /** Who set it (the sender of the `m.member` event). */
  sender: UserId,
  /** The room's order of the event that set it: higher is later. */
  seq: Cursor,
  /** The signed statement the event carries; null if unsigned (or its event is not held here). */
  statement: MembershipStatement.nullable(),
  /** For a signed join: the signed invite it accepted (see `MemberContent.invite_statement`), else null. */
  invite_statement: MembershipStatement.nullable().optional(),
})
export type MembershipRecord = z.infer<typeof MembershipRecord>

/**
 * Answer of `GET /rooms/{room}/membership`: everything a client needs to validate the members of an
 * encrypted room (E2E.md section 2.3). `creator` and `encrypted_at_create` name the log's root when
 * the room was created encrypted; `snapshot` when it was turned encrypted later (null otherwise).
 * Every user with a membership is listed, those who left or were banned too.
 */
export const RoomMembershipResponse = z.object({
  creator: UserId,
  encrypted_at_create: z.boolean(),
  snapshot: MembershipSnapshot.nullable(),
  /** The room's order of the event that carried `snapshot`: memberships before it are the snapshot's. */
  snapshot_seq: Cursor.nullable(),
  members: z.array(MembershipRecord),
})
export type RoomMembershipResponse = z.infer<typeof RoomMembershipResponse>
