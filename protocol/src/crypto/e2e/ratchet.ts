/**
 * The per-sender group ratchet of E2E.md section 2.4 ("Group messages"), with its rotation rule.
 *
 * A sender owns an {@link OutboundGroupSession}: a fresh Ed25519 key pair (`session_id` is its public
 * key) and a chain key `CK_i`. Each message `i` is encrypted under `MK_i = kdf(32, 1, "grpratch", CK_i)`
 * and the chain steps to `CK_i+1 = kdf(32, 2, "grpratch", CK_i)`, wiping `CK_i`. Members receive the
 * room-key payload (inside an envelope, E2E.md section 2.2) and build an {@link InboundGroupSession},
 * which runs the receiver checks in the exact order of section 2.4.
 *
 * `‖` is implemented with {@link encodeFields} (length-prefixed fields) and `u64(i)` is big-endian.
 */
import { canonicalJson, type JsonObject } from '../../canonical-json.ts'
import { fromBase64Url, fromUtf8, toBase64Url, utf8 } from '../../encoding.ts'
import { E2eError } from './errors.ts'
import {
  aeadDecrypt,
  aeadEncrypt,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  constantTimeEqual,
  encodeFields,
  kdfDerive,
  memzero,
  pad,
  PAD_BLOCK_BYTES,
  secretRandomBytes,
  sign,
  SIGN_SECRET_KEY_BYTES,
  SIGNATURE_BYTES,
  signingKeyPair,
  u64be,
  unpad,
  verify,
  type SigningKeyPair,
} from './primitives.ts'

/** The `suite` of every v1 encrypted event and key payload (E2E.md section 2, "suite field"). */
export const E2E_SUITE = 'e2e/v1'
/** Default messages per session before rotation (E2E.md section 2.4, "every 100 messages"). */
export const DEFAULT_MAX_MSGS = 100
/** Smallest room-configurable `max_msgs` (E2E.md section 2.4: 10-1000). */
export const MIN_MAX_MSGS = 10
/** Largest room-configurable `max_msgs` (E2E.md section 2.4: 10-1000). */
export const MAX_MAX_MSGS = 1000
/** Default session lifetime before rotation, 24 h in ms (E2E.md section 2.4). */
export const DEFAULT_MAX_AGE_MS = 24 * 60 * 60 * 1000
/** Shortest room-configurable `max_age`, 1 h (E2E.md section 2.4). */
export const MIN_MAX_AGE_MS = 60 * 60 * 1000
/** Longest room-configurable `max_age`, 7 d (E2E.md section 2.4). */
export const MAX_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000
/** Grace after `created_ts + max_age` for clock skew and delivery delay, 1 h (E2E.md section 2.4). */
export const MAX_AGE_GRACE_MS = 60 * 60 * 1000
/** Bytes of a chain or message key (E2E.md section 2.4). */
export const CHAIN_KEY_BYTES = 32
/** Bytes of `membership_epoch = H(latest membership event)` (E2E.md sections 2.3 and 2.4). */
export const MEMBERSHIP_EPOCH_BYTES = 32

const KDF_CONTEXT = 'grpratch'
const MSG_AD_LABEL = 'e2e/v1/msg'
const MSG_SIG_LABEL = 'e2e/v1/msgsig'
// Ids and event types are short; anything longer is hostile input.
const MAX_ID_LENGTH = 255
// A v1 message is at most 64 KiB of padded plaintext (the homeserver's event limit is smaller).
const MAX_CIPHERTEXT_BYTES = 64 * 1024 + AEAD_TAG_BYTES

/** `MK_i = crypto_kdf_derive_from_key(32, 1, "grpratch", CK_i)` (E2E.md section 2.4). */
export function deriveMessageKey(chainKey: Uint8Array): Uint8Array {
  return kdfDerive(CHAIN_KEY_BYTES, 1, KDF_CONTEXT, chainKey)
}

/** `CK_i+1 = crypto_kdf_derive_from_key(32, 2, "grpratch", CK_i)` (E2E.md section 2.4). */
export function nextChainKey(chainKey: Uint8Array): Uint8Array {
  return kdfDerive(CHAIN_KEY_BYTES, 2, KDF_CONTEXT, chainKey)
}

/**
 * Steps a chain key forward `count` times (E2E.md section 2.4), returning `CK_{i+count}` and the number
 * of steps taken, which is exactly `count` (seeking from 0 to 99 is 99 steps). The input is not wiped.
 * `count` is capped at {@link MAX_MAX_MSGS} so no caller can ask for unbounded work.
 */
export function seekChainKey(chainKey: Uint8Array, count: number): { chainKey: Uint8Array; steps: number } {
  if (!Number.isSafeInteger(count) || count < 0 || count > MAX_MAX_MSGS)
    throw new E2eError('too_far_ahead', 'seek distance out of range')
  let current: Uint8Array = chainKey.slice()
  for (let step = 0; step < count; step++) {
    const next = nextChainKey(current)
    memzero(current)
    current = next
  }
  return { chainKey: current, steps: count }
}

