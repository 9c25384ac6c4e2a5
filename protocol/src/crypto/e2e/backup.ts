/**
 * Key backup and secret storage (E2E.md section 2.5, "Backup").
 *
 * - Recovery key `RK`: 32 random bytes, shown as base58 with a version prefix and a checksum.
 * - Optional passphrase: wraps `RK` under argon2id (`crypto_pwhash`, `ALG_ARGON2ID13`; opslimit 3 and
 *   memlimit 128 MiB by default, never below 64 MiB; 16-byte salt; parameters stored with the wrap).
 * - `BK = kdf(32, 1, "backupv1", RK)` encrypts session records, `SSK = kdf(32, 2, "sstorev1", RK)`
 *   encrypts secret storage (the UIK private key and `BK`).
 * - Each session record is XChaCha20-Poly1305 under `BK` with `AD = version ‖ room_id ‖ session_id`, so
 *   a server without `BK` cannot inject or move sessions.
 * - Backup metadata `{version, kdf params, key_check = BLAKE2b-128(key = BK, "check")}` is signed by the
 *   UIK; clients upload only to a backup whose signature and `key_check` verify.
 */
import { canonicalJson } from '../../canonical-json.ts'
import { concatBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from '../../encoding.ts'
import { sodium } from '../sodium.ts'
import { E2eError } from './errors.ts'
import {
  aeadDecrypt,
  aeadEncrypt,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  assertBytes,
  constantTimeEqual,
  encodeFields,
  generichash,
  kdfDerive,
  memzero,
  secretRandomBytes,
  sign,
  SIGNATURE_BYTES,
  SIGN_PUBLIC_KEY_BYTES,
  verify,
  type SigningKeyPair,
} from './primitives.ts'
import { E2E_SUITE, parseRoomKeyPayload, type RoomKeyPayload } from './ratchet.ts'

/** Bytes of a recovery key (E2E.md section 2.5). */
export const RECOVERY_KEY_BYTES = 32
/** Default argon2id opslimit (E2E.md section 2.5). */
export const DEFAULT_PWHASH_OPSLIMIT = 3
/**
 * Default argon2id memlimit, 128 MiB. E2E.md section 2.5 names 256 MiB and a 1.5 s unlock budget
 * (section 3 row 19); in a fresh Chromium worker on the 2-core reference box 256 MiB took 1.8-2.1 s
 * and 128 MiB 1.0-1.06 s (docs/benchmarks.md), so the budget decides. Stored parameters are honoured,
 * so a wrap made at any accepted cost still unlocks.
 */
export const DEFAULT_PWHASH_MEMLIMIT = 128 * 1024 * 1024
/** Smallest accepted argon2id memlimit, 64 MiB (E2E.md section 2.5, "at least 64 MiB"). */
export const MIN_PWHASH_MEMLIMIT = 64 * 1024 * 1024
/** Largest accepted memlimit, 1 GiB: stored parameters must not let a server exhaust memory (E2E.md section 2.5). */
export const MAX_PWHASH_MEMLIMIT = 1024 * 1024 * 1024
/** Smallest accepted opslimit, argon2id's own minimum (E2E.md section 2.5). Only tests should go below the default. */
export const MIN_PWHASH_OPSLIMIT = 1
/** Largest accepted opslimit, so stored parameters cannot stall a client (E2E.md section 2.5). */
export const MAX_PWHASH_OPSLIMIT = 20
/** Bytes of an argon2id salt (E2E.md section 2.5). */
export const PWHASH_SALT_BYTES = 16

const RK_PREFIX = Uint8Array.of(0xe2, 0x01)
const RK_CHECKSUM_BYTES = 4
const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const RK_WRAP_LABEL = 'e2e/v1/rkwrap'
const BACKUP_AD_LABEL = 'e2e/v1/backup'
const METADATA_SIG_LABEL = 'e2e/v1/backupmeta'
const SECRET_AD_LABEL = 'e2e/v1/sstore'
const MAX_ID_LENGTH = 255

/** Bitcoin-alphabet base58 of `bytes` (leading zero bytes as `1`). Used for recovery keys (E2E.md section 2.5). */
export function base58Encode(bytes: Uint8Array): string {
  assertBytes('bytes', bytes)
  const digits: number[] = []
  for (const byte of bytes) {
    let carry = byte
    for (let i = 0; i < digits.length; i++) {
      carry += digits[i]! << 8
      digits[i] = carry % 58
      carry = Math.floor(carry / 58)
    }
    while (carry > 0) {
      digits.push(carry % 58)
      carry = Math.floor(carry / 58)
    }
  }
  let out = ''
  for (let i = 0; i < bytes.length && bytes[i] === 0; i++) out += '1'
  for (let i = digits.length - 1; i >= 0; i--) out += BASE58[digits[i]!]!
  return out
}

/** Decodes base58 (E2E.md section 2.5); `bad_input` for characters outside the alphabet. */
export function base58Decode(text: string): Uint8Array {
  if (typeof text !== 'string' || text.length > 1024) throw new E2eError('bad_input', 'base58 text expected')
  const bytes: number[] = []
  for (const char of text) {
    let carry = BASE58.indexOf(char)
    if (carry < 0) throw new E2eError('bad_input', 'character outside the base58 alphabet')
    for (let i = 0; i < bytes.length; i++) {
      carry += bytes[i]! * 58
      bytes[i] = carry & 0xff
      carry >>= 8
    }
    while (carry > 0) {
      bytes.push(carry & 0xff)
      carry >>= 8
    }
  }
  let zeros = 0
  while (zeros < text.length && text[zeros] === '1') zeros++
  return Uint8Array.from([...new Array<number>(zeros).fill(0), ...bytes.reverse()])
}

function recoveryChecksum(rk: Uint8Array): Uint8Array {
  return generichash(16, concatBytes(RK_PREFIX, rk)).subarray(0, RK_CHECKSUM_BYTES)
}

/** A fresh recovery key: 32 random bytes (E2E.md section 2.5). */
export function generateRecoveryKey(): Uint8Array {
  return secretRandomBytes(RECOVERY_KEY_BYTES)
}

/**
 * The recovery key as the user writes it down (E2E.md section 2.5): base58 of `0xe2 0x01 ‖ RK ‖
 * checksum` (first 4 bytes of BLAKE2b-128 of prefix and key), in space-separated groups of four.
 */
export function encodeRecoveryKey(rk: Uint8Array): string {
  assertBytes('recovery key', rk, RECOVERY_KEY_BYTES)
  const text = base58Encode(concatBytes(RK_PREFIX, rk, recoveryChecksum(rk)))
  return (text.match(/.{1,4}/g) ?? []).join(' ')
}

/**
 * Parses a typed recovery key (E2E.md section 2.5), ignoring whitespace. `bad_input` for foreign
 * characters, `bad_checksum` for a wrong prefix, length or checksum (a typo).
 */
export function decodeRecoveryKey(text: string): Uint8Array {
  if (typeof text !== 'string') throw new E2eError('bad_input', 'recovery key must be text')
  const bytes = base58Decode(text.replace(/\s+/g, ''))
  if (bytes.length !== RK_PREFIX.length + RECOVERY_KEY_BYTES + RK_CHECKSUM_BYTES)
    throw new E2eError('bad_checksum', 'recovery key has the wrong length')
  const prefix = bytes.subarray(0, RK_PREFIX.length)
  const rk = bytes.slice(RK_PREFIX.length, RK_PREFIX.length + RECOVERY_KEY_BYTES)
  const checksum = bytes.subarray(RK_PREFIX.length + RECOVERY_KEY_BYTES)
  const ok = constantTimeEqual(prefix, RK_PREFIX) && constantTimeEqual(checksum, recoveryChecksum(rk))
  memzero(bytes)
  if (!ok) {
    memzero(rk)
    throw new E2eError('bad_checksum', 'recovery key checksum does not match')
  }
  return rk
}

/** The keys derived from a recovery key (E2E.md section 2.5). */
export interface BackupKeys {
  /** `BK = kdf(32, 1, "backupv1", RK)`: encrypts session records. */
  readonly bk: Uint8Array
  /** `SSK = kdf(32, 2, "sstorev1", RK)`: encrypts secret storage. */
  readonly ssk: Uint8Array
}

/** Derives `BK` and `SSK` from `RK` with `crypto_kdf` (E2E.md section 2.5). */
export function deriveBackupKeys(rk: Uint8Array): BackupKeys {
  assertBytes('recovery key', rk, RECOVERY_KEY_BYTES)
  return { bk: kdfDerive(32, 1, 'backupv1', rk), ssk: kdfDerive(32, 2, 'sstorev1', rk) }
}

/** Stored argon2id parameters of a passphrase wrap (E2E.md section 2.5). */
export interface PassphraseKdfParams {
  readonly algorithm: 'argon2id13'
  readonly opslimit: number
  /** Bytes. */
  readonly memlimit: number
  /** base64url, 16 bytes. */
  readonly salt: string
}

/** `RK` encrypted under a passphrase-derived key (E2E.md section 2.5). */
export interface WrappedRecoveryKey {
  readonly suite: typeof E2E_SUITE
  readonly kdf: PassphraseKdfParams
  readonly nonce: string
  readonly ciphertext: string
}

/** Cost options of {@link wrapRecoveryKey}; defaults: opslimit 3, memlimit 128 MiB (see {@link DEFAULT_PWHASH_MEMLIMIT}). */
export interface PassphraseCost {
  readonly opslimit?: number
  readonly memlimit?: number
}

function checkKdfParams(value: unknown): { params: PassphraseKdfParams; salt: Uint8Array } {
  if (typeof value !== 'object' || value === null) throw new E2eError('bad_input', 'kdf params missing')
  const { algorithm, opslimit, memlimit, salt } = value as Record<string, unknown>
  if (algorithm !== 'argon2id13') throw new E2eError('bad_input', 'kdf must be argon2id13')
  if (typeof opslimit !== 'number' || !Number.isSafeInteger(opslimit))
    throw new E2eError('bad_input', 'opslimit must be an integer')
  if (opslimit < MIN_PWHASH_OPSLIMIT || opslimit > MAX_PWHASH_OPSLIMIT)
    throw new E2eError('bad_input', 'opslimit out of range')
  if (typeof memlimit !== 'number' || !Number.isSafeInteger(memlimit) || memlimit % 1024 !== 0)
    throw new E2eError('bad_input', 'memlimit must be a whole number of KiB')
  if (memlimit < MIN_PWHASH_MEMLIMIT || memlimit > MAX_PWHASH_MEMLIMIT)
    throw new E2eError('bad_input', 'memlimit must be 64 MiB..1 GiB')
  const saltBytes = typeof salt === 'string' ? fromBase64Url(salt) : null
  if (saltBytes === null || saltBytes.length !== PWHASH_SALT_BYTES)
    throw new E2eError('bad_input', 'salt must be 16 bytes')
  return { params: { algorithm, opslimit, memlimit, salt: toBase64Url(saltBytes) }, salt: saltBytes }
}

/**
 * Checks stored or served argon2id parameters (E2E.md section 2.5): argon2id13, opslimit 1..20,
 * memlimit 64 MiB..1 GiB in whole KiB, a 16-byte salt. `bad_input` otherwise, before any work.
 */
export function parsePassphraseKdfParams(value: unknown): PassphraseKdfParams {
  return checkKdfParams(value).params
}

/**
 * Fresh argon2id parameters with a random 16-byte salt (E2E.md section 2.5); the cost defaults to the
 * defaults (opslimit 3, memlimit 128 MiB: {@link DEFAULT_PWHASH_MEMLIMIT}).
 */
export function newPassphraseKdfParams(cost: PassphraseCost = {}): PassphraseKdfParams {
  return checkKdfParams({
    algorithm: 'argon2id13',
    opslimit: cost.opslimit ?? DEFAULT_PWHASH_OPSLIMIT,
    memlimit: cost.memlimit ?? DEFAULT_PWHASH_MEMLIMIT,
    salt: toBase64Url(secretRandomBytes(PWHASH_SALT_BYTES)),
  }).params
}

/**
 * The 32-byte key argon2id derives from a passphrase (NFKC-normalised, UTF-8) under `params` (E2E.md
 * section 2.5). The slow part of a passphrase wrap (~0.3-2.5 s at the defaults): run it off the UI
 * thread, e.g. in a Worker, and hand the key to {@link sealRecoveryKey} / {@link openRecoveryKey}.
 */
export function derivePassphraseKey(passphrase: string, params: PassphraseKdfParams): Uint8Array {
  if (typeof passphrase !== 'string' || passphrase.length === 0)
    throw new E2eError('bad_input', 'passphrase must be a non-empty string')
  const { params: checked, salt } = checkKdfParams(params)
  const password = utf8(passphrase.normalize('NFKC'))
  const s = sodium()
  try {
    return s.crypto_pwhash(
      32,
      password,
      salt,
      checked.opslimit,
      checked.memlimit,
      s.crypto_pwhash_ALG_ARGON2ID13,
    )
  } catch {
    throw new E2eError('bad_input', 'argon2id failed (out of memory?)')
  } finally {
    memzero(password)
  }
}

function wrapAd(params: PassphraseKdfParams): Uint8Array {
  return encodeFields(RK_WRAP_LABEL, canonicalJson({ ...params }))
}

/**
 * Encrypts `RK` under a key from {@link derivePassphraseKey} (E2E.md section 2.5); the parameters are
 * authenticated as AD, so a server that changes them breaks the wrap.
 */
export function sealRecoveryKey(
  rk: Uint8Array,
  key: Uint8Array,
  params: PassphraseKdfParams,
): WrappedRecoveryKey {
  assertBytes('recovery key', rk, RECOVERY_KEY_BYTES)
  assertBytes('passphrase key', key, 32)
  const checked = checkKdfParams(params).params
  const { nonce, ciphertext } = aeadEncrypt(key, rk, wrapAd(checked))
  return { suite: E2E_SUITE, kdf: checked, nonce: toBase64Url(nonce), ciphertext: toBase64Url(ciphertext) }
}

/**
 * Checks a stored wrap's shape and parameters (E2E.md section 2.5) before any argon2id work: `bad_input`
 * for parameters outside 64 MiB..1 GiB / 1..20, a bad nonce or ciphertext.
 */
export function parseWrappedRecoveryKey(wrapped: unknown): WrappedRecoveryKey {
  if (typeof wrapped !== 'object' || wrapped === null || (wrapped as { suite?: unknown }).suite !== E2E_SUITE)
    throw new E2eError('bad_input', 'not a v1 wrapped recovery key')
  const w = wrapped as Record<string, unknown>
  const { params } = checkKdfParams(w.kdf)
  const nonce = typeof w.nonce === 'string' ? fromBase64Url(w.nonce) : null
  const ciphertext = typeof w.ciphertext === 'string' ? fromBase64Url(w.ciphertext) : null
  if (nonce === null || nonce.length !== AEAD_NONCE_BYTES) throw new E2eError('bad_input', 'bad nonce')
  if (ciphertext === null || ciphertext.length !== RECOVERY_KEY_BYTES + AEAD_TAG_BYTES)
    throw new E2eError('bad_input', 'bad ciphertext')
  return { suite: E2E_SUITE, kdf: params, nonce: toBase64Url(nonce), ciphertext: toBase64Url(ciphertext) }
}

/**
 * Decrypts a wrap with a key from {@link derivePassphraseKey} (E2E.md section 2.5); a wrong passphrase
 * (hence key) is `decrypt_failed`.
 */
export function openRecoveryKey(wrapped: unknown, key: Uint8Array): Uint8Array {
  assertBytes('passphrase key', key, 32)
  const w = parseWrappedRecoveryKey(wrapped)
  return aeadDecrypt(key, fromBase64Url(w.nonce)!, fromBase64Url(w.ciphertext)!, wrapAd(w.kdf))
}

/**
 * Wraps `RK` under a passphrase with argon2id (E2E.md section 2.5) on the calling thread: the
 * passphrase is NFKC-normalised; the parameters are authenticated as AD. Takes ~0.3-2.5 s at the
 * defaults: in an app, run {@link derivePassphraseKey} in a Worker instead.
 */
export function wrapRecoveryKey(
  rk: Uint8Array,
  passphrase: string,
  cost: PassphraseCost = {},
): WrappedRecoveryKey {
  assertBytes('recovery key', rk, RECOVERY_KEY_BYTES)
  const params = newPassphraseKdfParams(cost)
  const key = derivePassphraseKey(passphrase, params)
  try {
    return sealRecoveryKey(rk, key, params)
  } finally {
    memzero(key)
  }
}

/**
 * Unwraps `RK` with the passphrase and the stored parameters (E2E.md section 2.5), on the calling
 * thread. Parameters outside 64 MiB..1 GiB / 1..20 are `bad_input` before any work; a wrong passphrase
 * is `decrypt_failed`.
 */
export function unwrapRecoveryKey(wrapped: unknown, passphrase: string): Uint8Array {
  const w = parseWrappedRecoveryKey(wrapped)
  const key = derivePassphraseKey(passphrase, w.kdf)
  try {
    return openRecoveryKey(w, key)
  } finally {
    memzero(key)
  }
}

/** One encrypted session in the backup (E2E.md section 2.5). Bytes are base64url. */
export interface BackupSessionRecord {
  readonly room_id: string
  readonly session_id: string
  readonly nonce: string
  readonly ciphertext: string
}

function recordAd(version: string, roomId: string, sessionId: string): Uint8Array {
  return encodeFields(BACKUP_AD_LABEL, version, roomId, sessionId)
}

function assertId(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH)
    throw new E2eError('bad_input', `${name} must be a non-empty string`)
}

