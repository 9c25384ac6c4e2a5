/**
 * Identity keys, device certificates, signed device lists and safety numbers (E2E.md section 2.1).
 *
 * - UIK (user identity, Ed25519) signs device certificates and device-list documents.
 * - DSK (device signing, Ed25519) and DXK (device DH, a *separate* X25519 key, never converted from
 *   Ed25519) belong to one device.
 * - A device list (DL) `{user_id, uik, version, prev_hash, devices}` is signed by the UIK over its
 *   canonical JSON with a domain label; versions only grow and each links to the previous by hash.
 * - Verification compares full public keys, never ids (section 3 row 14).
 */
import { canonicalJson } from '../../canonical-json.ts'
import { concatBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from '../../encoding.ts'
import { E2eError } from './errors.ts'
import {
  assertBytes,
  constantTimeEqual,
  DH_KEY_BYTES,
  dhKeyPair,
  encodeFields,
  generichash,
  sign,
  SIGNATURE_BYTES,
  signingKeyPair,
  SIGN_PUBLIC_KEY_BYTES,
  verify,
  type DhKeyPair,
  type SigningKeyPair,
} from './primitives.ts'
import { E2E_SUITE } from './ratchet.ts'

const DL_SIG_LABEL = 'e2e/v1/devicelist'
const DL_HASH_LABEL = 'e2e/v1/devicelisthash'
const CERT_SIG_LABEL = 'e2e/v1/devicecert'
const QR_LABEL = 'e2e/v1/qr'
const MAX_ID_LENGTH = 255
/** Most devices one device list may carry (E2E.md section 2.1); more is hostile. */
export const MAX_DEVICES = 256
/** Hash iterations of a safety number, as Signal (E2E.md section 2.1). */
export const SAFETY_NUMBER_ITERATIONS = 5200

/** A device's own key pairs (E2E.md section 2.1): DSK (Ed25519) and a separate DXK (X25519). */
export interface DeviceKeyPairs {
  readonly dsk: SigningKeyPair
  readonly dxk: DhKeyPair
}

/** A fresh user identity key, the UIK (Ed25519; E2E.md section 2.1). */
export function generateIdentityKey(): SigningKeyPair {
  return signingKeyPair()
}

/** Fresh DSK and DXK for a new device (E2E.md section 2.1). The DXK is generated on its own, not derived from the DSK. */
export function generateDeviceKeys(): DeviceKeyPairs {
  return { dsk: signingKeyPair(), dxk: dhKeyPair() }
}

/** One device entry of a device list (E2E.md section 2.1). Keys are base64url. */
export interface DeviceListEntry {
  readonly device_id: string
  readonly dsk: string
  readonly dxk: string
  readonly added_ts: number
}

/** The signed part of a device list (E2E.md section 2.1). `prev_hash` is `null` only at version 1. */
export interface DeviceListBody {
  readonly suite: typeof E2E_SUITE
  readonly user_id: string
  /** base64url of the UIK that signs this list. */
  readonly uik: string
  readonly version: number
  readonly prev_hash: string | null
  readonly devices: readonly DeviceListEntry[]
}

/** A device list with the UIK's signature (E2E.md section 2.1), as published and relayed. */
export interface SignedDeviceList extends DeviceListBody {
  readonly signature: string
}

/** A device whose keys come from a verified device list or certificate (E2E.md section 2.1). */
export interface VerifiedDevice {
  readonly deviceId: string
  readonly dsk: Uint8Array
  readonly dxk: Uint8Array
  readonly addedTs: number
}

/** A device list whose signature, user and UIK were checked (E2E.md section 2.1). */
export interface VerifiedDeviceList {
  readonly userId: string
  readonly uik: Uint8Array
  readonly version: number
  /** `H(DL)`, base64url: gossip it to catch servers showing different lists to different people. */
  readonly hash: string
  readonly devices: readonly VerifiedDevice[]
  readonly document: SignedDeviceList
}

/** Whose device list or certificate the caller expects (E2E.md section 2.1): the user and the pinned UIK. */
export interface ExpectedIdentity {
  readonly userId: string
  readonly uik: Uint8Array
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function assertId(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH)
    throw new E2eError('bad_input', `${name} must be a non-empty string`)
}

function decodeKey(name: string, value: unknown, length: number): Uint8Array {
  const bytes = typeof value === 'string' ? fromBase64Url(value) : null
  if (bytes === null || bytes.length !== length)
    throw new E2eError('bad_input', `${name} must be ${length} bytes`)
  return bytes
}

function assertTimestamp(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new E2eError('bad_input', `${name} must be a non-negative integer`)
}

/** The bytes a UIK signs for a device list: label framed with the body's canonical JSON (E2E.md section 2.1). */
export function deviceListSigningBytes(body: DeviceListBody): Uint8Array {
  const canonical = {
    suite: body.suite,
    user_id: body.user_id,
    uik: body.uik,
    version: body.version,
    prev_hash: body.prev_hash,
    devices: body.devices.map((d) => ({
      device_id: d.device_id,
      dsk: d.dsk,
      dxk: d.dxk,
      added_ts: d.added_ts,
    })),
  }
  return encodeFields(DL_SIG_LABEL, canonicalJson(canonical))
}

/**
 * `H(DL)`: BLAKE2b-256 over a domain label and the canonical JSON of the whole signed list, signature
 * included (E2E.md section 2.1), base64url.
 */
export function deviceListHash(list: SignedDeviceList): string {
  const whole = {
    suite: list.suite,
    user_id: list.user_id,
    uik: list.uik,
    version: list.version,
    prev_hash: list.prev_hash,
    devices: list.devices.map((d) => ({
      device_id: d.device_id,
      dsk: d.dsk,
      dxk: d.dxk,
      added_ts: d.added_ts,
    })),
    signature: list.signature,
  }
  return toBase64Url(generichash(32, encodeFields(DL_HASH_LABEL, canonicalJson(whole))))
}

/** A device to put in a device list (E2E.md section 2.1). */
export interface DeviceListDevice {
  readonly deviceId: string
  readonly dsk: Uint8Array
  readonly dxk: Uint8Array
  readonly addedTs: number
}

/**
 * Signs the next device list with the UIK (E2E.md section 2.1): version 1 with `prev_hash: null`, or
 * `previous.version + 1` linking to `H(previous)`. Adding or removing a device is a new list.
 */
export function signDeviceList(
  uik: SigningKeyPair,
  userId: string,
  devices: readonly DeviceListDevice[],
  previous?: SignedDeviceList,
): SignedDeviceList {
  assertId('user id', userId)
  const body: DeviceListBody = {
    suite: E2E_SUITE,
    user_id: userId,
    uik: toBase64Url(uik.publicKey),
    version: previous === undefined ? 1 : previous.version + 1,
    prev_hash: previous === undefined ? null : deviceListHash(previous),
    devices: devices.map((d) => {
      assertId('device id', d.deviceId)
      assertBytes('DSK', d.dsk, SIGN_PUBLIC_KEY_BYTES)
      assertBytes('DXK', d.dxk, DH_KEY_BYTES)
      assertTimestamp('added_ts', d.addedTs)
      return { device_id: d.deviceId, dsk: toBase64Url(d.dsk), dxk: toBase64Url(d.dxk), added_ts: d.addedTs }
    }),
  }
  parseDevices(body.devices) // refuse duplicates here too: a caller bug, but one that would fail verification
  return { ...body, signature: toBase64Url(sign(uik.secretKey, deviceListSigningBytes(body))) }
}

function parseDevices(value: unknown): { entries: DeviceListEntry[]; devices: VerifiedDevice[] } {
  if (!Array.isArray(value) || value.length > MAX_DEVICES)
    throw new E2eError('bad_input', 'devices must be a list')
  const entries: DeviceListEntry[] = []
  const devices: VerifiedDevice[] = []
  const ids = new Set<string>()
  const keys = new Set<string>()
  for (const item of value as unknown[]) {
    if (!isRecord(item)) throw new E2eError('bad_input', 'device entry must be an object')
    assertId('device_id', item.device_id)
    assertTimestamp('added_ts', item.added_ts)
    const dsk = decodeKey('dsk', item.dsk, SIGN_PUBLIC_KEY_BYTES)
    const dxk = decodeKey('dxk', item.dxk, DH_KEY_BYTES)
    const dskText = toBase64Url(dsk)
    const dxkText = toBase64Url(dxk)
    if (ids.has(item.device_id)) throw new E2eError('bad_input', 'duplicate device id')
    if (keys.has(`s${dskText}`) || keys.has(`x${dxkText}`))
      throw new E2eError('bad_input', 'duplicate device key')
    ids.add(item.device_id)
    keys.add(`s${dskText}`).add(`x${dxkText}`)
    entries.push({ device_id: item.device_id, dsk: dskText, dxk: dxkText, added_ts: item.added_ts })
    devices.push({ deviceId: item.device_id, dsk, dxk, addedTs: item.added_ts })
  }
  return { entries, devices }
}

/**
 * Verifies one device list (E2E.md section 2.1): shape, `user_id` (`wrong_user`), the UIK equals the
 * pinned one byte for byte (`wrong_identity`), `prev_hash` null exactly at version 1, and the UIK's
 * signature (`bad_signature`). A server that adds, drops or changes any device breaks the signature.
 */
export function verifyDeviceList(document: unknown, expected: ExpectedIdentity): VerifiedDeviceList {
  assertBytes('expected UIK', expected.uik, SIGN_PUBLIC_KEY_BYTES)
  if (!isRecord(document) || document.suite !== E2E_SUITE)
    throw new E2eError('bad_input', 'not a v1 device list')
  assertId('user_id', document.user_id)
  const uik = decodeKey('uik', document.uik, SIGN_PUBLIC_KEY_BYTES)
  const version = document.version
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1)
    throw new E2eError('bad_input', 'version must be a positive integer')
  const prevHash = document.prev_hash
  if (version === 1 ? prevHash !== null : decodeKeyOrNull(prevHash) === null)
    throw new E2eError('bad_chain', 'prev_hash must be null at version 1 and a 32-byte hash after')
  const signature = typeof document.signature === 'string' ? fromBase64Url(document.signature) : null
  if (signature === null || signature.length !== SIGNATURE_BYTES)
    throw new E2eError('bad_signature', 'device list signature missing')
  const { entries, devices } = parseDevices(document.devices)
  if (document.user_id !== expected.userId) throw new E2eError('wrong_user', 'device list of another user')
  if (!constantTimeEqual(uik, expected.uik))
    throw new E2eError('wrong_identity', 'device list signed by another UIK')
  const body: DeviceListBody = {
    suite: E2E_SUITE,
    user_id: document.user_id,
    uik: toBase64Url(uik),
    version,
    prev_hash: prevHash as string | null,
    devices: entries,
  }
  if (!verify(uik, deviceListSigningBytes(body), signature))
    throw new E2eError('bad_signature', 'device list not signed by the UIK')
  const signed: SignedDeviceList = { ...body, signature: toBase64Url(signature) }
  return { userId: body.user_id, uik, version, hash: deviceListHash(signed), devices, document: signed }
}

