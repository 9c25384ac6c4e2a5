/**
 * The signed form of stored events. Rows keep the header's and envelope's fields as columns; these
 * rebuild the exact objects (canonical JSON is deterministic), for verification and federation.
 */
import type { ChainLink, Envelope, EventHeader, JsonObject } from '@parley/protocol'
import type { EventRow } from '../db/repos/index.ts'

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
