/**
 * Server key documents (DESIGN.md section 6): what `GET /.well-known/parley/server` serves.
 *
 * ```
 * doc       = { server_name, link, verify_keys: {kid: key}, old_verify_keys: {kid: {key, expired_ts}},
 *               valid_until_ts, ...any other field }
 * signature = Ed25519(key, "parley/keys\0" || canonical(doc without `signatures`))
 * signed    = { ...doc, signatures: { server_name: { kid: signature, ... } } }
 * ```
 * A document is valid when it is signed by at least one of its `verify_keys` and every signature it
 * carries under its own name verifies with a key it lists (current or old). When a server rotates,
 * its new document is signed by the new key and by the key it replaced, so peers that pinned the old
 * key can follow the change.
 *
 * Pure and browser-safe: verification takes the Ed25519 verify function as an argument (Node's crypto
 * on the server, libsodium in browsers). Untrusted input returns a {@link Result}; caller bugs throw.
 */
import { canonicalJson, tryCanonicalJson } from './canonical-json.ts'
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from './encoding.ts'
import { SIGNING_DOMAIN } from './events.ts'
import { isKeyId, isServerName } from './ids.ts'
import { err, ok, type Result } from './result.ts'
import { KeyDocument as KeyDocumentSchema } from './schema/key-document.ts'
import { validate } from './schema/parse.ts'

/** A key document before it is signed. Fields beyond these are allowed and signed too. */
export interface UnsignedKeyDocument {
  readonly server_name: string
  /** `ws:` or `wss:` URL of the federation link. */
  readonly link: string
  /** Current keys: kid -> unpadded base64url public key. */
  readonly verify_keys: Readonly<Record<string, string>>
  /** Retired keys: kid -> key and the time it stopped signing. */
  readonly old_verify_keys: Readonly<Record<string, { readonly key: string; readonly expired_ts: number }>>
  readonly valid_until_ts: number
  readonly [field: string]: unknown
}

/** A signed key document: `signatures` is `{server_name: {kid: signature}}`. */
export interface KeyDocument extends UnsignedKeyDocument {
  readonly signatures: Readonly<Record<string, Readonly<Record<string, string>>>>
}

/** How long a document we publish stays valid by default (peers fetch a fresh one before then). */
export const KEY_DOCUMENT_LIFETIME_MS = 24 * 3600_000

/** Something that signs on behalf of a server key (structurally, `Signer` of `@parley/protocol/signing`). */
export interface KeyDocumentSigner {
  readonly kid: string
  /** Raw 32-byte public key. */
  readonly publicKey: Uint8Array
  sign(message: Uint8Array): Uint8Array
}

/** Ed25519 verification, injected: must return `false` (never throw) on malformed input. */
export type VerifyFunction = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean

/** One key of a server, current (`expiredTs: null`) or retired. */
export interface ServerKeyInfo {
  readonly kid: string
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** When the key stopped signing; `null` while it is current. */
  readonly expiredTs: number | null
}

/** Input of {@link buildKeyDocument}. */
export interface KeyDocumentInput {
  readonly serverName: string
  /** `ws:` or `wss:` URL of the federation link. */
  readonly link: string
  /** Every key the server ever had; at least one current. */
  readonly keys: readonly ServerKeyInfo[]
  readonly validUntilTs: number
}

/** The bytes every signature of a key document covers: the domain, then canonical JSON without `signatures`. */
export function keyDocumentSigningBytes(doc: UnsignedKeyDocument | KeyDocument): Uint8Array {
  const { signatures: _signatures, ...unsigned } = doc
  return concatBytes(utf8(SIGNING_DOMAIN.keys), utf8(canonicalJson(unsigned)))
}

/**
 * Builds and signs a key document. Every signer must be one of the listed keys and at least one must
 * be current. Throws a TypeError on inconsistent input (a caller bug): duplicate key ids, bad lengths,
 * no current key, a signer whose key is not listed.
 */
export function buildKeyDocument(
  input: KeyDocumentInput,
  signers: readonly KeyDocumentSigner[],
): KeyDocument {
  if (!isServerName(input.serverName)) throw new TypeError('invalid server name')
  if (!Number.isSafeInteger(input.validUntilTs)) throw new TypeError('valid_until_ts must be a safe integer')
  const verifyKeys: Record<string, string> = {}
  const oldVerifyKeys: Record<string, { key: string; expired_ts: number }> = {}
  for (const key of input.keys) {
    if (!isKeyId(key.kid)) throw new TypeError(`invalid key id ${key.kid}`)
    if (key.publicKey.length !== 32) throw new TypeError(`public key of ${key.kid} must be 32 bytes`)
    if (key.kid in verifyKeys || key.kid in oldVerifyKeys)
      throw new TypeError(`key id ${key.kid} listed twice`)
    if (key.expiredTs === null) verifyKeys[key.kid] = toBase64Url(key.publicKey)
    else oldVerifyKeys[key.kid] = { key: toBase64Url(key.publicKey), expired_ts: key.expiredTs }
  }
  if (Object.keys(verifyKeys).length === 0) throw new TypeError('a key document needs a current key')
  const unsigned: UnsignedKeyDocument = {
    server_name: input.serverName,
    link: input.link,
    verify_keys: verifyKeys,
    old_verify_keys: oldVerifyKeys,
    valid_until_ts: input.validUntilTs,
  }
  return signKeyDocument(unsigned, signers)
}

/**
 * Signs an unsigned document with each signer (under the document's own server name). Throws a
 * TypeError if a signer's key is not the one the document lists under its kid, or if no signer is a
 * current key.
 */