/**
 * The decrypted body of a group message (E2E.md section 2.4: "the plaintext repeats `room_id` and event
 * type"). `content` is untrusted: validate it with the event's schema before use.
 */
export interface GroupPlaintext {
  readonly room_id: string
  readonly type: string
  readonly content: JsonObject
}

/** An encrypted group message as it travels in an event's content (E2E.md section 2.4). Bytes are base64url. */
export interface GroupMessage {
  readonly suite: typeof E2E_SUITE
  /** base64url of the session's Ed25519 public key. */
  readonly session_id: string
  readonly sender_user: string
  readonly sender_dev: string
  /** Ratchet index `i`. */
  readonly index: number
  readonly nonce: string
  readonly ciphertext: string
  readonly signature: string
}

/**
 * The room-key payload, sent inside an envelope (E2E.md section 2.4): `{room_id, session_id,
 * sender_user, sender_dev, index i, CK_i, created_ts, max_msgs, max_age, membership_epoch}`. `max_age`
 * and `created_ts` are milliseconds; bytes are base64url. `chain_key` is a secret.
 */
export interface RoomKeyPayload {
  readonly suite: typeof E2E_SUITE
  readonly room_id: string
  readonly session_id: string
  readonly sender_user: string
  readonly sender_dev: string
  readonly index: number
  readonly chain_key: string
  readonly created_ts: number
  readonly max_msgs: number
  readonly max_age: number
  readonly membership_epoch: string
}

/** A message that passed every check of E2E.md section 2.4. */
export interface DecryptedGroupMessage {
  readonly plaintext: GroupPlaintext
  readonly sessionId: string
  readonly senderUser: string
  readonly senderDev: string
  readonly index: number
  /** The session's `membership_epoch`: compare it with the locally validated membership chain (E2E.md section 2.3). */
  readonly membershipEpoch: Uint8Array
}

/** Why a sender must start a new outbound session (E2E.md section 2.4, "Rotation"). */
export type RotationReason =
  'member_removed' | 'device_removed' | 'identity_changed' | 'max_msgs' | 'max_age' | 'membership_epoch'

/**
 * What the rotation rule looks at (E2E.md section 2.4): the session's use and age, and whether, since
 * it was created, any member left/was kicked/banned, any device was removed or revoked from any member's
 * device list (own included), or any member's UIK changed. Joins and new devices do not rotate.
 */
export interface RotationInput {
  readonly messagesSent: number
  readonly createdTs: number
  readonly maxMsgs: number
  readonly maxAge: number
  readonly now: number
  readonly memberRemoved?: boolean
  readonly deviceRemoved?: boolean
  readonly identityChanged?: boolean
}

/**
 * The first rotation rule of E2E.md section 2.4 that applies, or `null` if the session may keep being
 * used. Security events take precedence over the use and age limits.
 */
export function rotationReason(input: RotationInput): RotationReason | null {
  if (input.memberRemoved === true) return 'member_removed'
  if (input.deviceRemoved === true) return 'device_removed'
  if (input.identityChanged === true) return 'identity_changed'
  if (input.messagesSent >= input.maxMsgs) return 'max_msgs'
  if (input.now >= input.createdTs + input.maxAge) return 'max_age'
  return null
}

/** True if E2E.md section 2.4 requires a new outbound session; see {@link rotationReason}. */
export function needsRotation(input: RotationInput): boolean {
  return rotationReason(input) !== null
}

/** Throws `bad_input` unless `maxMsgs` and `maxAge` are within the room-configurable range of E2E.md section 2.4. */
export function assertSessionLimits(maxMsgs: number, maxAge: number): void {
  if (!Number.isSafeInteger(maxMsgs) || maxMsgs < MIN_MAX_MSGS || maxMsgs > MAX_MAX_MSGS)
    throw new E2eError('bad_input', `max_msgs must be ${MIN_MAX_MSGS}..${MAX_MAX_MSGS}`)
  if (!Number.isSafeInteger(maxAge) || maxAge < MIN_MAX_AGE_MS || maxAge > MAX_MAX_AGE_MS)
    throw new E2eError('bad_input', 'max_age must be 1 h..7 d in milliseconds')
}

function groupAd(
  roomId: string,
  sessionKey: Uint8Array,
  senderUser: string,
  senderDev: string,
  index: number,
  membershipEpoch: Uint8Array,
): Uint8Array {
  return encodeFields(MSG_AD_LABEL, roomId, sessionKey, senderUser, senderDev, u64be(index), membershipEpoch)
}

function signedBytes(ad: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  return encodeFields(MSG_SIG_LABEL, ad, nonce, ciphertext)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function idField(record: Record<string, unknown>, name: string): string {
  const value = record[name]
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH)
    throw new E2eError('bad_input', `${name} must be a non-empty string`)
  return value
}

