/**
 * Signed membership (E2E.md section 2.3): every membership change of an encrypted room carries a
 * statement signed by the acting device's DSK, so a server cannot add a member (or remove one)
 * without the members' clients seeing it.
 *
 * - A statement `{room, target, membership, actor, actor_device, prev}` says "`actor` (on
 *   `actor_device`) sets `target`'s membership in `room` to `membership`". `membership` is the state
 *   the `m.member` event sets: `invite`, `join`, `leave` (a kick when the target is someone else; also
 *   an unban), `ban`.
 * - `prev` is the hash of the latest statement (or snapshot) the actor knew in that room, or the
 *   room's fixed root ({@link membershipRoot}) for the first one: statements form a hash-linked log.
 * - A snapshot `{room, members, actor, actor_device, prev}` is signed by the device that turns
 *   encryption on in an existing room: the members at that moment are the roots of the log.
 * - `membership_epoch = H(latest statement)` ({@link membershipHash}, {@link membershipSnapshotHash}).
 *
 * Signatures cover domain-separated canonical JSON. Who may sign what (entitlement) is the caller's
 * rule: this module checks shape, signature, and the signer's key against the devices given.
 */
import { canonicalJson } from '../../canonical-json.ts'
import { fromBase64Url, toBase64Url } from '../../encoding.ts'
import { E2eError } from './errors.ts'
import { type VerifiedDevice } from './identity.ts'
import {
  assertBytes,
  constantTimeEqual,
  encodeFields,
  generichash,
  sign,
  SIGNATURE_BYTES,
  SIGN_PUBLIC_KEY_BYTES,
  verify,
  type SigningKeyPair,
} from './primitives.ts'
import { E2E_SUITE } from './ratchet.ts'

const STATEMENT_SIG_LABEL = 'e2e/v1/membership'
const STATEMENT_HASH_LABEL = 'e2e/v1/membershiphash'
const SNAPSHOT_SIG_LABEL = 'e2e/v1/membershipsnapshot'
const SNAPSHOT_HASH_LABEL = 'e2e/v1/membershipsnapshothash'
const ROOT_LABEL = 'e2e/v1/membershiproot'
const MAX_ID_LENGTH = 255
/** Most members one snapshot may name (E2E.md section 2.3). */
export const MAX_SNAPSHOT_MEMBERS = 1000

/** The membership a statement sets (the `m.member` states; a kick is `leave` of someone else). */
export type MembershipState = 'invite' | 'join' | 'leave' | 'ban'
const STATES: ReadonlySet<string> = new Set(['invite', 'join', 'leave', 'ban'])

/** The signed part of a membership statement (E2E.md section 2.3). Keys and hashes are base64url. */
export interface MembershipStatementBody {
  readonly suite: typeof E2E_SUITE
  readonly room: string
  readonly target: string
  readonly membership: MembershipState
  readonly actor: string
  readonly actor_device: string
  /** Hash of the latest statement the actor knew in the room, or {@link membershipRoot}. */
  readonly prev: string
}

/** A membership statement with the actor device's signature (E2E.md section 2.3), as carried in `m.member`. */
export interface SignedMembershipStatement extends MembershipStatementBody {
  readonly signature: string
}

/** A member named by a snapshot: joined or invited when encryption was turned on. */
export interface SnapshotMember {
  readonly user_id: string
  readonly membership: 'join' | 'invite'
}

/** The signed part of a membership snapshot (E2E.md section 2.3): the members when encryption was turned on. */
export interface MembershipSnapshotBody {
  readonly suite: typeof E2E_SUITE
  readonly room: string
  /** Sorted by `user_id`, each user once. */
  readonly members: readonly SnapshotMember[]
  readonly actor: string
  readonly actor_device: string
  readonly prev: string
}

/** A membership snapshot with the enabling device's signature (E2E.md section 2.3), as carried in `m.room.encryption`. */
export interface SignedMembershipSnapshot extends MembershipSnapshotBody {
  readonly signature: string
}

/** What the actor signs: the fields of a statement, keys as bytes where they are keys. */
export interface MembershipChange {
  readonly room: string
  readonly target: string
  readonly membership: MembershipState
  readonly actor: string
  readonly actorDevice: string
  /** {@link membershipHash} of the latest statement the actor knows, or {@link membershipRoot}. */
  readonly prev: string
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function assertId(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH)
    throw new E2eError('bad_input', `${name} must be a non-empty string`)
}

function assertHash(name: string, value: unknown): asserts value is string {
  const bytes = typeof value === 'string' ? fromBase64Url(value) : null
  if (bytes === null || bytes.length !== 32) throw new E2eError('bad_input', `${name} must be a 32-byte hash`)
}

function signatureOf(value: unknown): Uint8Array {
  const bytes = typeof value === 'string' ? fromBase64Url(value) : null
  if (bytes === null || bytes.length !== SIGNATURE_BYTES)
    throw new E2eError('bad_signature', 'membership signature missing')
  return bytes
}

