/**
 * The room log is verifiable from the database alone (DESIGN.md section 3): event ids hash their
 * headers, contents match their hashes (unless redacted), envelopes chain from genesis, and the
 * owner's signature on the newest envelope of each committed batch verifies with the server key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  envelopeSigningBytes,
  fromBase64Url,
  GENESIS_PREV,
  verifyChain,
  type ChainLink,
} from '@parley/protocol'
import { verifySignature } from '@parley/protocol/signing'
import type { EventRow } from '../src/db/repos/index.ts'
import { chainLinkOf, envelopeOf } from '../src/services/event-log.ts'
import { connect, groupWith, register, sendText, startTestServer, type TestServer } from './helpers.ts'

let hs: TestServer
beforeAll(async () => {
  hs = await startTestServer()
})
afterAll(() => hs.stop())

function roomLog(room: string): EventRow[] {
  return hs.services.repos.db
    .prepare('SELECT * FROM events WHERE room_id = ? ORDER BY seq')
    .all(room) as EventRow[]
}

describe('stored room log', () => {
  it('verifies end to end, including after a redaction, and every batch tail carries a valid owner signature', async () => {
    const [alice, bob] = await Promise.all([register(hs), register(hs)])
    const room = await groupWith(hs, alice, [bob])
    const a = await connect(hs, alice)
    // Pipelined sends land in shared batches; awaited ones in batches of their own.
    const sends = Array.from({ length: 40 }, (_, i) => sendText(a, room, `pipelined ${i}`))
    const sent = await Promise.all(sends)
    for (let i = 0; i < 5; i++) await sendText(a, room, `one at a time ${i}`)
    a.send({
      type: 'send',
      txn_id: 'redact1',
      room,
      event_type: 'm.redaction',
      content: { target: sent[3]!.event_id },
    })
    await a.next((f) => f.type === 'sent' && f.txn_id === 'redact1')
    a.close()

    const rows = roomLog(room)
    const links: ChainLink[] = rows.map(chainLinkOf)
    expect(links.some((l) => l.content === null)).toBe(true)
    expect(verifyChain(room, 0, GENESIS_PREV, links)).toMatchObject({ ok: true })

    const signed = rows.filter((r) => r.owner_sig !== null)
    expect(signed.length).toBeGreaterThan(0)
    expect(signed.length).toBeLessThan(rows.length) // pipelined sends shared signatures
    expect(rows.at(-1)!.owner_sig).not.toBeNull() // the head is always signed
    for (const r of signed) {
      const envelope = envelopeOf(r)
      expect(
        verifySignature(
          hs.services.signer.publicKey,
          envelopeSigningBytes(envelope),
          fromBase64Url(r.owner_sig!)!,
        ),
      ).toBe(true)
    }
  })

  it('detects tampering: a changed body breaks the chain at that event', async () => {
    const [alice] = await Promise.all([register(hs)])
    const room = await groupWith(hs, alice, [])
    const a = await connect(hs, alice)
    await sendText(a, room, 'original')
    a.close()
    const links: ChainLink[] = roomLog(room).map(chainLinkOf)
    const last = links.at(-1)!
    ;(last.content as { body: string }).body = 'forged'
    expect(verifyChain(room, 0, GENESIS_PREV, links)).toMatchObject({
      ok: false,
      fault: 'bad_content_hash',
      index: links.length - 1,
    })
  })
})