function bytesField(
  record: Record<string, unknown>,
  name: string,
  length?: number,
  max?: number,
): Uint8Array {
  const value = record[name]
  if (typeof value !== 'string') throw new E2eError('bad_input', `${name} must be base64url`)
  if (max !== undefined && value.length > Math.ceil((max * 4) / 3))
    throw new E2eError('bad_input', `${name} too long`)
  const bytes = fromBase64Url(value)
  if (bytes === null) throw new E2eError('bad_input', `${name} must be base64url`)
  if (length !== undefined && bytes.length !== length)
    throw new E2eError('bad_input', `${name} must be ${length} bytes`)
  return bytes
}

function intField(record: Record<string, unknown>, name: string): number {
  const value = record[name]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new E2eError('bad_input', `${name} must be a non-negative integer`)
  return value
}

interface ParsedMessage {
  readonly message: GroupMessage
  readonly sessionKey: Uint8Array
  readonly nonce: Uint8Array
  readonly ciphertext: Uint8Array
  readonly signature: Uint8Array
}

function parseMessage(value: unknown): ParsedMessage {
  if (!isRecord(value)) throw new E2eError('bad_input', 'group message must be an object')
  if (value.suite !== E2E_SUITE) throw new E2eError('bad_input', 'unsupported suite')
  const sessionKey = bytesField(value, 'session_id', 32)
  const nonce = bytesField(value, 'nonce', AEAD_NONCE_BYTES)
  const ciphertext = bytesField(value, 'ciphertext', undefined, MAX_CIPHERTEXT_BYTES)
  const signature = bytesField(value, 'signature', SIGNATURE_BYTES)
  const message: GroupMessage = {
    suite: E2E_SUITE,
    session_id: toBase64Url(sessionKey),
    sender_user: idField(value, 'sender_user'),
    sender_dev: idField(value, 'sender_dev'),
    index: intField(value, 'index'),
    nonce: toBase64Url(nonce),
    ciphertext: toBase64Url(ciphertext),
    signature: toBase64Url(signature),
  }
  return { message, sessionKey, nonce, ciphertext, signature }
}

/** Parses an untrusted group message (E2E.md section 2.4); throws `bad_input` for any malformed field. */
export function parseGroupMessage(value: unknown): GroupMessage {
  return parseMessage(value).message
}

interface ParsedRoomKey {
  readonly payload: RoomKeyPayload
  readonly sessionKey: Uint8Array
  readonly chainKey: Uint8Array
  readonly membershipEpoch: Uint8Array
}

function parseRoomKey(value: unknown): ParsedRoomKey {
  if (!isRecord(value)) throw new E2eError('bad_input', 'room key must be an object')
  if (value.suite !== E2E_SUITE) throw new E2eError('bad_input', 'unsupported suite')
  const sessionKey = bytesField(value, 'session_id', 32)
  const chainKey = bytesField(value, 'chain_key', CHAIN_KEY_BYTES)
  const membershipEpoch = bytesField(value, 'membership_epoch', MEMBERSHIP_EPOCH_BYTES)
  const maxMsgs = intField(value, 'max_msgs')
  const maxAge = intField(value, 'max_age')
  assertSessionLimits(maxMsgs, maxAge)
  const index = intField(value, 'index')
  if (index >= maxMsgs) throw new E2eError('too_far_ahead', 'room key index beyond max_msgs')
  const payload: RoomKeyPayload = {
    suite: E2E_SUITE,
    room_id: idField(value, 'room_id'),
    session_id: toBase64Url(sessionKey),
    sender_user: idField(value, 'sender_user'),
    sender_dev: idField(value, 'sender_dev'),
    index,
    chain_key: toBase64Url(chainKey),
    created_ts: intField(value, 'created_ts'),
    max_msgs: maxMsgs,
    max_age: maxAge,
    membership_epoch: toBase64Url(membershipEpoch),
  }
  return { payload, sessionKey, chainKey, membershipEpoch }
}

/** Parses an untrusted room-key payload (E2E.md section 2.4); throws `bad_input` for any malformed field. */
export function parseRoomKeyPayload(value: unknown): RoomKeyPayload {
  const parsed = parseRoomKey(value)
  memzero(parsed.chainKey)
  return parsed.payload
}

function parsePlaintext(bytes: Uint8Array): GroupPlaintext {
  let value: unknown
  try {
    value = JSON.parse(fromUtf8(bytes))
  } catch {
    throw new E2eError('bad_input', 'plaintext is not UTF-8 JSON')
  }
  if (!isRecord(value) || !isRecord(value.content))
    throw new E2eError('bad_input', 'plaintext must be an object')
  if (typeof value.room_id !== 'string' || typeof value.type !== 'string' || value.type.length === 0)
    throw new E2eError('bad_input', 'plaintext needs room_id and type')
  return { room_id: value.room_id, type: value.type, content: value.content as JsonObject }
}