/**
 * Encrypts a session's room-key payload for backup `version` under `BK`, with `AD = version ‖ room_id ‖
 * session_id` (E2E.md section 2.5). Back up {@link InboundGroupSession.exportRoomKey} so the earliest
 * known index is kept.
 */
export function encryptBackupSession(
  bk: Uint8Array,
  version: string,
  payload: RoomKeyPayload,
): BackupSessionRecord {
  assertBytes('BK', bk, 32)
  assertId('backup version', version)
  const checked = parseRoomKeyPayload(payload)
  const plaintext = utf8(canonicalJson(checked))
  try {
    const { nonce, ciphertext } = aeadEncrypt(
      bk,
      plaintext,
      recordAd(version, checked.room_id, checked.session_id),
    )
    return {
      room_id: checked.room_id,
      session_id: checked.session_id,
      nonce: toBase64Url(nonce),
      ciphertext: toBase64Url(ciphertext),
    }
  } finally {
    memzero(plaintext)
  }
}

/**
 * Decrypts a backup record (E2E.md section 2.5). A record the server made, moved to another room or
 * session, or took from another backup version fails the AEAD (`decrypt_failed`). The result still
 * goes through `InboundGroupSession.fromRoomKey` before use.
 */
export function decryptBackupSession(bk: Uint8Array, version: string, record: unknown): RoomKeyPayload {
  assertBytes('BK', bk, 32)
  assertId('backup version', version)
  if (typeof record !== 'object' || record === null)
    throw new E2eError('bad_input', 'record must be an object')
  const r = record as Record<string, unknown>
  assertId('room_id', r.room_id)
  assertId('session_id', r.session_id)
  const nonce = typeof r.nonce === 'string' ? fromBase64Url(r.nonce) : null
  const ciphertext = typeof r.ciphertext === 'string' ? fromBase64Url(r.ciphertext) : null
  if (nonce === null || nonce.length !== AEAD_NONCE_BYTES) throw new E2eError('bad_input', 'bad nonce')
  if (ciphertext === null || ciphertext.length > 16 * 1024) throw new E2eError('bad_input', 'bad ciphertext')
  const plaintext = aeadDecrypt(bk, nonce, ciphertext, recordAd(version, r.room_id, r.session_id))
  try {
    let parsed: unknown
    try {
      parsed = JSON.parse(fromUtf8(plaintext))
    } catch {
      throw new E2eError('bad_input', 'record is not JSON')
    }
    const payload = parseRoomKeyPayload(parsed)
    if (payload.room_id !== r.room_id || payload.session_id !== r.session_id)
      throw new E2eError('bad_input', 'record labels differ from its content')
    return payload
  } finally {
    memzero(plaintext)
  }
}