function decodeKeyOrNull(value: unknown): Uint8Array | null {
  const bytes = typeof value === 'string' ? fromBase64Url(value) : null
  return bytes !== null && bytes.length === 32 ? bytes : null
}

/**
 * Moves from a trusted device list to a newer one (E2E.md section 2.1). `documents` are every list
 * after `trusted`, oldest first; each must verify under the same user and UIK, have a version exactly
 * one greater and `prev_hash = H(previous)`. A version not greater than the trusted one is `rollback`;
 * a gap, fork or wrong link is `bad_chain`. Returns the newest verified list.
 */
export function verifyDeviceListUpdate(
  trusted: VerifiedDeviceList,
  documents: readonly unknown[],
): VerifiedDeviceList {
  if (!Array.isArray(documents) || documents.length === 0)
    throw new E2eError('bad_input', 'no device list to apply')
  let current = trusted
  for (const document of documents) {
    const next = verifyDeviceList(document, { userId: trusted.userId, uik: trusted.uik })
    if (next.version <= current.version)
      throw new E2eError('rollback', 'device list version did not increase')
    if (next.version !== current.version + 1) throw new E2eError('bad_chain', 'device list versions skipped')
    if (next.document.prev_hash !== current.hash) throw new E2eError('bad_chain', 'prev_hash does not link')
    current = next
  }
  return current
}

