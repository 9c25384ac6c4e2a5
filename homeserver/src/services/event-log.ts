/**
 * The signed form of stored events. Rows keep the header's and envelope's fields as columns; these
 * rebuild the exact objects (canonical JSON is deterministic), for verification and federation.
 */
import type { ChainLink, Envelope, EventHeader, JsonObject } from '@parley/protocol'
import type { ClientEventRow, EventRow } from '../db/repos/index.ts'

/** The header the origin signed (and whose hash is the event id). */
export function headerOf(row: EventRow): EventHeader {
  const header: { -readonly [K in keyof EventHeader]: EventHeader[K] } = {
    v: row.v,
    room: row.room_id,
    type: row.type,
    sender: row.sender,
    origin: row.origin,
    origin_ts: row.origin_ts,
    nonce: row.nonce,
    content_hash: row.content_hash,
  }
  if (row.state_key !== null) header.state_key = row.state_key
  return header
}

/** The owner's envelope: the event's place in the room's hash chain. */
export function envelopeOf(row: EventRow): Envelope {
  return { room: row.room_id, seq: row.seq, event_id: row.event_id, prev: row.prev, owner_ts: row.owner_ts }
}

/** A verifiable link of the room log (content `null` once redacted). */
export function chainLinkOf(row: EventRow): ChainLink {
  return {
    header: headerOf(row),
    content: row.content === null ? null : (JSON.parse(row.content) as JsonObject),
    envelope: envelopeOf(row),
  }
}

/** What a stored event is made of: its signed parts, where it sits in our stream, and its extras. */
export interface SignedEventParts {
  readonly stream: number
  readonly header: EventHeader
  readonly envelope: Envelope
  /** Canonical JSON of the content, or null once redacted. */
  readonly contentJson: string | null
  readonly relatesTo: string | null
  readonly originSig: { readonly kid: string; readonly sig: string } | null
}

/** The row to insert for an event (the inverse of headerOf / envelopeOf). */
export function eventRowOf(p: SignedEventParts): Omit<EventRow, 'owner_sig' | 'owner_kid' | 'redacted_by'> {
  const { header, envelope } = p
  return {
    stream_pos: p.stream,
    room_id: envelope.room,
    seq: envelope.seq,
    event_id: envelope.event_id,
    type: header.type,
    state_key: header.state_key ?? null,
    sender: header.sender,
    origin_ts: header.origin_ts,
    v: header.v,
    origin: header.origin,
    nonce: header.nonce,
    content_hash: header.content_hash,
    prev: envelope.prev,
    owner_ts: envelope.owner_ts,
    content: p.contentJson,
    relates_to: p.relatesTo,
    origin_kid: p.originSig?.kid ?? null,
    origin_sig: p.originSig?.sig ?? null,
  }
}

/** The client-facing columns of a stored event (what fan-out and sync deliver). */
export function clientRowOf(
  row: Pick<EventRow, Exclude<keyof ClientEventRow, 'redacted_by'>>,
  redactedBy: string | null = null,
): ClientEventRow & { content: string } {
  return {
    stream_pos: row.stream_pos,
    room_id: row.room_id,
    seq: row.seq,
    event_id: row.event_id,
    type: row.type,
    state_key: row.state_key,
    sender: row.sender,
    origin_ts: row.origin_ts,
    content: row.content ?? '{}',
    redacted_by: redactedBy,
  }
}