/**
 * The fixed `prev` of a room's first statement (E2E.md section 2.3): BLAKE2b-256 of a label and the
 * room id, base64url. Bound to the room, so a first statement cannot move to another room's log.
 */
export function membershipRoot(room: string): string {
  assertId('room', room)
  return toBase64Url(generichash(32, encodeFields(ROOT_LABEL, room)))
}

function statementBody(s: MembershipStatementBody): MembershipStatementBody {
  return {
    suite: s.suite,
    room: s.room,
    target: s.target,
    membership: s.membership,
    actor: s.actor,
    actor_device: s.actor_device,
    prev: s.prev,
  }
}

/** The bytes a DSK signs for a statement: a label framed with the body's canonical JSON (E2E.md section 2.3). */
export function membershipSigningBytes(body: MembershipStatementBody): Uint8Array {
  return encodeFields(STATEMENT_SIG_LABEL, canonicalJson({ ...statementBody(body) }))
}

/**
 * Signs a membership statement with the acting device's DSK (E2E.md section 2.3). Caller bugs
 * (malformed ids, a `prev` that is not a hash) throw `bad_input`.
 */
export function signMembership(dsk: SigningKeyPair, change: MembershipChange): SignedMembershipStatement {
  const body: MembershipStatementBody = {
    suite: E2E_SUITE,
    room: change.room,
    target: change.target,
    membership: change.membership,
    actor: change.actor,
    actor_device: change.actorDevice,
    prev: change.prev,
  }
  parseStatementBody(body)
  return { ...body, signature: toBase64Url(sign(dsk.secretKey, membershipSigningBytes(body))) }
}

function parseStatementBody(value: unknown): MembershipStatementBody {
  if (!isRecord(value) || value.suite !== E2E_SUITE)
    throw new E2eError('bad_input', 'not a v1 membership statement')
  assertId('room', value.room)
  assertId('target', value.target)
  assertId('actor', value.actor)
  assertId('actor_device', value.actor_device)
  if (typeof value.membership !== 'string' || !STATES.has(value.membership))
    throw new E2eError('bad_input', 'membership must be invite, join, leave or ban')
  assertHash('prev', value.prev)
  return statementBody(value as unknown as MembershipStatementBody)
}

/** A statement whose shape, room and signature were checked (E2E.md section 2.3), and the device that signed it. */
export interface VerifiedMembership {
  readonly statement: SignedMembershipStatement
  readonly signer: VerifiedDevice
  /** {@link membershipHash} of the statement. */
  readonly hash: string
}

/**
 * Verifies a membership statement (E2E.md section 2.3): its shape, that it is about `room`
 * (`wrong_room`), that `actor_device` is one of `actorDevices` (the actor's devices from a verified
 * device list; else `unknown_device`) and that its DSK signed it (`bad_signature`). Full keys are
 * compared, never ids alone. Whether the actor was entitled is the caller's rule.
 */
export function verifyMembership(
  statement: unknown,
  room: string,
  actorDevices: readonly VerifiedDevice[],
): VerifiedMembership {
  const body = parseStatementBody(statement)
  const signature = signatureOf((statement as Record<string, unknown>).signature)
  if (body.room !== room) throw new E2eError('wrong_room', 'membership statement of another room')
  const signer = actorDevices.find((d) => d.deviceId === body.actor_device)
  if (signer === undefined) throw new E2eError('unknown_device', 'actor device not in the device list')
  assertBytes('DSK', signer.dsk, SIGN_PUBLIC_KEY_BYTES)
  if (!verify(signer.dsk, membershipSigningBytes(body), signature))
    throw new E2eError('bad_signature', 'membership statement not signed by the actor device')
  const signed: SignedMembershipStatement = { ...body, signature: toBase64Url(signature) }
  return { statement: signed, signer, hash: membershipHash(signed) }
}

/**
 * `H(statement)`: BLAKE2b-256 over a label and the canonical JSON of the whole signed statement
 * (E2E.md section 2.3), base64url. The membership epoch once this is the room's latest statement, and
 * the `prev` of the next one.
 */
export function membershipHash(statement: SignedMembershipStatement): string {
  const whole = { ...statementBody(statement), signature: statement.signature }
  return toBase64Url(generichash(32, encodeFields(STATEMENT_HASH_LABEL, canonicalJson(whole))))
}

function snapshotBody(s: MembershipSnapshotBody): MembershipSnapshotBody {
  return {
    suite: s.suite,
    room: s.room,
    members: s.members.map((m) => ({ user_id: m.user_id, membership: m.membership })),
    actor: s.actor,
    actor_device: s.actor_device,
    prev: s.prev,
  }
}

function snapshotJson(s: MembershipSnapshotBody) {
  const body = snapshotBody(s)
  return { ...body, members: body.members.map((m) => ({ ...m })) }
}