/** The signed fields of backup metadata (E2E.md section 2.5). */
export interface BackupMetadataBody {
  readonly suite: typeof E2E_SUITE
  readonly user_id: string
  readonly version: string
  /** Passphrase parameters if `RK` is passphrase-wrapped, else `null`. */
  readonly kdf: PassphraseKdfParams | null
  /** base64url of `generichash(16, "check", key = BK)`. */
  readonly key_check: string
}

/** Backup metadata with the UIK's signature (E2E.md section 2.5). */
export interface SignedBackupMetadata extends BackupMetadataBody {
  readonly signature: string
}

/** `key_check = generichash(16, "check", BK)`: BLAKE2b-128 of `"check"` keyed with `BK` (E2E.md section 2.5). */
export function backupKeyCheck(bk: Uint8Array): Uint8Array {
  assertBytes('BK', bk, 32)
  return generichash(16, utf8('check'), bk)
}

function metadataBytes(body: BackupMetadataBody): Uint8Array {
  const canonical = {
    suite: body.suite,
    user_id: body.user_id,
    version: body.version,
    kdf: body.kdf === null ? null : { ...body.kdf },
    key_check: body.key_check,
  }
  return encodeFields(METADATA_SIG_LABEL, canonicalJson(canonical))
}

/** Signs backup metadata with the UIK (E2E.md section 2.5). */
export function signBackupMetadata(
  uik: SigningKeyPair,
  userId: string,
  version: string,
  bk: Uint8Array,
  kdf: PassphraseKdfParams | null = null,
): SignedBackupMetadata {
  assertId('user id', userId)
  assertId('backup version', version)
  const body: BackupMetadataBody = {
    suite: E2E_SUITE,
    user_id: userId,
    version,
    kdf: kdf === null ? null : checkKdfParams(kdf).params,
    key_check: toBase64Url(backupKeyCheck(bk)),
  }
  return { ...body, signature: toBase64Url(sign(uik.secretKey, metadataBytes(body))) }
}