/** True if a gossiped `H(DL)` equals ours (E2E.md section 2.1); `false` means someone sees another list: warn. */
export function deviceListHashMatches(list: VerifiedDeviceList, gossiped: string): boolean {
  const ours = fromBase64Url(list.hash)
  const theirs = typeof gossiped === 'string' ? fromBase64Url(gossiped) : null
  return ours !== null && theirs !== null && constantTimeEqual(ours, theirs)
}

/** A device as a server describes it (untrusted; E2E.md section 3 row 11). */
export interface ServedDevice {
  readonly device_id: string
  readonly dsk: string
  readonly dxk: string
}

/**
 * Splits server-described devices into those in the verified device list with identical full keys,
 * and the rest, which get no envelope and a warning ("server tried to add X"; E2E.md sections 2.1 and
 * 2.3, section 3 row 11).
 */
export function filterSignedDevices(
  served: readonly ServedDevice[],
  list: VerifiedDeviceList,
): { accepted: VerifiedDevice[]; rejected: ServedDevice[] } {
  const accepted: VerifiedDevice[] = []
  const rejected: ServedDevice[] = []
  for (const device of served) {
    const dsk = isRecord(device) && typeof device.dsk === 'string' ? fromBase64Url(device.dsk) : null
    const dxk = isRecord(device) && typeof device.dxk === 'string' ? fromBase64Url(device.dxk) : null
    const match = list.devices.find(
      (d) =>
        d.deviceId === device.device_id &&
        dsk !== null &&
        dxk !== null &&
        constantTimeEqual(d.dsk, dsk) &&
        constantTimeEqual(d.dxk, dxk),
    )
    if (match === undefined) rejected.push(device)
    else accepted.push(match)
  }
  return { accepted, rejected }
}

