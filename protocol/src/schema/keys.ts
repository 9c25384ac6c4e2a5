/**
 * Wire shapes of end-to-end encryption (E2E.md sections 2.1, 2.2, 2.4 and 2.5) as the homeserver
 * stores and relays them: signed device lists, signed prekeys, the `m.encrypted` event content, key
 * backup metadata and session records, and the REST bodies and answers of `/api/v1/keys`.
 *
 * Shape only, with size bounds: signatures are checked by the crypto core
 * (`protocol/src/crypto/e2e`), which stays the authority on what is valid. Every byte string is
 * canonical unpadded base64url of an exact length, so a value that passes here is also one the crypto
 * core decodes.
 */
import { z } from 'zod'
import { fromBase64Url } from '../encoding.ts'
import { Cursor, DeviceId, RoomId, ServerName, UserId } from './common.ts'

/** The `suite` of every v1 E2E document and event (E2E.md section 2). */
export const E2E_SUITE_V1 = 'e2e/v1'
/** Most devices one device list may carry (the crypto core's `MAX_DEVICES`). */
export const MAX_LIST_DEVICES = 256
/** Most users one `POST /keys/query` may name. */
export const MAX_KEYS_QUERY_USERS = 100
/** Most session records one `PUT /keys/backup/sessions` may carry. */
export const MAX_BACKUP_RECORDS_PER_CALL = 100
/** Largest ratchet index of a v1 group message: sessions carry at most 1000 messages (E2E.md section 2.4). */
export const MAX_GROUP_INDEX = 999
/** Largest padded plaintext of a group message, 64 KiB, plus the 16-byte tag (the crypto core's bound). */
export const MAX_GROUP_CIPHERTEXT_BYTES = 64 * 1024 + 16
/** Largest backup record ciphertext, 16 KiB (the crypto core refuses bigger ones). */
export const MAX_BACKUP_CIPHERTEXT_BYTES = 16 * 1024

/** Unpadded canonical base64url of exactly `bytes` bytes. */
function bytesOf(bytes: number) {
  const chars = Math.ceil((bytes * 4) / 3)
  return z
    .string()
    .regex(new RegExp(`^[A-Za-z0-9_-]{${chars}}$`), `must be ${bytes} bytes of unpadded base64url`)
    .refine((s) => fromBase64Url(s)?.length === bytes, `must be ${bytes} bytes of unpadded base64url`)
}

/** Unpadded canonical base64url of 1 to `max` bytes. */
function bytesUpTo(max: number) {
  return z
    .string()
    .min(2)
    .max(Math.ceil((max * 4) / 3))
    .regex(/^[A-Za-z0-9_-]+$/, 'must be unpadded base64url')
    .refine((s) => fromBase64Url(s) !== null, 'must be canonical unpadded base64url')
}

/** `"e2e/v1"`. */
export const E2eSuite = z.literal(E2E_SUITE_V1)
/** An Ed25519 or X25519 public key, 32 bytes. */
export const E2ePublicKey = bytesOf(32)
/** An Ed25519 signature, 64 bytes. */
export const E2eSignature = bytesOf(64)
/** A BLAKE2b-256 hash, 32 bytes. */
export const E2eHash = bytesOf(32)
/** An XChaCha20-Poly1305 nonce, 24 bytes. */
export const E2eNonce = bytesOf(24)
/**
 * A key backup version: chosen by the client, named in every record's associated data (E2E.md
 * section 2.5). 1-128 of `A-Z a-z 0-9 . _ ~ : -`.
 */
export const BackupVersion = z
  .string()
  .regex(/^[A-Za-z0-9._~:-]{1,128}$/, 'version must be 1-128 of A-Z a-z 0-9 . _ ~ : -')

/** One device of a device list (E2E.md section 2.1): its DSK (Ed25519) and DXK (X25519). */
export const DeviceListEntry = z.strictObject({
  device_id: DeviceId,
  dsk: E2ePublicKey,
  dxk: E2ePublicKey,
  added_ts: Cursor,
})

/**
 * A device list signed by the user's identity key, the UIK (E2E.md section 2.1). `prev_hash` is
 * `null` exactly at version 1, else `H(previous list)`. The crypto core's `verifyDeviceList` checks
 * the signature.
 */