/**
 * Verifies backup metadata (E2E.md section 2.5): user (`wrong_user`), the UIK's signature
 * (`bad_signature`) and, if `bk` is given, `key_check` (`wrong_key`). Clients upload only after this
 * passes with their `BK`; restoring checks it before trusting any record.
 */
export function verifyBackupMetadata(
  metadata: unknown,
  expected: { readonly userId: string; readonly uik: Uint8Array },
  bk?: Uint8Array,
): BackupMetadataBody {
  assertBytes('UIK', expected.uik, SIGN_PUBLIC_KEY_BYTES)
  if (
    typeof metadata !== 'object' ||
    metadata === null ||
    (metadata as { suite?: unknown }).suite !== E2E_SUITE
  )
    throw new E2eError('bad_input', 'not v1 backup metadata')
  const m = metadata as Record<string, unknown>
  assertId('user_id', m.user_id)
  assertId('version', m.version)
  const keyCheck = typeof m.key_check === 'string' ? fromBase64Url(m.key_check) : null
  if (keyCheck === null || keyCheck.length !== 16)
    throw new E2eError('bad_input', 'key_check must be 16 bytes')
  const kdf = m.kdf === null ? null : checkKdfParams(m.kdf).params
  const signature = typeof m.signature === 'string' ? fromBase64Url(m.signature) : null
  if (signature === null || signature.length !== SIGNATURE_BYTES)
    throw new E2eError('bad_signature', 'metadata signature missing')
  if (m.user_id !== expected.userId) throw new E2eError('wrong_user', 'metadata of another user')
  const body: BackupMetadataBody = {
    suite: E2E_SUITE,
    user_id: m.user_id,
    version: m.version,
    kdf,
    key_check: toBase64Url(keyCheck),
  }
  if (!verify(expected.uik, metadataBytes(body), signature))
    throw new E2eError('bad_signature', 'metadata not signed by the UIK')
  if (bk !== undefined && !constantTimeEqual(backupKeyCheck(bk), keyCheck))
    throw new E2eError('wrong_key', 'backup key does not match key_check')
  return body
}

