/**
 * The REST half of the client: `fetch` calls under `/api/v1` (DESIGN.md sections 5 and 11). Every
 * answer is validated with a schema before use; errors become {@link ApiError}. The session lives in
 * the {@link ClientStore}: sign-in stores it, a refresh replaces it, logout clears the store.
 */
import type { z } from 'zod'
import { parseUserId } from '../ids.ts'
import type {
  MemberSummary as MemberSummarySchema,
  MembershipSnapshot,
  MembershipStatement,
} from '../schema/index.ts'
import {
  MediaPathParams,
  Sha256Hex,
  AuthResponse,
  CreateRoomResponse,
  ErrorResponse,
  MemberListResponse,
  PresenceResponse,
  RoomListResponse,
  UserSearchResponse,
  KeysQueryResponse,
  BackupResponse,
  BackupSessionsResponse,
  SecretStorageResponse,
  MediaUploadResponse as MediaUploadResponseSchema,
  MessagesResponse as MessagesResponseSchema,
  RoomSummary,
  UserSummary as UserSummarySchema,
  parseJson,
  type Attachment,
  type CreateRoomBody,
  type PresenceStatus,
  type Role,
  type BackupSessionRecord,
  type SecretStorage,
  type SignedBackupMetadata,
  type SignedDeviceList,
  type SignedPrekey,
  RoomMembershipResponse,
} from '../schema/index.ts'
import { ApiError, NetworkError, NoSessionError, ProtocolError } from './errors.ts'
import type { ClientStore, Session } from './store.ts'
import { systemClock, type Clock } from './timing.ts'

/** The subset of `fetch` the client uses; inject a fake one in tests. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>

/** A user as listed by the directory and profiles. */
export type UserSummary = z.infer<typeof UserSummarySchema>
/** A member of a room. */
export type MemberSummary = z.infer<typeof MemberSummarySchema>
/** One page of history, newest first. */
export type MessagesResponse = z.infer<typeof MessagesResponseSchema>
/** Answer of a media upload. */
export type MediaUploadResponse = z.infer<typeof MediaUploadResponseSchema>
/** A downloaded media object. */
export interface MediaDownload {
  readonly bytes: Uint8Array
  /**
   * The `Content-Type` the server sent (empty if none). Servers send the stored type only for
   * images they let browsers show inline (png, jpeg, gif, webp); anything else comes as
   * `application/octet-stream`: use the attachment's `mime` for display.
   */
  readonly contentType: string
  /** The file name from `Content-Disposition` (`filename*`), if the server sent one. */
  readonly filename?: string
}
/** Options of media downloads. */
export interface MediaDownloadOptions {
  /**
   * The SHA-256 the bytes must have (64 lowercase hex digits), e.g. an attachment's `sha256`. If the
   * bytes differ, the download throws {@link ProtocolError}. Uses WebCrypto (a secure context).
   */
  readonly sha256?: string
}
/** Room settings that `PUT /rooms/{room}/settings` can change; give at least one. */
export interface RoomSettings {
  readonly name?: string
  readonly topic?: string
}
/** Roles that `PUT /rooms/{room}/power` can grant (ownership is not transferable this way). */
export type AssignableRole = Exclude<Role, 'owner'>

/** Options of {@link HttpApi}. */
export interface HttpApiOptions {
  /** The homeserver's base URL, e.g. `https://chat.acme.example` (a path prefix is kept). */
  readonly baseUrl: string
  /** Where the session is read from and written to. */
  readonly store: ClientStore
  /** Defaults to the global `fetch`. */
  readonly fetch?: FetchLike
  /** Used to compute and check token expiry; defaults to the system clock. */
  readonly clock?: Pick<Clock, 'now'>
  /**
   * Called once the server refuses the refresh token: the device is signed out and the user must
   * sign in again. The stored session is left as it was, so a new sign-in by the same user keeps the
   * cursor and the outbox.
   */
  readonly onSessionEnded?: (error: ApiError) => void
}

/** Options of sign-in calls. */
export interface SignInOptions {
  /** A name for the new device, shown in the user's device list. */
  readonly deviceName?: string
}

interface RequestSpec {
  readonly method: 'GET' | 'POST' | 'PUT'
  readonly path: string
  readonly query?: Readonly<Record<string, string | number | undefined>>
  readonly json?: unknown
  readonly body?: BodyInit
  readonly contentType?: string
}

const API = '/api/v1'
const enc = encodeURIComponent