/** Options of {@link OutboundGroupSession.create} (E2E.md section 2.4). */
export interface OutboundGroupSessionOptions {
  readonly roomId: string
  readonly senderUser: string
  readonly senderDev: string
  /** `H(latest membership event)`, 32 bytes (E2E.md section 2.3). */
  readonly membershipEpoch: Uint8Array
  /** Defaults to {@link DEFAULT_MAX_MSGS}; the room may configure 10-1000. */
  readonly maxMsgs?: number
  /** Milliseconds; defaults to {@link DEFAULT_MAX_AGE_MS}; the room may configure 1 h-7 d. */
  readonly maxAge?: number
  /** Creation time in ms; defaults to `Date.now()`. */
  readonly now?: number
}

/**
 * The sending half of a group session (E2E.md section 2.4). Holds the session signing key pair and
 * only the current chain key `CK_i`: each {@link encrypt} derives `MK_i` and `CK_i+1` and wipes `CK_i`
 * and `MK_i`, so a later compromise does not reveal earlier messages of this session.
 */
export class OutboundGroupSession {
  readonly roomId: string
  readonly senderUser: string
  readonly senderDev: string
  readonly createdTs: number
  readonly maxMsgs: number
  readonly maxAge: number
  readonly #membershipEpoch: Uint8Array
  readonly #signing: SigningKeyPair
  #chainKey: Uint8Array
  #index = 0
  #disposed = false

  private constructor(
    options: Required<OutboundGroupSessionOptions>,
    signing: SigningKeyPair,
    chainKey: Uint8Array,
  ) {
    this.roomId = options.roomId
    this.senderUser = options.senderUser
    this.senderDev = options.senderDev
    this.createdTs = options.now
    this.maxMsgs = options.maxMsgs
    this.maxAge = options.maxAge
    this.#membershipEpoch = options.membershipEpoch.slice()
    this.#signing = signing
    this.#chainKey = chainKey
  }

  /** Starts a session: fresh signing key pair and random `CK_0` (E2E.md section 2.4). Throws `bad_input` on bad options. */
  static create(options: OutboundGroupSessionOptions): OutboundGroupSession {
    const resolved: Required<OutboundGroupSessionOptions> = {
      roomId: options.roomId,
      senderUser: options.senderUser,
      senderDev: options.senderDev,
      membershipEpoch: options.membershipEpoch,
      maxMsgs: options.maxMsgs ?? DEFAULT_MAX_MSGS,
      maxAge: options.maxAge ?? DEFAULT_MAX_AGE_MS,
      now: options.now ?? Date.now(),
    }
    const record = resolved as unknown as Record<string, unknown>
    for (const name of ['roomId', 'senderUser', 'senderDev']) idField(record, name)
    if (
      !(resolved.membershipEpoch instanceof Uint8Array) ||
      resolved.membershipEpoch.length !== MEMBERSHIP_EPOCH_BYTES
    )
      throw new E2eError('bad_input', 'membershipEpoch must be 32 bytes')
    if (!Number.isSafeInteger(resolved.now) || resolved.now < 0)
      throw new E2eError('bad_input', 'now out of range')
    assertSessionLimits(resolved.maxMsgs, resolved.maxAge)
    return new OutboundGroupSession(resolved, signingKeyPair(), secretRandomBytes(CHAIN_KEY_BYTES))
  }

