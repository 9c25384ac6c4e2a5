/** REST bodies and answers under `/api/v1` (DESIGN.md sections 5 and 11). */
import { z } from 'zod'
import {
  Cursor,
  DeviceId,
  EventId,
  MediaId,
  Membership,
  PresenceStatus,
  Role,
  RoomId,
  RoomKind,
  ServerName,
  Sha256Hex,
  UserId,
  Username,
} from './common.ts'
import { ClientEvent } from './events.ts'
import { MembershipStatement } from './membership.ts'

/** Passwords: 8-256 characters. Length is the only rule we impose (NIST SP 800-63B 5.1.1.2). */
export const Password = z.string().min(8, 'password must be at least 8 characters').max(256)

/** `POST /register`. */
export const RegisterBody = z.strictObject({
  username: Username,
  password: Password,
  device_name: z.string().max(128).optional(),
})
/** `POST /login`. Wrong user name and wrong password are indistinguishable. */
export const LoginBody = z.strictObject({
  username: z.string().min(1).max(255),
  password: z.string().min(1).max(256),
  device_name: z.string().max(128).optional(),
})
/** `POST /refresh`. The refresh token is single use: reusing one revokes the device. */
export const RefreshBody = z.strictObject({ refresh_token: z.string().min(1).max(512) })
/** Answer of register, login and refresh. */
export const AuthResponse = z.object({
  user_id: UserId,
  device_id: DeviceId,
  access_token: z.string(),
  refresh_token: z.string(),
  /** Seconds until the access token expires. */
  expires_in: z.number().int(),
})
export type AuthResponse = z.infer<typeof AuthResponse>

/** `PUT /profile`. */
export const ProfileBody = z.strictObject({ display_name: z.string().max(128) })
/** A user as listed by the directory and profiles. */
export const UserSummary = z.object({ user_id: UserId, display_name: z.string() })
/** `GET /users?q=`. */
export const DirectoryQuery = z.object({
  q: z.string().max(128).default(''),
  limit: z.coerce.number().int().min(1).max(50).default(20),
})

/** `GET /presence?users=@a:x,@b:y`: up to 100 user ids, comma-separated. */
export const PresenceQuery = z.object({
  users: z
    .string()
    .max(100 * 256)
    .transform((s) => s.split(','))
    .pipe(z.array(UserId).min(1).max(100)),
})
/**
 * Answer of `GET /presence`: each asked user's status. Users who share no room with the caller are
 * reported `offline`, whatever they are (presence is only the business of people who talk).
 */
export const PresenceResponse = z.object({ presence: z.record(z.string(), PresenceStatus) })

/** `POST /rooms`. */
export const CreateRoomBody = z.strictObject({
  kind: RoomKind,
  name: z.string().max(255).optional(),
  topic: z.string().max(1024).optional(),
  invite: z.array(UserId).max(100).optional(),
  encrypted: z.boolean().optional(),
})
export type CreateRoomBody = z.infer<typeof CreateRoomBody>
/**
 * `POST /rooms/{room}/invite|kick|ban|unban`. `statement`: the acting device's signed membership
 * statement (E2E.md section 2.3), required in encrypted rooms.
 */
export const TargetUserBody = z.strictObject({
  user_id: UserId,
  reason: z.string().max(512).optional(),
  statement: MembershipStatement.optional(),
})
/** `PUT /rooms/{room}/settings`. */
export const RoomSettingsBody = z
  .strictObject({ name: z.string().max(255).optional(), topic: z.string().max(1024).optional() })
  .refine((b) => b.name !== undefined || b.topic !== undefined, 'nothing to change')
/** `PUT /rooms/{room}/power`. */
export const PowerBody = z.strictObject({ user_id: UserId, role: Role.exclude(['owner']) })
/** `GET /rooms/{room}/messages`. */
export const MessagesQuery = z.object({
  before: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})
/** Answer of `GET /rooms/{room}/messages`: newest first. */
export const MessagesResponse = z.object({
  events: z.array(ClientEvent),
  /** Pass as `before` for the next (older) page; absent at the start of the room. */
  next_before: Cursor.optional(),
})

/** One room of `GET /rooms`. */
export const RoomSummary = z.object({
  room_id: RoomId,
  kind: RoomKind,
  name: z.string(),
  topic: z.string(),
  encrypted: z.boolean(),
  membership: Membership,
  role: Role,
  members: z.number().int(),
  /** Messages from others after the user's read receipt. */
  unread: z.number().int(),
  last_seq: Cursor,
  last_event: ClientEvent.optional(),
  /** In a DM: the other person (joined, invited or gone), so clients can name the room after them. */
  dm_peer: UserId.optional(),
})
export type RoomSummary = z.infer<typeof RoomSummary>
/** A member of a room. */
export const MemberSummary = z.object({ user_id: UserId, membership: Membership, role: Role })

/**
 * Answer of media upload. `server` (the uploading server, i.e. the uploader's) and `sha256` (of the
 * bytes, lowercase hex) are sent by servers with federated media; optional so older servers parse.
 */
export const MediaUploadResponse = z.object({
  media_id: z.string(),
  size: z.number().int(),
  content_type: z.string(),
  server: ServerName.optional(),
  sha256: Sha256Hex.optional(),
})
/** Query of media upload: the room whose members may download it, and a display name. */
export const MediaUploadQuery = z.object({
  room: RoomId,
  filename: z.string().max(255).optional(),
})

/** `GET /media/{server}/{media_id}`: media held by `server` (ours or a peer's). */
export const MediaPathParams = z.object({ server: ServerName, media_id: MediaId })

/** Ids used in paths. */
export const RoomParam = z.object({ room: RoomId })
export const EventParam = z.object({ room: RoomId, event: EventId })
export const UserParam = z.object({ user: UserId })

/** Every HTTP error body. */
export const ErrorResponse = z.object({
  errcode: z.string(),
  error: z.string(),
  retry_after_ms: z.number().int().min(0).optional(),
})
/** Answer of `POST /rooms`. */
export const CreateRoomResponse = z.object({ room_id: RoomId })
/** Answer of `GET /rooms`. */
export const RoomListResponse = z.object({ rooms: z.array(RoomSummary) })
/** Answer of `GET /rooms/{room}/members`. */
export const MemberListResponse = z.object({ members: z.array(MemberSummary) })
/** Answer of `GET /users`. */
export const UserSearchResponse = z.object({ users: z.array(UserSummary) })
/** Answer of membership, role and other operations that create one event. */
export const EventIdResponse = z.object({ event_id: EventId })