/**
 * Typed access to the homeserver's REST API. Authenticated calls send `Authorization: Bearer`; on
 * `P_UNKNOWN_TOKEN` they refresh the session once (concurrent callers share one refresh, since a
 * refresh token is single use) and retry.
 */
export class HttpApi {
  /** The base URL without a trailing slash. */
  readonly baseUrl: string
  readonly #store: ClientStore
  readonly #fetch: FetchLike
  readonly #clock: Pick<Clock, 'now'>
  readonly #onSessionEnded: ((error: ApiError) => void) | undefined
  #refreshing: Promise<Session> | null = null

  /** Creates an API bound to one homeserver and one store; it makes no request until called. */
  constructor(options: HttpApiOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '')
    this.#store = options.store
    // Browsers require fetch to be called with globalThis as `this`.
    this.#fetch = options.fetch ?? ((url, init) => globalThis.fetch(url, init))
    this.#clock = options.clock ?? systemClock
    this.#onSessionEnded = options.onSessionEnded
  }

  // ---- sessions ----

  /**
   * `POST /register`: creates an account, signs this device in and stores the session. A store that
   * held another user's data (or no session) is cleared first.
   */
  async register(username: string, password: string, options: SignInOptions = {}): Promise<Session> {
    return this.#signIn('/register', username, password, options)
  }

  /** `POST /login`: signs this device in and stores the session (clearing another user's data first). */
  async login(username: string, password: string, options: SignInOptions = {}): Promise<Session> {
    return this.#signIn('/login', username, password, options)
  }

  /**
   * `POST /refresh`: trades the refresh token for a new session and stores it. If `staleAccessToken`
   * is given and the stored token already differs from it, someone else refreshed in the meantime and
   * the stored session is returned without a request. Concurrent calls share one request.
   *
   * @throws {@link ApiError} if the server refuses (then `onSessionEnded` has been called), {@link NetworkError}, {@link NoSessionError}.
   */
  refresh(staleAccessToken?: string): Promise<Session> {
    if (this.#refreshing) return this.#refreshing
    const refreshing = this.#refresh(staleAccessToken).finally(() => {
      this.#refreshing = null
    })
    this.#refreshing = refreshing
    return refreshing
  }

  /** `POST /logout`: revokes this device's tokens, then clears the store (a revoked token counts as done). */
  async logout(): Promise<void> {
    await this.#signOut('/logout')
  }

  /** `POST /logout/all`: revokes every device of the user, then clears the store. */
  async logoutAll(): Promise<void> {
    await this.#signOut('/logout/all')
  }

  /** The stored session, or `null` when signed out. */
  session(): Promise<Session | null> {
    return this.#store.getSession()
  }

  // ---- users ----

  /** `GET /profile/{user_id}`. */
  async getProfile(userId: string): Promise<UserSummary> {
    return this.#json(
      UserSummarySchema,
      await this.#authed({ method: 'GET', path: `/profile/${enc(userId)}` }),
    )
  }

  /** `PUT /profile`: sets the signed-in user's display name. */
  async setProfile(displayName: string): Promise<void> {
    await this.#authed({ method: 'PUT', path: '/profile', json: { display_name: displayName } })
  }

  /** `GET /users?q=&limit=`: the user directory. */
  async searchUsers(query: string, limit?: number): Promise<UserSummary[]> {
    const res = await this.#authed({ method: 'GET', path: '/users', query: { q: query, limit } })
    return (await this.#json(UserSearchResponse, res)).users
  }

  /** `GET /presence?users=`: the status of up to 100 users (`offline` for those who share no room with us). */
  async presence(userIds: readonly string[]): Promise<Record<string, PresenceStatus>> {
    const res = await this.#authed({ method: 'GET', path: '/presence', query: { users: userIds.join(',') } })
    return (await this.#json(PresenceResponse, res)).presence
  }

  // ---- end-to-end encryption keys ----

  /** `PUT /keys/device-list`: publishes the user's new signed device list. */
  async publishDeviceList(deviceList: SignedDeviceList): Promise<void> {
    await this.#authed({ method: 'PUT', path: '/keys/device-list', json: { device_list: deviceList } })
  }

  /** `PUT /keys/prekey`: publishes this device's current signed prekey. */
  async publishPrekey(signedPrekey: SignedPrekey): Promise<void> {
    await this.#authed({ method: 'PUT', path: '/keys/prekey', json: { signed_prekey: signedPrekey } })
  }

  /**
   * `POST /keys/query`: device lists and signed prekeys of users who share a room with the user (or
   * the user). Whatever comes back is the server's claim: verify it (crypto/e2e) before use.
   */
  async queryKeys(userIds: readonly string[]): Promise<KeysQueryResponse> {
    const res = await this.#authed({ method: 'POST', path: '/keys/query', json: { users: userIds } })
    return this.#json(KeysQueryResponse, res)
  }

  /** `PUT /keys/backup`: a new key backup version (the server drops the old version's records). */
  async putBackup(metadata: SignedBackupMetadata): Promise<void> {
    await this.#authed({ method: 'PUT', path: '/keys/backup', json: { metadata } })
  }

  /**
   * `GET /keys/backup`: the user's backup metadata, or null if there is none. The server's claim:
   * verify it with the UIK (crypto/e2e `verifyBackupMetadata`) before trusting it.
   */
  async getBackup(): Promise<SignedBackupMetadata | null> {
    return (
      (await this.#orNull(() => this.#authed({ method: 'GET', path: '/keys/backup' }), BackupResponse))
        ?.metadata ?? null
    )
  }

  /** `PUT /keys/backup/sessions`: stores encrypted session records of backup `version` (at most 100). */
  async putBackupSessions(version: string, records: readonly BackupSessionRecord[]): Promise<void> {
    await this.#authed({ method: 'PUT', path: '/keys/backup/sessions', json: { version, records } })
  }

  /** `GET /keys/backup/sessions?version=`: every record of that version (each still to be decrypted). */
  async getBackupSessions(version: string): Promise<BackupSessionRecord[]> {
    const res = await this.#authed({ method: 'GET', path: '/keys/backup/sessions', query: { version } })
    return (await this.#json(BackupSessionsResponse, res)).records
  }

  /** `PUT /keys/secret-storage`: replaces the user's secret storage (opaque to the server). */
  async putSecretStorage(secretStorage: SecretStorage): Promise<void> {
    await this.#authed({
      method: 'PUT',
      path: '/keys/secret-storage',
      json: { secret_storage: secretStorage },
    })
  }

  /** `GET /keys/secret-storage`: the user's secret storage, or null if there is none. */
  async getSecretStorage(): Promise<SecretStorage | null> {
    return (
      (
        await this.#orNull(
          () => this.#authed({ method: 'GET', path: '/keys/secret-storage' }),
          SecretStorageResponse,
        )
      )?.secret_storage ?? null
    )
  }

  // ---- rooms ----

  /** `POST /rooms`: creates a room owned by this server; returns its id. */
  async createRoom(body: CreateRoomBody): Promise<string> {
    const res = await this.#authed({ method: 'POST', path: '/rooms', json: body })
    return (await this.#json(CreateRoomResponse, res)).room_id
  }

  /** `GET /rooms`: the user's rooms with unread counts. */
  async listRooms(): Promise<RoomSummary[]> {
    return (await this.#json(RoomListResponse, await this.#authed({ method: 'GET', path: '/rooms' }))).rooms
  }

  /** `GET /rooms/{room}`: one room as the user sees it. */
  async getRoom(room: string): Promise<RoomSummary> {
    return this.#json(RoomSummary, await this.#authed({ method: 'GET', path: `/rooms/${enc(room)}` }))
  }

  /** `GET /rooms/{room}/members`. */
  async members(room: string): Promise<MemberSummary[]> {
    const res = await this.#authed({ method: 'GET', path: `/rooms/${enc(room)}/members` })
    return (await this.#json(MemberListResponse, res)).members
  }

  /**
   * `GET /rooms/{room}/membership`: every user's latest membership with the signed statement that
   * set it, and the roots of the room's membership log (E2E.md section 2.3).
   */
  async membership(room: string): Promise<RoomMembershipResponse> {
    const res = await this.#authed({ method: 'GET', path: `/rooms/${enc(room)}/membership` })
    return this.#json(RoomMembershipResponse, res)
  }

  // Membership changes take the acting device's signed statement (E2E.md section 2.3), which
  // encrypted rooms require; `EndToEnd` signs them.

  /** `POST /rooms/{room}/invite`. */
  async invite(
    room: string,
    userId: string,
    reason?: string,
    statement?: MembershipStatement,
  ): Promise<void> {
    await this.#target(room, 'invite', userId, reason, statement)
  }

  /** `POST /rooms/{room}/join`: accepts an invite (or joins a room open to the user). */
  async join(room: string, statement?: MembershipStatement): Promise<void> {
    await this.#authed({
      method: 'POST',
      path: `/rooms/${enc(room)}/join`,
      json: statement ? { statement } : {},
    })
  }

  /** `POST /rooms/{room}/leave`. */
  async leave(room: string, statement?: MembershipStatement): Promise<void> {
    await this.#authed({
      method: 'POST',
      path: `/rooms/${enc(room)}/leave`,
      json: statement ? { statement } : {},
    })
  }

  /** `POST /rooms/{room}/kick`. */
  async kick(room: string, userId: string, reason?: string, statement?: MembershipStatement): Promise<void> {
    await this.#target(room, 'kick', userId, reason, statement)
  }

  /** `POST /rooms/{room}/ban`. */
  async ban(room: string, userId: string, reason?: string, statement?: MembershipStatement): Promise<void> {
    await this.#target(room, 'ban', userId, reason, statement)
  }

  /** `POST /rooms/{room}/unban`. */
  async unban(room: string, userId: string, reason?: string, statement?: MembershipStatement): Promise<void> {
    await this.#target(room, 'unban', userId, reason, statement)
  }

  /**
   * `POST /rooms/{room}/encryption`: turns end-to-end encryption on for good, with the members at
   * that moment signed by this device (E2E.md section 2.3; `EndToEnd.enableEncryption` signs it).
   */
  async enableEncryption(room: string, snapshot?: MembershipSnapshot): Promise<void> {
    await this.#authed({
      method: 'POST',
      path: `/rooms/${enc(room)}/encryption`,
      json: snapshot ? { snapshot } : {},
    })
  }

  /** `PUT /rooms/{room}/settings`: renames the room or changes its topic. */
  async updateSettings(room: string, settings: RoomSettings): Promise<void> {
    await this.#authed({ method: 'PUT', path: `/rooms/${enc(room)}/settings`, json: settings })
  }

  /** `PUT /rooms/{room}/power`: gives a member a role. */
  async setRole(room: string, userId: string, role: AssignableRole): Promise<void> {
    await this.#authed({ method: 'PUT', path: `/rooms/${enc(room)}/power`, json: { user_id: userId, role } })
  }

  /**
   * `GET /rooms/{room}/messages?before=&limit=`: history, newest first. Pass the answer's
   * `next_before` as `before` for the next older page.
   */
  async messages(room: string, page: { before?: number; limit?: number } = {}): Promise<MessagesResponse> {
    const res = await this.#authed({
      method: 'GET',
      path: `/rooms/${enc(room)}/messages`,
      query: { before: page.before, limit: page.limit },
    })
    return this.#json(MessagesResponseSchema, res)
  }

  // ---- media ----

  /** `POST /media?room=&filename=`: uploads raw bytes that members of `room` may download. */
  async uploadMedia(
    room: string,
    bytes: Uint8Array | Blob,
    contentType: string,
    filename?: string,
  ): Promise<MediaUploadResponse> {
    // Copy a view into an ArrayBuffer-backed array: BodyInit does not accept SharedArrayBuffer views.
    const body = bytes instanceof Uint8Array ? new Uint8Array(bytes) : bytes
    const res = await this.#authed({
      method: 'POST',
      path: '/media',
      query: { room, filename },
      body,
      contentType,
    })
    return this.#json(MediaUploadResponseSchema, res)
  }

  /** `GET /media/{id}`: downloads a media object this homeserver holds (one uploaded here). */
  async downloadMedia(mediaId: string, options: MediaDownloadOptions = {}): Promise<MediaDownload> {
    checkDownloadOptions(options)
    const res = await this.#authed({ method: 'GET', path: `/media/${enc(mediaId)}` })
    return mediaOf(res, mediaId, options)
  }

  /**
   * `GET /media/{server}/{media_id}`: downloads media held by `server`, which may be another
   * homeserver: ours fetches it over federation (and keeps a copy), checking that we are a member of
   * the room it was shared in. For our own server name it is the same as {@link downloadMedia}.
   *
   * @throws TypeError if `server` or `mediaId` is malformed (a caller bug), {@link ApiError}
   * (`P_NOT_FOUND` for media we may not see, `P_UNAVAILABLE` when the other server cannot be
   * reached, `P_TOO_LARGE` over our server's limit), {@link ProtocolError} if `options.sha256` does not match.
   */
  async downloadRemoteMedia(
    server: string,
    mediaId: string,
    options: MediaDownloadOptions = {},
  ): Promise<MediaDownload> {
    if (!MediaPathParams.safeParse({ server, media_id: mediaId }).success)
      throw new TypeError('downloadRemoteMedia: invalid server name or media id')
    checkDownloadOptions(options)
    const res = await this.#authed({ method: 'GET', path: `/media/${enc(server)}/${enc(mediaId)}` })
    return mediaOf(res, mediaId, options)
  }

  /**
   * Downloads a message's attachment. The media lives on the sender's homeserver (media is uploaded
   * to one's own server), so it is fetched with {@link downloadRemoteMedia} from `sender`'s server;
   * the attachment's `sha256`, if it has one, is checked.
   *
   * @param sender - The `sender` of the event carrying the attachment.
   */
  async downloadAttachment(attachment: Attachment, sender: string): Promise<MediaDownload> {
    const server = parseUserId(sender)?.server
    if (server === undefined) throw new TypeError('downloadAttachment: sender is not a user id')
    const options = attachment.sha256 === undefined ? {} : { sha256: attachment.sha256 }
    return this.downloadRemoteMedia(server, attachment.media_id, options)
  }

  // ---- internals ----

  async #signIn(path: string, username: string, password: string, options: SignInOptions): Promise<Session> {
    const json = {
      username,
      password,
      ...(options.deviceName === undefined ? {} : { device_name: options.deviceName }),
    }
    const res = await this.#expectOk(await this.#request({ method: 'POST', path, json }))
    const session = this.#sessionOf(await this.#json(AuthResponse, res))
    const previous = await this.#store.getSession()
    // Cursor and outbox belong to one user; data of unknown ownership is not kept either.
    if (previous?.user_id !== session.user_id) await this.#store.clear()
    await this.#store.setSession(session)
    return session
  }

  async #signOut(path: string): Promise<void> {
    try {
      await this.#authed({ method: 'POST', path, json: {} })
    } catch (error) {
      // Already revoked (or refresh refused): the goal is reached.
      if (!(error instanceof ApiError && error.errcode === 'P_UNKNOWN_TOKEN')) throw error
    }
    await this.#store.clear()
  }

  async #refresh(staleAccessToken: string | undefined): Promise<Session> {
    const session = await this.#store.getSession()
    if (!session) throw new NoSessionError()
    if (staleAccessToken !== undefined && session.access_token !== staleAccessToken) return session
    const res = await this.#request({
      method: 'POST',
      path: '/refresh',
      json: { refresh_token: session.refresh_token },
    })
    if (!res.ok) {
      const error = await errorOf(res)
      if (error.status === 401) this.#onSessionEnded?.(error)
      throw error
    }
    const next = this.#sessionOf(await this.#json(AuthResponse, res))
    if (next.user_id !== session.user_id) {
      throw new ProtocolError(`refresh answered for ${next.user_id}, not ${session.user_id}`)
    }
    await this.#store.setSession(next)
    return next
  }

  #sessionOf(auth: AuthResponse): Session {
    return {
      user_id: auth.user_id,
      device_id: auth.device_id,
      access_token: auth.access_token,
      refresh_token: auth.refresh_token,
      expires_at: this.#clock.now() + auth.expires_in * 1000,
      base_url: this.baseUrl,
    }
  }

  async #target(
    room: string,
    action: string,
    userId: string,
    reason: string | undefined,
    statement: MembershipStatement | undefined,
  ): Promise<void> {
    const json: Record<string, unknown> = { user_id: userId }
    if (reason !== undefined) json.reason = reason
    if (statement !== undefined) json.statement = statement
    await this.#authed({ method: 'POST', path: `/rooms/${enc(room)}/${action}`, json })
  }

  /** Runs an authenticated request: refreshes an expired or unknown token once, then throws on any error. */
  async #authed(spec: RequestSpec): Promise<Response> {
    let session = await this.#store.getSession()
    if (!session) throw new NoSessionError()
    if (session.expires_at <= this.#clock.now()) session = await this.refresh(session.access_token)
    let res = await this.#request(spec, session.access_token)
    if (res.status === 401) {
      const error = await errorOf(res)
      if (error.errcode !== 'P_UNKNOWN_TOKEN') throw error
      session = await this.refresh(session.access_token)
      res = await this.#request(spec, session.access_token)
    }
    return this.#expectOk(res)
  }

  async #request(spec: RequestSpec, token?: string): Promise<Response> {
    let url = this.baseUrl + API + spec.path
    if (spec.query) {
      const params = new URLSearchParams()
      for (const [key, value] of Object.entries(spec.query))
        if (value !== undefined) params.set(key, String(value))
      const query = params.toString()
      if (query) url += '?' + query
    }
    const headers: Record<string, string> = { accept: 'application/json' }
    if (token !== undefined) headers['authorization'] = `Bearer ${token}`
    let body: BodyInit | undefined
    if (spec.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(spec.json)
    } else if (spec.body !== undefined) {
      if (spec.contentType !== undefined) headers['content-type'] = spec.contentType
      body = spec.body
    }
    try {
      return await this.#fetch(
        url,
        body === undefined ? { method: spec.method, headers } : { method: spec.method, headers, body },
      )
    } catch (cause) {
      throw new NetworkError(`${spec.method} ${API}${spec.path} failed`, { cause })
    }
  }

  async #expectOk(res: Response): Promise<Response> {
    if (res.ok) return res
    throw await errorOf(res)
  }

  /** `request`'s answer through `schema`, or null if the server said `P_NOT_FOUND`. */
  async #orNull<S extends z.ZodType>(
    request: () => Promise<Response>,
    schema: S,
  ): Promise<z.infer<S> | null> {
    let res: Response
    try {
      res = await request()
    } catch (error) {
      if (error instanceof ApiError && error.errcode === 'P_NOT_FOUND') return null
      throw error
    }
    return this.#json(schema, res)
  }

  async #json<S extends z.ZodType>(schema: S, res: Response): Promise<z.infer<S>> {
    let text: string
    try {
      text = await res.text()
    } catch (cause) {
      throw new NetworkError('response body not received', { cause })
    }
    const parsed = parseJson(schema, text)
    if (!parsed.ok)
      throw new ProtocolError(`unexpected answer from ${res.url || 'the server'}: ${parsed.error.message}`)
    return parsed.value
  }
}