/** A device certificate (E2E.md section 2.1): the UIK vouching for one device's DSK and DXK. */
export interface DeviceCertificate {
  readonly suite: typeof E2E_SUITE
  readonly user_id: string
  readonly uik: string
  readonly device_id: string
  readonly dsk: string
  readonly dxk: string
  readonly issued_ts: number
  readonly signature: string
}

function certificateBytes(cert: Omit<DeviceCertificate, 'signature'>): Uint8Array {
  const body = {
    suite: cert.suite,
    user_id: cert.user_id,
    uik: cert.uik,
    device_id: cert.device_id,
    dsk: cert.dsk,
    dxk: cert.dxk,
    issued_ts: cert.issued_ts,
  }
  return encodeFields(CERT_SIG_LABEL, canonicalJson(body))
}

/** Signs a device certificate with the UIK (E2E.md section 2.1). */
export function signDeviceCertificate(
  uik: SigningKeyPair,
  userId: string,
  device: { readonly deviceId: string; readonly dsk: Uint8Array; readonly dxk: Uint8Array },
  issuedTs: number,
): DeviceCertificate {
  assertId('user id', userId)
  assertId('device id', device.deviceId)
  assertBytes('DSK', device.dsk, SIGN_PUBLIC_KEY_BYTES)
  assertBytes('DXK', device.dxk, DH_KEY_BYTES)
  assertTimestamp('issued_ts', issuedTs)
  const body = {
    suite: E2E_SUITE,
    user_id: userId,
    uik: toBase64Url(uik.publicKey),
    device_id: device.deviceId,
    dsk: toBase64Url(device.dsk),
    dxk: toBase64Url(device.dxk),
    issued_ts: issuedTs,
  } as const
  return { ...body, signature: toBase64Url(sign(uik.secretKey, certificateBytes(body))) }
}

/**
 * Verifies a device certificate against the expected user and pinned UIK (E2E.md section 2.1):
 * `wrong_user`, `wrong_identity` or `bad_signature` on mismatch. Returns the certified device keys.
 */