export const SignedDeviceList = z
  .strictObject({
    suite: E2eSuite,
    user_id: UserId,
    uik: E2ePublicKey,
    version: Cursor.min(1),
    prev_hash: E2eHash.nullable(),
    devices: z.array(DeviceListEntry).max(MAX_LIST_DEVICES),
    signature: E2eSignature,
  })
  .refine((d) => (d.version === 1) === (d.prev_hash === null), 'prev_hash must be null exactly at version 1')

/** A device's signed prekey (E2E.md section 2.1): an X25519 key signed by the device's DSK. */
export const SignedPrekey = z.strictObject({
  suite: E2eSuite,
  /** base64url of the first 16 bytes of BLAKE2b(public key). */
  spk_id: bytesOf(16),
  public_key: E2ePublicKey,
  created_ts: Cursor,
  signature: E2eSignature,
})

/**
 * `m.encrypted`: a group message (E2E.md section 2.4). The server checks that `sender_user` is the
 * event's sender and `sender_dev` the sending device; the rest is opaque to it.
 */
export const EncryptedContent = z.strictObject({
  suite: E2eSuite,
  /** base64url of the session's Ed25519 public key. */
  session_id: E2ePublicKey,
  sender_user: UserId,
  sender_dev: DeviceId,
  index: z.number().int().min(0).max(MAX_GROUP_INDEX),
  nonce: E2eNonce,
  ciphertext: bytesUpTo(MAX_GROUP_CIPHERTEXT_BYTES),
  signature: E2eSignature,
})

/**
 * How an attachment is encrypted (E2E.md section 2.5): the secretstream key and header, the BLAKE2b-256
 * of the uploaded ciphertext, and the random `upload_id` that, with the room id, is bound into the
 * first chunk's associated data (so the file cannot be replayed into another room or message). It sits
 * in a message's `attachment.encryption` and only ever travels inside an `m.encrypted` event's
 * ciphertext: the server never sees it. The plaintext size is the attachment's `size`.
 */
export const AttachmentEncryption = z.strictObject({
  v: E2eSuite,
  /** 16 random bytes, base64url (22 characters), fresh per upload. */
  upload_id: bytesOf(16),
  /** The secretstream XChaCha20-Poly1305 key, 32 bytes. */
  key: bytesOf(32),
  /** The secretstream header, 24 bytes. */
  header: bytesOf(24),
  /** BLAKE2b-256 of the ciphertext as uploaded. */
  hash: E2eHash,
})
export type AttachmentEncryption = z.infer<typeof AttachmentEncryption>

/** Stored argon2id parameters of a passphrase-wrapped recovery key (E2E.md section 2.5). */
export const BackupKdfParams = z.strictObject({
  algorithm: z.literal('argon2id13'),
  opslimit: z.number().int().min(1).max(20),
  memlimit: z
    .number()
    .int()
    .min(64 * 1024 * 1024)
    .max(1024 * 1024 * 1024),
  salt: bytesOf(16),
})

/** Key backup metadata signed by the UIK (E2E.md section 2.5). Opaque to the server beyond its shape. */
export const SignedBackupMetadata = z.strictObject({
  suite: E2eSuite,
  user_id: UserId,
  version: BackupVersion,
  kdf: BackupKdfParams.nullable(),
  /** `BLAKE2b-128(key = BK, "check")`. */
  key_check: bytesOf(16),
  signature: E2eSignature,
})

/** One session in the key backup, encrypted under the backup key (E2E.md section 2.5). */
export const BackupSessionRecord = z.strictObject({
  room_id: RoomId,
  session_id: E2ePublicKey,
  nonce: E2eNonce,
  ciphertext: bytesUpTo(MAX_BACKUP_CIPHERTEXT_BYTES),
})

/** Most items one user's secret storage may hold. */
export const MAX_SECRET_STORAGE_ITEMS = 16
/** Largest ciphertext of one secret-storage item, 1 KiB (a key is 32-64 bytes). */
export const MAX_SECRET_CIPHERTEXT_BYTES = 1024