/** Caller bugs in download options throw before any request. */
function checkDownloadOptions(options: MediaDownloadOptions): void {
  if (options.sha256 !== undefined && !Sha256Hex.safeParse(options.sha256).success)
    throw new TypeError('sha256 must be 64 lowercase hex digits')
}

/** Reads a media answer: the bytes, checked against `Content-Length` and the expected SHA-256. */
async function mediaOf(
  res: Response,
  mediaId: string,
  options: MediaDownloadOptions,
): Promise<MediaDownload> {
  let bytes: Uint8Array<ArrayBuffer>
  try {
    bytes = new Uint8Array(await res.arrayBuffer())
  } catch (cause) {
    throw new NetworkError(`GET media ${mediaId}: body not received`, { cause })
  }
  const length = res.headers.get('content-length')
  if (length !== null && length !== String(bytes.length))
    throw new ProtocolError(`media ${mediaId}: ${bytes.length} bytes, Content-Length said ${length}`)
  if (options.sha256 !== undefined) {
    const digest = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes))
    let hex = ''
    for (const b of digest) hex += b.toString(16).padStart(2, '0')
    if (hex !== options.sha256) throw new ProtocolError(`media ${mediaId}: bytes do not match their sha256`)
  }
  const filename = filenameOf(res.headers.get('content-disposition'))
  return {
    bytes,
    contentType: res.headers.get('content-type') ?? '',
    ...(filename === undefined ? {} : { filename }),
  }
}

/** The RFC 5987 `filename*=UTF-8''...` of a `Content-Disposition` (RFC 6266), decoded. */
function filenameOf(disposition: string | null): string | undefined {
  const match = disposition === null ? null : /filename\*=UTF-8''([^;\s]*)/i.exec(disposition)
  if (!match) return undefined
  try {
    return decodeURIComponent(match[1]!)
  } catch {
    return undefined
  }
}

/** Reads `{errcode, error, retry_after_ms?}` from an error answer; tolerates bodies that are not. */
async function errorOf(res: Response): Promise<ApiError> {
  let text = ''
  try {
    text = await res.text()
  } catch {
    // The status alone still says what happened.
  }
  const header = res.headers.get('retry-after')
  const headerMs = header !== null && /^\d+$/.test(header) ? Number(header) * 1000 : undefined
  const parsed = parseJson(ErrorResponse, text)
  if (!parsed.ok)
    return new ApiError('P_UNKNOWN', res.status, `HTTP ${res.status} ${res.statusText}`.trim(), headerMs)
  const body = parsed.value
  return new ApiError(body.errcode, res.status, body.error, body.retry_after_ms ?? headerMs)
}