export function verifyDeviceCertificate(cert: unknown, expected: ExpectedIdentity): VerifiedDevice {
  assertBytes('expected UIK', expected.uik, SIGN_PUBLIC_KEY_BYTES)
  if (!isRecord(cert) || cert.suite !== E2E_SUITE)
    throw new E2eError('bad_input', 'not a v1 device certificate')
  assertId('user_id', cert.user_id)
  assertId('device_id', cert.device_id)
  assertTimestamp('issued_ts', cert.issued_ts)
  const uik = decodeKey('uik', cert.uik, SIGN_PUBLIC_KEY_BYTES)
  const dsk = decodeKey('dsk', cert.dsk, SIGN_PUBLIC_KEY_BYTES)
  const dxk = decodeKey('dxk', cert.dxk, DH_KEY_BYTES)
  const signature = typeof cert.signature === 'string' ? fromBase64Url(cert.signature) : null
  if (signature === null || signature.length !== SIGNATURE_BYTES)
    throw new E2eError('bad_signature', 'certificate signature missing')
  if (cert.user_id !== expected.userId) throw new E2eError('wrong_user', 'certificate of another user')
  if (!constantTimeEqual(uik, expected.uik))
    throw new E2eError('wrong_identity', 'certificate from another UIK')
  const body = {
    suite: E2E_SUITE,
    user_id: cert.user_id,
    uik: toBase64Url(uik),
    device_id: cert.device_id,
    dsk: toBase64Url(dsk),
    dxk: toBase64Url(dxk),
    issued_ts: cert.issued_ts,
  } as const
  if (!verify(uik, certificateBytes(body), signature))
    throw new E2eError('bad_signature', 'certificate not signed by the UIK')
  return { deviceId: cert.device_id, dsk, dxk, addedTs: cert.issued_ts }
}

/** A user and their UIK public key, as pinned or presented (E2E.md section 2.1). */
export interface UserIdentity {
  readonly userId: string
  readonly uik: Uint8Array
}

/** A TOFU pin (E2E.md section 2.1): the UIK first seen for a user, and whether it was verified. */
export interface IdentityPin extends UserIdentity {
  readonly verified: boolean
}

/**
 * The TOFU decision of E2E.md section 2.1 for a presented UIK: `new` (pin it), `match`, or `changed`
 * (a blocking warning; for a verified contact, sending is blocked until re-verified). Full keys are
 * compared.
 */
export type IdentityCheck =
  | { readonly status: 'new' }
  | { readonly status: 'match'; readonly verified: boolean }
  | { readonly status: 'changed'; readonly blockSending: boolean }

/** Checks a presented UIK against the pin for that user (E2E.md section 2.1; section 3 row 13). */
export function checkIdentity(pin: IdentityPin | undefined, presented: UserIdentity): IdentityCheck {
  assertBytes('presented UIK', presented.uik, SIGN_PUBLIC_KEY_BYTES)
  if (pin === undefined) return { status: 'new' }
  if (pin.userId !== presented.userId) throw new E2eError('wrong_user', 'pin of another user')
  if (constantTimeEqual(pin.uik, presented.uik)) return { status: 'match', verified: pin.verified }
  return { status: 'changed', blockSending: pin.verified }
}

function fiveDigits(bytes: Uint8Array, offset: number): string {
  // A 40-bit big-endian chunk, exact in a double, mod 100000 (as Signal's displayable fingerprint).
  let value = 0
  for (let i = 0; i < 5; i++) value = value * 256 + bytes[offset + i]!
  return String(value % 100000).padStart(5, '0')
}

/**
 * One user's 30-digit half of a safety number (E2E.md section 2.1): `h = "v1" ‖ len ‖ user_id ‖ UIK`,
 * then 5200 times `h = BLAKE2b-512(h ‖ UIK)` (Signal's iteration with BLAKE2b), then the first 30 bytes
 * as six 5-byte big-endian chunks, each mod 100000 as 5 digits.
 */
export function safetyNumberHalf(identity: UserIdentity): string {
  assertId('user id', identity.userId)
  assertBytes('UIK', identity.uik, SIGN_PUBLIC_KEY_BYTES)
  const userId = utf8(identity.userId)
  const length = new Uint8Array(4)
  new DataView(length.buffer).setUint32(0, userId.length)
  let h = concatBytes(utf8('v1'), length, userId, identity.uik)
  for (let i = 0; i < SAFETY_NUMBER_ITERATIONS; i++) h = generichash(64, concatBytes(h, identity.uik))
  let digits = ''
  for (let chunk = 0; chunk < 6; chunk++) digits += fiveDigits(h, chunk * 5)
  return digits
}