export function signKeyDocument(
  doc: UnsignedKeyDocument,
  signers: readonly KeyDocumentSigner[],
): KeyDocument {
  if (!signers.some((s) => s.kid in doc.verify_keys)) {
    throw new TypeError('a key document must be signed by one of its verify_keys')
  }
  const message = keyDocumentSigningBytes(doc)
  const own: Record<string, string> = {}
  for (const signer of signers) {
    const listed = doc.verify_keys[signer.kid] ?? doc.old_verify_keys[signer.kid]?.key
    if (listed !== toBase64Url(signer.publicKey)) {
      throw new TypeError(`signer ${signer.kid} is not a key of this document`)
    }
    own[signer.kid] = toBase64Url(signer.sign(message))
  }
  return { ...doc, signatures: { [doc.server_name]: own } }
}

/** Why a key document was refused. */
export type KeyDocumentFaultCode =
  /** Not a key document: wrong types, missing fields, bad encodings, too deep or too large. */
  | 'bad_shape'
  /** `server_name` is not the server we asked. */
  | 'wrong_server'
  /** `valid_until_ts` is in the past. */
  | 'expired'
  /** One key id appears both in `verify_keys` and in `old_verify_keys`. */
  | 'reused_kid'
  /** A signature under the server's name names a key the document does not list. */
  | 'unknown_kid'
  /** A signature under the server's name does not verify. */
  | 'bad_signature'
  /** No signature by a current key (`verify_keys`). */
  | 'not_self_signed'

/** A refusal, with a one-line reason fit for logs. */
export interface KeyDocumentFault {
  readonly code: KeyDocumentFaultCode
  readonly message: string
}

/** A document that passed {@link verifyKeyDocument}. */
export interface VerifiedKeyDocument {
  readonly document: KeyDocument
  /** Key ids (current or old) whose signature over the document verified, sorted. */
  readonly signedBy: readonly string[]
}

/** What {@link verifyKeyDocument} checks against. */
export interface VerifyKeyDocumentOptions {
  /** The server whose document this must be. */
  readonly serverName: string
  /** Current time (ms); an injected clock, so tests need not sleep. */
  readonly now: number
  readonly verify: VerifyFunction
}

const fault = (code: KeyDocumentFaultCode, message: string) => err<KeyDocumentFault>({ code, message })

/**
 * Verifies an untrusted key document (the parsed JSON a peer served). Checks, in order: the shape
 * (schema, depth, canonical form), that it names `serverName`, that no key id is both current and
 * old, that `valid_until_ts` is not in the past, that every signature under the server's name is by
 * a listed key and verifies, and that at least one is by a current key. Signatures under other names
 * are ignored. Never throws on hostile input.
 */
export function verifyKeyDocument(
  value: unknown,
  options: VerifyKeyDocumentOptions,
): Result<VerifiedKeyDocument, KeyDocumentFault> {
  const parsed = validate(KeyDocumentSchema, value)
  if (!parsed.ok) return fault('bad_shape', parsed.error.message)
  const doc: KeyDocument = parsed.value
  const { signatures, ...unsigned } = doc
  const text = tryCanonicalJson(unsigned)
  if (text === null) return fault('bad_shape', 'document has no canonical JSON form')
  if (doc.server_name !== options.serverName) {
    return fault('wrong_server', `document is for ${doc.server_name}, not ${options.serverName}`)
  }
  for (const kid of Object.keys(doc.verify_keys)) {
    if (Object.hasOwn(doc.old_verify_keys, kid))
      return fault('reused_kid', `key id ${kid} is both current and old`)
  }
  if (doc.valid_until_ts < options.now) {
    return fault('expired', `document expired at ${doc.valid_until_ts}`)
  }
  const own = signatures[doc.server_name] ?? {}
  const message = concatBytes(utf8(SIGNING_DOMAIN.keys), utf8(text))
  const signedBy: string[] = []
  let byCurrent = false
  for (const [kid, sigB64] of Object.entries(own)) {
    const current = Object.hasOwn(doc.verify_keys, kid)
    const keyB64 = current
      ? doc.verify_keys[kid]
      : Object.hasOwn(doc.old_verify_keys, kid)
        ? doc.old_verify_keys[kid]!.key
        : undefined
    if (keyB64 === undefined)
      return fault('unknown_kid', `signature by ${kid}, which the document does not list`)
    // The schema checked both encodings, so neither decode fails.
    const key = fromBase64Url(keyB64)!
    const sig = fromBase64Url(sigB64)!
    if (!options.verify(key, message, sig))
      return fault('bad_signature', `signature by ${kid} does not verify`)
    signedBy.push(kid)
    byCurrent ||= current
  }
  if (!byCurrent) return fault('not_self_signed', 'no signature by a current key')
  return ok({ document: doc, signedBy: signedBy.sort() })
}

/** Every key a document lists, current (`expiredTs: null`) and old, as raw bytes. For a verified document. */
export function keyDocumentKeys(doc: KeyDocument): ServerKeyInfo[] {
  const keys: ServerKeyInfo[] = []
  for (const [kid, key] of Object.entries(doc.verify_keys)) {
    keys.push({ kid, publicKey: fromBase64Url(key)!, expiredTs: null })
  }
  for (const [kid, old] of Object.entries(doc.old_verify_keys)) {
    keys.push({ kid, publicKey: fromBase64Url(old.key)!, expiredTs: old.expired_ts })
  }
  return keys
}