  /** `session_id`: base64url of the session's Ed25519 public key (E2E.md section 2.4). */
  get sessionId(): string {
    return toBase64Url(this.#signing.publicKey)
  }

  /** The index the next message will use; equals the number of messages sent (E2E.md section 2.4). */
  get index(): number {
    return this.#index
  }

  /** A copy of the session's `membership_epoch` (E2E.md section 2.3). */
  get membershipEpoch(): Uint8Array {
    return this.#membershipEpoch.slice()
  }

  /** {@link rotationReason} for this session at `now`, given what changed since it was created (E2E.md section 2.4). */
  rotationReason(
    now: number,
    changes: Pick<RotationInput, 'memberRemoved' | 'deviceRemoved' | 'identityChanged'> = {},
  ): RotationReason | null {
    return rotationReason({
      ...changes,
      messagesSent: this.#index,
      createdTs: this.createdTs,
      maxMsgs: this.maxMsgs,
      maxAge: this.maxAge,
      now,
    })
  }

  /**
   * Encrypts and signs one message at index `i`, then steps the chain and wipes `CK_i` and `MK_i`
   * (E2E.md section 2.4). `plaintext.room_id` must be this session's room. Throws `session_exhausted`
   * once `max_msgs` messages were sent or `max_age` passed: rotate first.
   */
  encrypt(plaintext: GroupPlaintext, now: number = Date.now()): GroupMessage {
    if (this.#disposed) throw new E2eError('session_exhausted', 'session disposed')
    if (this.#index >= this.maxMsgs) throw new E2eError('session_exhausted', 'max_msgs reached: rotate')
    if (now >= this.createdTs + this.maxAge)
      throw new E2eError('session_exhausted', 'max_age reached: rotate')
    if (!isRecord(plaintext) || plaintext.room_id !== this.roomId)
      throw new E2eError('wrong_room', 'plaintext room_id differs from the session room')
    if (typeof plaintext.type !== 'string' || plaintext.type.length === 0 || !isRecord(plaintext.content))
      throw new E2eError('bad_input', 'plaintext needs a type and a content object')
    const body = utf8(
      JSON.stringify({ room_id: plaintext.room_id, type: plaintext.type, content: plaintext.content }),
    )
    const index = this.#index
    const messageKey = deriveMessageKey(this.#chainKey)
    const next = nextChainKey(this.#chainKey)
    memzero(this.#chainKey)
    this.#chainKey = next
    this.#index = index + 1
    const padded = pad(body)
    try {
      const ad = groupAd(
        this.roomId,
        this.#signing.publicKey,
        this.senderUser,
        this.senderDev,
        index,
        this.#membershipEpoch,
      )
      const { nonce, ciphertext } = aeadEncrypt(messageKey, padded, ad)
      const signature = sign(this.#signing.secretKey, signedBytes(ad, nonce, ciphertext))
      return {
        suite: E2E_SUITE,
        session_id: this.sessionId,
        sender_user: this.senderUser,
        sender_dev: this.senderDev,
        index,
        nonce: toBase64Url(nonce),
        ciphertext: toBase64Url(ciphertext),
        signature: toBase64Url(signature),
      }
    } finally {
      memzero(messageKey, padded, body)
    }
  }

  /**
   * The room-key payload at the current index (E2E.md section 2.4): what joiners and new devices get,
   * so they can decrypt from here on but not before (section 3 row 9). Send it only inside an envelope.
   */
  exportRoomKey(): RoomKeyPayload {
    if (this.#disposed) throw new E2eError('session_exhausted', 'session disposed')
    return {
      suite: E2E_SUITE,
      room_id: this.roomId,
      session_id: this.sessionId,
      sender_user: this.senderUser,
      sender_dev: this.senderDev,
      index: this.#index,
      chain_key: toBase64Url(this.#chainKey),
      created_ts: this.createdTs,
      max_msgs: this.maxMsgs,
      max_age: this.maxAge,
      membership_epoch: toBase64Url(this.#membershipEpoch),
    }
  }

  /** Wipes the chain key and the signing secret key; later calls throw (E2E.md section 2.4, rotation). */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    memzero(this.#chainKey, this.#signing.secretKey)
  }

  /**
   * The whole state, secrets included, for the device's sealed key store (E2E.md section 1, "Stolen
   * device"). Persist it after every {@link encrypt} so a crash never reuses an index.
   */
  toState(): OutboundGroupSessionState {
    if (this.#disposed) throw new E2eError('session_exhausted', 'session disposed')
    return {
      room_id: this.roomId,
      sender_user: this.senderUser,
      sender_dev: this.senderDev,
      created_ts: this.createdTs,
      max_msgs: this.maxMsgs,
      max_age: this.maxAge,
      membership_epoch: toBase64Url(this.#membershipEpoch),
      signing_key: toBase64Url(this.#signing.secretKey),
      chain_key: toBase64Url(this.#chainKey),
      index: this.#index,
    }
  }

  /** Restores {@link toState} output (E2E.md section 2.4); `bad_input` for anything inconsistent. */
  static fromState(state: unknown): OutboundGroupSession {
    if (!isRecord(state)) throw new E2eError('bad_input', 'state must be an object')
    const secretKey = bytesField(state, 'signing_key', SIGN_SECRET_KEY_BYTES)
    const signing = signingKeyPair(secretKey.slice(0, 32))
    if (!constantTimeEqual(signing.publicKey, secretKey.subarray(32)))
      throw new E2eError('bad_input', 'signing key halves do not match')
    memzero(secretKey)
    const options: Required<OutboundGroupSessionOptions> = {
      roomId: idField(state, 'room_id'),
      senderUser: idField(state, 'sender_user'),
      senderDev: idField(state, 'sender_dev'),
      membershipEpoch: bytesField(state, 'membership_epoch', MEMBERSHIP_EPOCH_BYTES),
      maxMsgs: intField(state, 'max_msgs'),
      maxAge: intField(state, 'max_age'),
      now: intField(state, 'created_ts'),
    }
    assertSessionLimits(options.maxMsgs, options.maxAge)
    const index = intField(state, 'index')
    if (index > options.maxMsgs) throw new E2eError('bad_input', 'index beyond max_msgs')
    const session = new OutboundGroupSession(
      options,
      signing,
      bytesField(state, 'chain_key', CHAIN_KEY_BYTES),
    )
    session.#index = index
    return session
  }
}

/** Persistable state of an {@link OutboundGroupSession} (E2E.md section 2.4). Contains secrets; bytes are base64url. */
export interface OutboundGroupSessionState {
  readonly room_id: string
  readonly sender_user: string
  readonly sender_dev: string
  readonly created_ts: number
  readonly max_msgs: number
  readonly max_age: number
  readonly membership_epoch: string
  /** libsodium's 64-byte Ed25519 secret key of the session. */
  readonly signing_key: string
  readonly chain_key: string
  readonly index: number
}

/** Persistable state of an {@link InboundGroupSession} (E2E.md section 2.4). Contains secrets; bytes are base64url. */
export interface InboundGroupSessionState {
  /** The room key as first received (at `firstKnownIndex`). */
  readonly room_key: RoomKeyPayload
  readonly chain_index: number
  readonly chain_key: string
  /** Message keys of skipped indexes, `[index, key]`. */
  readonly skipped: ReadonlyArray<readonly [number, string]>
  /** Indexes already accepted. */
  readonly seen: readonly number[]
}

/** Who a room key came from: the authenticated sender of the envelope that carried it (E2E.md section 2.2). */
export interface RoomKeyOrigin {
  readonly userId: string
  readonly deviceId: string
}

/** Where and when a group message is being decrypted (E2E.md section 2.4). */
export interface GroupDecryptContext {
  /** The room the event arrived in. */
  readonly roomId: string
  /**
   * When the event was received, in ms: `Date.now()` on live receipt, the stored receipt time when
   * re-reading history. Compared with `created_ts + max_age + 1 h`.
   */
  readonly receivedTs: number
}

/**
 * The receiving half of one sender's group session (E2E.md section 2.4). Keeps the chain key at the
 * furthest index reached, the message keys of skipped indexes (so shuffled delivery works), and the set
 * of indexes already accepted (so replays are flagged). It also keeps the chain key at the first index
 * it received, so the session can be backed up or forwarded to own devices (section 2.5).
 */
export class InboundGroupSession {
  readonly roomId: string
  readonly sessionId: string
  readonly senderUser: string
  readonly senderDev: string
  readonly createdTs: number
  readonly maxMsgs: number
  readonly maxAge: number
  /** The lowest index this session can decrypt (E2E.md section 3 row 9). */
  readonly firstKnownIndex: number
  readonly #sessionKey: Uint8Array
  readonly #membershipEpoch: Uint8Array
  readonly #initialChainKey: Uint8Array
  #chainIndex: number
  #chainKey: Uint8Array
  readonly #skipped = new Map<number, Uint8Array>()
  readonly #seen = new Set<number>()
  #kdfSteps = 0

  private constructor(parsed: ParsedRoomKey) {
    const p = parsed.payload
    this.roomId = p.room_id
    this.sessionId = p.session_id
    this.senderUser = p.sender_user
    this.senderDev = p.sender_dev
    this.createdTs = p.created_ts
    this.maxMsgs = p.max_msgs
    this.maxAge = p.max_age
    this.firstKnownIndex = p.index
    this.#sessionKey = parsed.sessionKey
    this.#membershipEpoch = parsed.membershipEpoch
    this.#initialChainKey = parsed.chainKey
    this.#chainIndex = p.index
    this.#chainKey = parsed.chainKey.slice()
  }

  /**
   * Imports a room-key payload (E2E.md section 2.4). `origin` is the envelope's authenticated sender:
   * a key for someone else's session is refused with `wrong_sender` (section 3 row 15). Sessions
   * created more than `2 × max_age` before `now` are refused with `expired`, and ones created more than
   * 1 h in the future with `not_yet_valid`.
   */
  static fromRoomKey(payload: unknown, origin: RoomKeyOrigin, now: number = Date.now()): InboundGroupSession {
    const parsed = parseRoomKey(payload)
    const p = parsed.payload
    if (p.sender_user !== origin.userId || p.sender_dev !== origin.deviceId) {
      memzero(parsed.chainKey)
      throw new E2eError('wrong_sender', 'room key not sent by its session creator')
    }
    if (now > p.created_ts + 2 * p.max_age) {
      memzero(parsed.chainKey)
      throw new E2eError('expired', 'session older than 2 × max_age')
    }
    if (p.created_ts > now + MAX_AGE_GRACE_MS) {
      memzero(parsed.chainKey)
      throw new E2eError('not_yet_valid', 'session created in the future')
    }
    return new InboundGroupSession(parsed)
  }

  /**
   * Imports a room key restored from the user's own verified backup or secret storage (E2E.md section
   * 2.5). The backup's AEAD under `BK` already authenticates it, and old sessions are exactly what
   * history needs, so the `2 × max_age` import cut-off does not apply; messages are still checked
   * against their stored receipt time.
   */
  static fromTrustedBackup(payload: unknown): InboundGroupSession {
    return new InboundGroupSession(parseRoomKey(payload))
  }

  /** The whole state, secrets included, for the device's sealed key store (E2E.md section 2.4). */
  toState(): InboundGroupSessionState {
    return {
      room_key: this.exportRoomKey(),
      chain_index: this.#chainIndex,
      chain_key: toBase64Url(this.#chainKey),
      skipped: [...this.#skipped].map(([index, key]) => [index, toBase64Url(key)] as const),
      seen: [...this.#seen],
    }
  }

  /** Restores {@link toState} output (E2E.md section 2.4); `bad_input` for anything inconsistent. */
  static fromState(state: unknown): InboundGroupSession {
    if (!isRecord(state)) throw new E2eError('bad_input', 'state must be an object')
    const session = new InboundGroupSession(parseRoomKey(state.room_key))
    const chainIndex = intField(state, 'chain_index')
    if (chainIndex < session.firstKnownIndex || chainIndex > session.maxMsgs)
      throw new E2eError('bad_input', 'chain_index out of range')
    const inRange = (i: unknown): i is number =>
      typeof i === 'number' && Number.isSafeInteger(i) && i >= session.firstKnownIndex && i < chainIndex
    const { skipped, seen } = state
    if (!Array.isArray(skipped) || !Array.isArray(seen) || skipped.length + seen.length > session.maxMsgs)
      throw new E2eError('bad_input', 'skipped and seen must be bounded lists')
    for (const index of seen as unknown[]) {
      if (!inRange(index)) throw new E2eError('bad_input', 'seen index out of range')
      session.#seen.add(index)
    }
    for (const entry of skipped as unknown[]) {
      if (!Array.isArray(entry) || !inRange(entry[0]) || session.#seen.has(entry[0]))
        throw new E2eError('bad_input', 'skipped entry out of range')
      session.#skipped.set(entry[0], bytesField({ key: entry[1] }, 'key', CHAIN_KEY_BYTES))
    }
    memzero(session.#chainKey)
    session.#chainKey = bytesField(state, 'chain_key', CHAIN_KEY_BYTES)
    session.#chainIndex = chainIndex
    return session
  }

  /** Number of KDF chain steps taken so far: skip-ahead work is bounded by `max_msgs` (E2E.md section 3 row 7). */
  get kdfSteps(): number {
    return this.#kdfSteps
  }

  /** A copy of the session's `membership_epoch` (E2E.md section 2.3). */
  get membershipEpoch(): Uint8Array {
    return this.#membershipEpoch.slice()
  }

  /** True if index `i` was already accepted once (E2E.md section 2.4). */
  hasSeen(index: number): boolean {
    return this.#seen.has(index)
  }

  /**
   * The room-key payload at {@link firstKnownIndex}, for key backup and forwarding between own verified
   * devices (E2E.md section 2.5). Contains a secret chain key.
   */
  exportRoomKey(): RoomKeyPayload {
    return {
      suite: E2E_SUITE,
      room_id: this.roomId,
      session_id: this.sessionId,
      sender_user: this.senderUser,
      sender_dev: this.senderDev,
      index: this.firstKnownIndex,
      chain_key: toBase64Url(this.#initialChainKey),
      created_ts: this.createdTs,
      max_msgs: this.maxMsgs,
      max_age: this.maxAge,
      membership_epoch: toBase64Url(this.#membershipEpoch),
    }
  }

  /**
   * Decrypts a group message with the checks of E2E.md section 2.4 in order: session matches → `room_id`
   * matches → header sender = session creator → `i < max_msgs` and `(session, i)` unseen → received
   * within `created_ts + max_age + 1 h` → signature → AEAD. State (chain position, skipped keys, seen
   * set) changes only after every check passed. Throws an {@link E2eError}; never returns plaintext of
   * a message that failed any check.
   */
  decrypt(message: unknown, context: GroupDecryptContext): DecryptedGroupMessage {
    const parsed = parseMessage(message)
    const m = parsed.message
    if (!constantTimeEqual(parsed.sessionKey, this.#sessionKey))
      throw new E2eError('unknown_session', 'message belongs to another session')
    if (context.roomId !== this.roomId) throw new E2eError('wrong_room', 'session belongs to another room')
    if (m.sender_user !== this.senderUser || m.sender_dev !== this.senderDev)
      throw new E2eError('wrong_sender', 'header sender is not the session creator')
    const i = m.index
    if (i >= this.maxMsgs) throw new E2eError('too_far_ahead', 'index at or beyond max_msgs')
    if (this.#seen.has(i)) throw new E2eError('replay', 'index already decrypted')
    if (i < this.firstKnownIndex) throw new E2eError('unknown_index', 'index before the key we were given')
    if (!Number.isSafeInteger(context.receivedTs))
      throw new E2eError('bad_input', 'receivedTs must be an integer')
    if (context.receivedTs > this.createdTs + this.maxAge + MAX_AGE_GRACE_MS)
      throw new E2eError('expired', 'message received after created_ts + max_age + 1 h')
    const ad = groupAd(
      this.roomId,
      this.#sessionKey,
      this.senderUser,
      this.senderDev,
      i,
      this.#membershipEpoch,
    )
    if (!verify(this.#sessionKey, signedBytes(ad, parsed.nonce, parsed.ciphertext), parsed.signature))
      throw new E2eError('bad_signature', 'message not signed by the session key')
    if (parsed.ciphertext.length < AEAD_TAG_BYTES + PAD_BLOCK_BYTES)
      throw new E2eError('decrypt_failed', 'ciphertext too short')
    return this.#open(i, ad, parsed, m)
  }

  #open(i: number, ad: Uint8Array, parsed: ParsedMessage, m: GroupMessage): DecryptedGroupMessage {
    // Derive tentatively; commit only after the AEAD opened.
    const cached = this.#skipped.get(i)
    const derived: Uint8Array[] = []
    let chainKey = this.#chainKey
    let messageKey: Uint8Array
    if (cached !== undefined) {
      messageKey = cached
    } else {
      if (i < this.#chainIndex) throw new E2eError('replay', 'index already consumed')
      for (let k = this.#chainIndex; k < i; k++) {
        derived.push(deriveMessageKey(chainKey))
        const next = nextChainKey(chainKey)
        if (chainKey !== this.#chainKey) memzero(chainKey)
        chainKey = next
      }
      messageKey = deriveMessageKey(chainKey)
    }
    let padded: Uint8Array
    try {
      padded = aeadDecrypt(messageKey, parsed.nonce, parsed.ciphertext, ad)
    } catch (error) {
      if (cached === undefined) memzero(messageKey, ...derived, chainKey === this.#chainKey ? null : chainKey)
      throw error
    }
    let plaintext: GroupPlaintext
    try {
      const body = unpad(padded)
      plaintext = parsePlaintext(body)
      if (plaintext.room_id !== this.roomId) throw new E2eError('wrong_room', 'plaintext names another room')
    } catch (error) {
      memzero(padded)
      if (cached === undefined) memzero(messageKey, ...derived, chainKey === this.#chainKey ? null : chainKey)
      throw error
    }
    memzero(padded)
    // Commit.
    if (cached !== undefined) {
      this.#skipped.delete(i)
    } else {
      derived.forEach((key, offset) => this.#skipped.set(this.#chainIndex + offset, key))
      this.#kdfSteps += i - this.#chainIndex
      const next = nextChainKey(chainKey)
      if (chainKey !== this.#chainKey) memzero(chainKey)
      memzero(this.#chainKey)
      this.#chainKey = next
      this.#chainIndex = i + 1
    }
    memzero(messageKey)
    this.#seen.add(i)
    return {
      plaintext,
      sessionId: m.session_id,
      senderUser: m.sender_user,
      senderDev: m.sender_dev,
      index: i,
      membershipEpoch: this.#membershipEpoch.slice(),
    }
  }
}

/**
 * The inbound group sessions of one device, by `session_id` (E2E.md section 2.4): the "session known"
 * check, then {@link InboundGroupSession.decrypt}.
 */
export class InboundGroupSessionStore {
  readonly #sessions = new Map<string, InboundGroupSession>()

  /**
   * Adds a session. A second key for a known `session_id` is ignored (returns `false`): the first
   * authenticated key wins, so nobody can later replace a session's chain.
   */
  add(session: InboundGroupSession): boolean {
    if (this.#sessions.has(session.sessionId)) return false
    this.#sessions.set(session.sessionId, session)
    return true
  }

  /** The session with this id, if known. */
  get(sessionId: string): InboundGroupSession | undefined {
    return this.#sessions.get(sessionId)
  }

  /** Number of sessions held. */
  get size(): number {
    return this.#sessions.size
  }

  /** Decrypts with the session named in the message; `unknown_session` if there is none (E2E.md section 2.4). */
  decrypt(message: unknown, context: GroupDecryptContext): DecryptedGroupMessage {
    const parsed = parseMessage(message)
    const session = this.#sessions.get(parsed.message.session_id)
    if (session === undefined) throw new E2eError('unknown_session', 'no key for this session')
    return session.decrypt(parsed.message, context)
  }
}

/** Canonical JSON of a room-key payload, the bytes to put inside an envelope (E2E.md sections 2.2 and 2.4). */
export function encodeRoomKeyPayload(payload: RoomKeyPayload): Uint8Array {
  return utf8(canonicalJson(payload))
}