/**
 * The 60-digit safety number of two users (E2E.md section 2.1): both 30-digit halves, sorted and
 * concatenated, so both sides compute the same string.
 */
export function safetyNumber(a: UserIdentity, b: UserIdentity): string {
  const halves = [safetyNumberHalf(a), safetyNumberHalf(b)].sort()
  return halves.join('')
}

/** A safety number in twelve groups of five digits, for display (E2E.md section 2.1). */
export function formatSafetyNumber(digits: string): string {
  return (digits.match(/\d{1,5}/g) ?? []).join(' ')
}

/**
 * The QR payload a device shows to be scanned (E2E.md section 2.1): the shower's user id and full UIK,
 * and the user id and full UIK it has pinned for the scanner.
 */
export function safetyQrPayload(own: UserIdentity, pinnedPeer: UserIdentity): Uint8Array {
  assertId('user id', own.userId)
  assertId('peer user id', pinnedPeer.userId)
  assertBytes('own UIK', own.uik, SIGN_PUBLIC_KEY_BYTES)
  assertBytes('peer UIK', pinnedPeer.uik, SIGN_PUBLIC_KEY_BYTES)
  return encodeFields(QR_LABEL, own.userId, own.uik, pinnedPeer.userId, pinnedPeer.uik)
}

function decodeQr(payload: Uint8Array): [string, Uint8Array, string, Uint8Array] {
  const label = utf8(QR_LABEL)
  if (!(payload instanceof Uint8Array) || payload.length < label.length)
    throw new E2eError('bad_input', 'not a v1 QR payload')
  if (!constantTimeEqual(payload.subarray(0, label.length), label))
    throw new E2eError('bad_input', 'not a v1 QR payload')
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  const fields: Uint8Array[] = []
  let offset = label.length
  while (offset < payload.length) {
    if (offset + 4 > payload.length || fields.length === 4)
      throw new E2eError('bad_input', 'malformed QR payload')
    const length = view.getUint32(offset)
    offset += 4
    if (offset + length > payload.length) throw new E2eError('bad_input', 'malformed QR payload')
    fields.push(payload.subarray(offset, offset + length))
    offset += length
  }
  const [a, b, c, d] = fields
  if (a === undefined || b === undefined || c === undefined || d === undefined)
    throw new E2eError('bad_input', 'malformed QR payload')
  if (b.length !== SIGN_PUBLIC_KEY_BYTES || d.length !== SIGN_PUBLIC_KEY_BYTES)
    throw new E2eError('bad_input', 'QR keys must be 32 bytes')
  try {
    return [fromUtf8(a), b, fromUtf8(c), d]
  } catch {
    throw new E2eError('bad_input', 'QR user ids must be UTF-8')
  }
}

/**
 * Checks a scanned QR payload (E2E.md section 2.1; section 3 row 14): it must come from the expected
 * peer with exactly the pinned UIK, and carry exactly our own UIK. Only full 32-byte keys are compared,
 * never device ids or other strings. Throws `wrong_identity` (or `bad_input`); returns nothing on success.
 */
export function verifySafetyQr(scanned: Uint8Array, own: UserIdentity, pinnedPeer: UserIdentity): void {
  assertBytes('own UIK', own.uik, SIGN_PUBLIC_KEY_BYTES)
  assertBytes('peer UIK', pinnedPeer.uik, SIGN_PUBLIC_KEY_BYTES)
  const [peerId, peerUik, ownId, ownUik] = decodeQr(scanned)
  const peerOk = peerId === pinnedPeer.userId && constantTimeEqual(peerUik, pinnedPeer.uik)
  const ownOk = ownId === own.userId && constantTimeEqual(ownUik, own.uik)
  if (!peerOk || !ownOk) throw new E2eError('wrong_identity', 'QR code keys differ from the pinned keys')
}