/** One item of secret storage, encrypted under the user's SSK and bound to its name (E2E.md section 2.5). */
export const SealedSecret = z.strictObject({
  name: z.string().regex(/^[a-z0-9._-]{1,64}$/, 'name must be 1-64 of a-z 0-9 . _ -'),
  nonce: E2eNonce,
  ciphertext: bytesUpTo(MAX_SECRET_CIPHERTEXT_BYTES),
})

/** A recovery key wrapped under an argon2id passphrase key (E2E.md section 2.5); opaque to the server. */
export const WrappedRecoveryKey = z.strictObject({
  suite: E2eSuite,
  kdf: BackupKdfParams,
  nonce: E2eNonce,
  /** The 32-byte recovery key and the 16-byte tag. */
  ciphertext: bytesOf(48),
})

/**
 * A user's secret storage (E2E.md section 2.5): the UIK and the backup key sealed under `SSK`, and the
 * recovery key wrapped under the passphrase if the user chose one. Opaque to the server beyond its
 * shape and size; only its owner may read or replace it.
 */
export const SecretStorage = z.strictObject({
  suite: E2eSuite,
  /** The backup version this storage goes with (its `SSK` comes from the same recovery key). */
  version: BackupVersion,
  passphrase: WrappedRecoveryKey.nullable(),
  items: z.array(SealedSecret).min(1).max(MAX_SECRET_STORAGE_ITEMS),
})

/** A user's signed prekeys by device id. */
export const DevicePrekeys = z.record(DeviceId, SignedPrekey)

// ---- REST: /api/v1/keys ----

/** `PUT /keys/device-list`: the caller's own new device list. */
export const PutDeviceListBody = z.strictObject({ device_list: SignedDeviceList })
/** `PUT /keys/prekey`: the calling device's current signed prekey (replaces the previous one). */
export const PutPrekeyBody = z.strictObject({ signed_prekey: SignedPrekey })
/** `POST /keys/query`. */
export const KeysQueryBody = z.strictObject({
  users: z.array(UserId).min(1).max(MAX_KEYS_QUERY_USERS),
})
/**
 * Answer of `POST /keys/query`: for each user the caller may see (themself, and anyone who shares a
 * room with them, joined or invited), the newest device list and each device's signed prekey. Users
 * the caller may not see, and users without keys, are simply absent. `failures` names the servers
 * that could not be asked (unreachable, refused, timed out) with an error code.
 */
export const KeysQueryResponse = z.object({
  device_lists: z.record(UserId, SignedDeviceList),
  prekeys: z.record(UserId, DevicePrekeys),
  failures: z.record(ServerName, z.string().max(64)),
})
/** `PUT /keys/backup`: a new backup version (replaces the previous one and drops its records). */
export const PutBackupBody = z.strictObject({ metadata: SignedBackupMetadata })
/** Answer of `GET /keys/backup`. */
export const BackupResponse = z.object({ metadata: SignedBackupMetadata })
/** `PUT /keys/backup/sessions`: insert or replace records of the current backup version. */
export const PutBackupSessionsBody = z.strictObject({
  version: BackupVersion,
  records: z.array(BackupSessionRecord).min(1).max(MAX_BACKUP_RECORDS_PER_CALL),
})
/** `PUT /keys/secret-storage`: replaces the caller's secret storage. */
export const PutSecretStorageBody = z.strictObject({ secret_storage: SecretStorage })
/** Answer of `GET /keys/secret-storage`. */
export const SecretStorageResponse = z.object({ secret_storage: SecretStorage })
/** `GET /keys/backup/sessions?version=`. */
export const BackupSessionsQuery = z.object({ version: BackupVersion })
/** Answer of `GET /keys/backup/sessions`: every record of that version. */
export const BackupSessionsResponse = z.object({
  version: BackupVersion,
  records: z.array(BackupSessionRecord),
})

export type SignedDeviceList = z.infer<typeof SignedDeviceList>
export type SignedPrekey = z.infer<typeof SignedPrekey>
export type EncryptedContent = z.infer<typeof EncryptedContent>
export type SignedBackupMetadata = z.infer<typeof SignedBackupMetadata>
export type BackupSessionRecord = z.infer<typeof BackupSessionRecord>
export type KeysQueryResponse = z.infer<typeof KeysQueryResponse>
export type SecretStorage = z.infer<typeof SecretStorage>
