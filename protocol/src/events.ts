/**
 * Signed, sequenced events (DESIGN.md section 3).
 *
 * ```
 * header     = { v, room, type, state_key?, sender, origin, origin_ts, nonce, content_hash }
 * event_id   = "$" + b64url(BLAKE2b-256(canonical(header)))
 * origin_sig = Ed25519(origin key, "parley/event\0" || canonical(header))
 * envelope   = { room, seq, event_id, prev, owner_ts }       prev = b64url(BLAKE2b-256(canonical(previous envelope)))
 * owner_sig  = Ed25519(owner key, "parley/seq\0" || canonical(envelope))
 * ```
 * Content sits outside the signed bytes behind its hash, so a redaction can drop it and the event still
 * verifies. The owner signs the newest envelope of each committed batch; the chain covers the rest.
 */
import { canonicalJson, tryCanonicalJson, type JsonObject } from './canonical-json.ts'
import { blake2b256 } from './crypto/hash.ts'
import { concatBytes, pooledRandomBytes, toBase64Url, utf8 } from './encoding.ts'

/** Version of the event format. */
export const EVENT_VERSION = 1

/** Domain-separation prefixes: one key signs several kinds of bytes, never ambiguously. */
export const SIGNING_DOMAIN = {
  event: 'parley/event\0',
  seq: 'parley/seq\0',
  keys: 'parley/keys\0',
} as const

/** The signed part of an event. */
export interface EventHeader {
  readonly v: number
  readonly room: string
  readonly type: string
  readonly state_key?: string
  readonly sender: string
  readonly origin: string
  readonly origin_ts: number
  /** 128 random bits, base64url: two identical messages in one millisecond are still distinct events. */
  readonly nonce: string
  /** base64url(BLAKE2b-256(canonical(content))). */
  readonly content_hash: string
}

/** The owner's statement "this event is at `seq` in `room`, after `prev`". */
export interface Envelope {
  readonly room: string
  readonly seq: number
  readonly event_id: string
  /** base64url(BLAKE2b-256(canonical(previous envelope))), or {@link GENESIS_PREV} for seq 1. */
  readonly prev: string
  readonly owner_ts: number
}

/** `prev` of the first envelope of a room: 32 zero bytes. */
export const GENESIS_PREV = toBase64Url(new Uint8Array(32))

/** base64url BLAKE2b-256 of a canonical JSON value. */
export function canonicalHash(value: unknown): string {
  return hashCanonicalText(canonicalJson(value))
}

/** base64url BLAKE2b-256 of text that is already canonical JSON (hot paths serialise once). */
export function hashCanonicalText(canonicalText: string): string {
  return toBase64Url(blake2b256(canonicalText))
}

/** Hash of an event's content, as stored in its header. */
export function contentHash(content: JsonObject): string {
  return canonicalHash(content)
}

/** Input of {@link buildHeader}. */
export interface HeaderInput {
  readonly room: string
  readonly type: string
  readonly stateKey?: string | undefined
  readonly sender: string
  readonly origin: string
  readonly originTs: number
  readonly content: JsonObject
  /** `canonicalJson(content)`, when the caller already has it (saves re-serialising on the hot path). */
  readonly contentJson?: string | undefined
}

/** Builds a header with a fresh nonce. */
export function buildHeader(input: HeaderInput): EventHeader {
  const header: {
    -readonly [K in keyof EventHeader]: EventHeader[K]
  } = {
    v: EVENT_VERSION,
    room: input.room,
    type: input.type,
    sender: input.sender,
    origin: input.origin,
    origin_ts: input.originTs,
    nonce: toBase64Url(pooledRandomBytes(16)),
    content_hash:
      input.contentJson === undefined
        ? contentHash(input.content)
        : toBase64Url(blake2b256(input.contentJson)),
  }
  if (input.stateKey !== undefined) header.state_key = input.stateKey
  return header
}

/** The content-addressed id of an event. */
export function eventIdOf(header: EventHeader): string {
  return '$' + canonicalHash(header)
}

/** The event id for a header given as its canonical JSON text. */
export function eventIdOfCanonical(headerText: string): string {
  return '$' + hashCanonicalText(headerText)
}

/** The hash of an envelope, which the next envelope carries as `prev`. */
export function envelopeHash(envelope: Envelope): string {
  return canonicalHash(envelope)
}

/** Bytes the origin server signs for an event. */
export function eventSigningBytes(header: EventHeader): Uint8Array {
  return concatBytes(utf8(SIGNING_DOMAIN.event), utf8(canonicalJson(header)))
}

/** Bytes the owner signs for an envelope. */
export function envelopeSigningBytes(envelope: Envelope): Uint8Array {
  return concatBytes(utf8(SIGNING_DOMAIN.seq), utf8(canonicalJson(envelope)))
}

/** Why a chain of envelopes did not verify. */
export type ChainFault = 'bad_event_id' | 'bad_content_hash' | 'bad_seq' | 'bad_prev' | 'bad_room'

/** One link of a room log as a replica or auditor sees it. */
export interface ChainLink {
  readonly header: EventHeader
  /** `null` once redacted. */
  readonly content: JsonObject | null
  readonly envelope: Envelope
}

/**
 * Checks that `links` continue the chain after `prev` (hash of the envelope before them) at `prevSeq`:
 * consecutive seqs, matching prev hashes, event ids that hash their headers, content that matches
 * its hash unless redacted. Signatures are checked separately, on the last envelope of a batch.
 */
export function verifyChain(
  room: string,
  prevSeq: number,
  prev: string,
  links: readonly ChainLink[],
): { ok: true; head: string } | { ok: false; fault: ChainFault; index: number } {
  let expectedPrev = prev
  let expectedSeq = prevSeq + 1
  for (let i = 0; i < links.length; i++) {
    const { header, content, envelope } = links[i]!
    if (envelope.room !== room || header.room !== room) return { ok: false, fault: 'bad_room', index: i }
    if (envelope.seq !== expectedSeq) return { ok: false, fault: 'bad_seq', index: i }
    if (envelope.prev !== expectedPrev) return { ok: false, fault: 'bad_prev', index: i }
    // Untrusted links may hold values with no canonical form (floats, lone surrogates): a fault, not a throw.
    const headerText = tryCanonicalJson(header)
    if (headerText === null || eventIdOfCanonical(headerText) !== envelope.event_id) {
      return { ok: false, fault: 'bad_event_id', index: i }
    }
    if (content !== null) {
      const contentText = tryCanonicalJson(content)
      if (contentText === null || hashCanonicalText(contentText) !== header.content_hash) {
        return { ok: false, fault: 'bad_content_hash', index: i }
      }
    }
    const envelopeText = tryCanonicalJson(envelope)
    if (envelopeText === null) return { ok: false, fault: 'bad_seq', index: i }
    expectedPrev = hashCanonicalText(envelopeText)
    expectedSeq++
  }
  return { ok: true, head: expectedPrev }
}