/** One encrypted secret-storage item, e.g. the UIK private key or `BK` (E2E.md section 2.5). */
export interface SealedSecret {
  readonly name: string
  readonly nonce: string
  readonly ciphertext: string
}

/** Encrypts a secret under `SSK`, bound to its `name` (E2E.md section 2.5, secret storage). */
export function sealSecret(ssk: Uint8Array, name: string, secret: Uint8Array): SealedSecret {
  assertBytes('SSK', ssk, 32)
  assertId('secret name', name)
  const { nonce, ciphertext } = aeadEncrypt(ssk, secret, encodeFields(SECRET_AD_LABEL, name))
  return { name, nonce: toBase64Url(nonce), ciphertext: toBase64Url(ciphertext) }
}

/** Decrypts a secret-storage item; `decrypt_failed` for a wrong key, a renamed or forged item (E2E.md section 2.5). */
export function openSecret(ssk: Uint8Array, sealed: unknown): Uint8Array {
  assertBytes('SSK', ssk, 32)
  if (typeof sealed !== 'object' || sealed === null)
    throw new E2eError('bad_input', 'sealed secret must be an object')
  const s = sealed as Record<string, unknown>
  assertId('secret name', s.name)
  const nonce = typeof s.nonce === 'string' ? fromBase64Url(s.nonce) : null
  const ciphertext = typeof s.ciphertext === 'string' ? fromBase64Url(s.ciphertext) : null
  if (nonce === null || nonce.length !== AEAD_NONCE_BYTES || ciphertext === null)
    throw new E2eError('bad_input', 'malformed sealed secret')
  return aeadDecrypt(ssk, nonce, ciphertext, encodeFields(SECRET_AD_LABEL, s.name))
}
