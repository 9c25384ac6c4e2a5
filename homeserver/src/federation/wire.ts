/** Stored events in their federation form (docs/federation.md, "Event format"). */
import { envelopeSigningBytes, toBase64Url } from '@parley/protocol'
import type { KeyedSignature, ReplicatedEvent } from '@parley/protocol/federation'
import type { Signer } from '@parley/protocol/signing'
import type { EventRow } from '../db/repos/index.ts'
import { chainLinkOf, envelopeOf } from '../services/event-log.ts'

/** One stored event as it travels between servers. */
export function replicatedEventOf(row: EventRow): ReplicatedEvent {
  // The same header, content and envelope a local verifier reads (event-log.ts).
  const link = chainLinkOf(row)
  const item: ReplicatedEvent = {
    header: link.header as ReplicatedEvent['header'],
    content: link.content,
    envelope: link.envelope,
  }
  if (row.origin_kid !== null && row.origin_sig !== null)
    item.origin_sig = { kid: row.origin_kid, sig: row.origin_sig }
  if (row.redacted_by !== null) item.redacted_by = row.redacted_by
  if (row.content === null && row.relates_to !== null) item.relates_to = row.relates_to
  return item
}

/**
 * The owner's signature over a row's envelope: the stored one (the newest event of each committed batch
 * has one), else a fresh one. A frame's last event needs one; the chain covers the rest.
 */
export function ownerSignatureOf(row: EventRow, signer: Signer): KeyedSignature {
  if (row.owner_sig !== null && row.owner_kid !== null) return { kid: row.owner_kid, sig: row.owner_sig }
  return { kid: signer.kid, sig: toBase64Url(signer.sign(envelopeSigningBytes(envelopeOf(row)))) }
}