/** The bytes a DSK signs for a snapshot (E2E.md section 2.3). */
export function membershipSnapshotSigningBytes(body: MembershipSnapshotBody): Uint8Array {
  return encodeFields(SNAPSHOT_SIG_LABEL, canonicalJson(snapshotJson(body)))
}

function parseSnapshotBody(value: unknown): MembershipSnapshotBody {
  if (!isRecord(value) || value.suite !== E2E_SUITE)
    throw new E2eError('bad_input', 'not a v1 membership snapshot')
  assertId('room', value.room)
  assertId('actor', value.actor)
  assertId('actor_device', value.actor_device)
  assertHash('prev', value.prev)
  const members = value.members
  if (!Array.isArray(members) || members.length === 0 || members.length > MAX_SNAPSHOT_MEMBERS)
    throw new E2eError('bad_input', 'members must be a non-empty list')
  let last = ''
  for (const m of members as unknown[]) {
    if (!isRecord(m)) throw new E2eError('bad_input', 'snapshot member must be an object')
    assertId('user_id', m.user_id)
    if (m.membership !== 'join' && m.membership !== 'invite')
      throw new E2eError('bad_input', 'snapshot members are joined or invited')
    // Sorted and unique: one canonical list per set of members.
    if (m.user_id <= last) throw new E2eError('bad_input', 'snapshot members must be sorted and unique')
    last = m.user_id
  }
  return snapshotBody(value as unknown as MembershipSnapshotBody)
}

/**
 * Signs the members of a room at the moment encryption is turned on (E2E.md section 2.3) with the
 * enabling device's DSK. `members` are sorted here; `prev` is usually {@link membershipRoot}.
 */
export function signMembershipSnapshot(
  dsk: SigningKeyPair,
  snapshot: {
    readonly room: string
    readonly members: readonly SnapshotMember[]
    readonly actor: string
    readonly actorDevice: string
    readonly prev: string
  },
): SignedMembershipSnapshot {
  const body: MembershipSnapshotBody = {
    suite: E2E_SUITE,
    room: snapshot.room,
    members: [...snapshot.members]
      .map((m) => ({ user_id: m.user_id, membership: m.membership }))
      .sort((a, b) => (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0)),
    actor: snapshot.actor,
    actor_device: snapshot.actorDevice,
    prev: snapshot.prev,
  }
  parseSnapshotBody(body)
  return { ...body, signature: toBase64Url(sign(dsk.secretKey, membershipSnapshotSigningBytes(body))) }
}

/** A snapshot whose shape, room and signature were checked (E2E.md section 2.3). */
export interface VerifiedMembershipSnapshot {
  readonly snapshot: SignedMembershipSnapshot
  readonly signer: VerifiedDevice
  readonly hash: string
}

/**
 * Verifies a membership snapshot (E2E.md section 2.3) as {@link verifyMembership} does a statement:
 * shape (sorted, unique, joined or invited members), room (`wrong_room`), signer among the actor's
 * verified devices (`unknown_device`), signature (`bad_signature`). The actor must be a joined member
 * of the snapshot (`bad_input`): only a member turns encryption on.
 */
export function verifyMembershipSnapshot(
  snapshot: unknown,
  room: string,
  actorDevices: readonly VerifiedDevice[],
): VerifiedMembershipSnapshot {
  const body = parseSnapshotBody(snapshot)
  const signature = signatureOf((snapshot as Record<string, unknown>).signature)
  if (body.room !== room) throw new E2eError('wrong_room', 'membership snapshot of another room')
  if (!body.members.some((m) => m.user_id === body.actor && m.membership === 'join'))
    throw new E2eError('bad_input', 'the snapshot actor must be a joined member')
  const signer = actorDevices.find((d) => d.deviceId === body.actor_device)
  if (signer === undefined) throw new E2eError('unknown_device', 'actor device not in the device list')
  if (!verify(signer.dsk, membershipSnapshotSigningBytes(body), signature))
    throw new E2eError('bad_signature', 'membership snapshot not signed by the actor device')
  const signed: SignedMembershipSnapshot = { ...body, signature: toBase64Url(signature) }
  return { snapshot: signed, signer, hash: membershipSnapshotHash(signed) }
}

/** `H(snapshot)` (E2E.md section 2.3), base64url: the `prev` of the first statement after it. */
export function membershipSnapshotHash(snapshot: SignedMembershipSnapshot): string {
  const whole = { ...snapshotJson(snapshot), signature: snapshot.signature }
  return toBase64Url(generichash(32, encodeFields(SNAPSHOT_HASH_LABEL, canonicalJson(whole))))
}

/** True if two base64url hashes are equal, compared in constant time (E2E.md section 2.3). */
export function membershipHashEquals(a: string, b: string): boolean {
  const x = fromBase64Url(a)
  const y = fromBase64Url(b)
  return x !== null && y !== null && x.length === y.length && constantTimeEqual(x, y)
}
