/**
 * The server key document served at `GET /.well-known/parley/server` (DESIGN.md section 6). Shape
 * only: signatures, server name and validity are checked by `verifyKeyDocument` in
 * `key-document.ts`.
 */
import { z } from 'zod'
import { fromBase64Url } from '../encoding.ts'
import { isKeyId } from '../ids.ts'
import { ServerName } from './common.ts'

/** Most current keys one document may list. */
export const MAX_VERIFY_KEYS = 8
/** Most retired keys one document may list (old keys are kept forever; a rotation a day for ~3 years). */
export const MAX_OLD_VERIFY_KEYS = 1024
/** Most signatures one server may put on a document (its current keys and the key they replaced). */
export const MAX_SIGNATURES_PER_SERVER = 16
/** Most servers that may sign one document (itself, plus room for notaries later). */
export const MAX_SIGNING_SERVERS = 8

/** Unpadded base64url of exactly `bytes` bytes (canonical encoding: no stray trailing bits). */
function base64UrlOf(bytes: number) {
  const chars = Math.ceil((bytes * 4) / 3)
  return z
    .string()
    .regex(new RegExp(`^[A-Za-z0-9_-]{${chars}}$`), `must be ${bytes} bytes of unpadded base64url`)
    .refine((s) => fromBase64Url(s)?.length === bytes, `must be ${bytes} bytes of unpadded base64url`)
}

/** A key id such as `ed25519:a1B2`: the algorithm, a colon, 1-32 of `A-Z a-z 0-9 _`. */
export const KeyId = z.string().refine(isKeyId, 'invalid key id')
/** A raw 32-byte Ed25519 public key, unpadded base64url (43 characters). */
export const PublicKeyB64 = base64UrlOf(32)
/** A 64-byte Ed25519 signature, unpadded base64url (86 characters). */
export const SignatureB64 = base64UrlOf(64)
/** Milliseconds since the epoch, a non-negative safe integer. */
const Timestamp = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)

const boundedRecord = <V extends z.ZodType>(key: typeof KeyId | typeof ServerName, value: V, max: number) =>
  z.record(key, value).refine((r) => Object.keys(r).length <= max, `at most ${max} entries`)

/** A retired key: still verifies what was signed before `expired_ts`. */
export const OldVerifyKey = z.strictObject({ key: PublicKeyB64, expired_ts: Timestamp })
export type OldVerifyKey = z.infer<typeof OldVerifyKey>

/**
 * A key document. Unknown top-level fields are kept (newer servers may add some) and, like every other
 * field except `signatures`, covered by the signatures.
 */
export const KeyDocument = z.looseObject({
  server_name: ServerName,
  /** Where the federation link listens: a `ws:` or `wss:` URL. */
  link: z.url({ protocol: /^wss?$/ }).max(2048),
  /** Current keys, by key id. At least one. */
  verify_keys: boundedRecord(KeyId, PublicKeyB64, MAX_VERIFY_KEYS).refine(
    (r) => Object.keys(r).length > 0,
    'at least one verify key',
  ),
  /** Every key the server retired, by key id, with the time it stopped signing. */
  old_verify_keys: boundedRecord(KeyId, OldVerifyKey, MAX_OLD_VERIFY_KEYS),
  /** Peers fetch the document again after this time and refuse it once past. */
  valid_until_ts: Timestamp,
  /** `{server_name: {kid: signature}}` over the document without `signatures`. */
  signatures: boundedRecord(
    ServerName,
    boundedRecord(KeyId, SignatureB64, MAX_SIGNATURES_PER_SERVER),
    MAX_SIGNING_SERVERS,
  ),
})
export type KeyDocument = z.infer<typeof KeyDocument>
