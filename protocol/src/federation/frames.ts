/**
 * Schemas of the link handshake frames (docs/federation.md, "Link"; DESIGN.md section 6). Handshake
 * frames are WebSocket text frames holding one JSON object; everything after AUTH is sealed binary.
 */
import { z } from 'zod'
import { fromBase64Url } from '../encoding.ts'
import { ServerName } from '../schema/common.ts'

/** Version of the link protocol carried in `v`. */
export const LINK_VERSION = 1

/** Longest handshake frame accepted, in UTF-16 code units of the text frame (valid ones are ~400). */
export const MAX_HANDSHAKE_FRAME_CHARS = 4096

/** Exactly `bytes` bytes as canonical unpadded base64url (one encoding per byte string). */
function base64UrlBytes(bytes: number) {
  const chars = Math.ceil((bytes * 4) / 3)
  return z
    .string()
    .regex(new RegExp(`^[A-Za-z0-9_-]{${chars}}$`), `must be ${bytes} bytes of unpadded base64url`)
    .refine((s) => fromBase64Url(s)?.length === bytes, `must be ${bytes} bytes of canonical base64url`)
}

/** A server signing key id, `ed25519:` + 1-32 of `A-Z a-z 0-9 _` (as the homeserver mints them). */
export const KeyId = z.string().regex(/^ed25519:[A-Za-z0-9_]{1,32}$/, 'invalid key id')
/** An X25519 public key (RFC 7748), 32 bytes base64url. */
export const X25519PublicKey = base64UrlBytes(32)
/** A 32-byte random nonce, base64url. */
export const LinkNonce = base64UrlBytes(32)
/** An Ed25519 signature (RFC 8032), 64 bytes base64url. */
export const Ed25519Signature = base64UrlBytes(64)
/** Milliseconds since the Unix epoch. */
export const TimestampMs = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)

const helloFields = {
  type: z.literal('hello'),
  v: z.literal(LINK_VERSION),
  /** The sender's server name. */
  from: ServerName,
  /** The server name the sender means to reach. */
  to: ServerName,
  /** Id of the sender's signing key (resolved through discovery). */
  kid: KeyId,
  /** The sender's ephemeral X25519 public key for this link only. */
  eph_pk: X25519PublicKey,
  nonce: LinkNonce,
  ts: TimestampMs,
}

/** C->S HELLO: the initiator's opening frame. */
export const ClientHello = z.strictObject(helloFields)
/** S->C HELLO: the responder's answer, signed over the transcript so far. */
export const ServerHello = z.strictObject({ ...helloFields, sig: Ed25519Signature })
/** C->S AUTH: the initiator's signature over the whole transcript. */
export const LinkAuth = z.strictObject({ type: z.literal('auth'), sig: Ed25519Signature })

export type ClientHello = z.infer<typeof ClientHello>
export type ServerHello = z.infer<typeof ServerHello>
export type LinkAuth = z.infer<typeof LinkAuth>
