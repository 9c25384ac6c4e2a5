/**
 * FED-7 (TESTPLAN.md): signed events survive storage. Arbitrary content, any Unicode, any key order:
 * build the header, sign it as an origin would, store the event in a real SQLite file, load it back,
 * and the origin signature and content hash verify; any change to what was stored fails. Values with
 * no canonical form (floats, integers beyond 2^53, lone surrogates) are refused before anything is
 * signed, and duplicate keys cannot make a second reading of signed content verify.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fc, test } from '@fast-check/vitest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildHeader,
  canonicalJson,
  contentHash,
  eventIdOf,
  eventSigningBytes,
  hashCanonicalText,
  tryCanonicalJson,
  type JsonObject,
} from '@parley/protocol'
import { generateSeed, signerFromSeed, verifySignature } from '@parley/protocol/signing'
import { openDatabase, type Database } from '../src/db/database.ts'
import { Repos } from '../src/db/repos/index.ts'
import { headerOf } from '../src/services/event-log.ts'

const signer = signerFromSeed('ed25519:fed7', generateSeed())
const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.localhost'
let dir: string
let db: Database
let repos: Repos
let seq = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-fed7-'))
  db = openDatabase(join(dir, 'homeserver.db'))
  repos = new Repos(db)
})
afterAll(async () => {
  db.close()
  await rm(dir, { recursive: true, force: true })
})

/** JSON objects with a canonical form: integer numbers only, any Unicode in keys and strings. */
const content = fc
  .dictionary(fc.string({ unit: 'grapheme', maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 })
  .filter((value) => tryCanonicalJson(value) !== null) as fc.Arbitrary<JsonObject>

/** Stores a signed event built from `body` and returns what a verifier reads back from SQLite. */
function storeAndLoad(body: JsonObject) {
  const header = buildHeader({
    room: ROOM,
    type: 'm.message',
    sender: '@alice:acme.localhost',
    origin: 'acme.localhost',
    originTs: 1_700_000_000_000,
    content: body,
  })
  const sig = signer.sign(eventSigningBytes(header))
  const eventId = eventIdOf(header)
  seq++
  repos.events.insert({
    stream_pos: seq,
    room_id: ROOM,
    seq,
    event_id: eventId,
    type: header.type,
    state_key: null,
    sender: header.sender,
    origin_ts: header.origin_ts,
    v: header.v,
    origin: header.origin,
    nonce: header.nonce,
    content_hash: header.content_hash,
    prev: hashCanonicalText('"prev"'),
    owner_ts: header.origin_ts,
    content: canonicalJson(body),
    relates_to: null,
    origin_kid: signer.kid,
    origin_sig: Buffer.from(sig).toString('base64url'),
  })
  const row = repos.events.get(eventId)!
  return { row, sig: Buffer.from(row.origin_sig!, 'base64url') }
}

describe('FED-7: canonical JSON signing through SQLite', () => {
  test.prop([content], { numRuns: 300 })('sign -> store -> load -> verify, for any content', (body) => {
    const { row, sig } = storeAndLoad(body)
    const loaded = headerOf(row)
    expect(eventIdOf(loaded)).toBe(row.event_id)
    expect(verifySignature(signer.publicKey, eventSigningBytes(loaded), sig)).toBe(true)
    expect(contentHash(JSON.parse(row.content!) as JsonObject)).toBe(loaded.content_hash)
  })

  test.prop([content, fc.nat(), fc.integer({ min: 1, max: 0xffff })], { numRuns: 300 })(
    'any change to the stored header or content fails verification',
    (body, at, delta) => {
      const { row, sig } = storeAndLoad(body)
      // A changed header field: the signature no longer verifies.
      const header = { ...headerOf(row), origin_ts: row.origin_ts + 1 }
      expect(verifySignature(signer.publicKey, eventSigningBytes(header), sig)).toBe(false)
      // A changed content character (kept valid JSON by changing inside a string or a key): the hash differs.
      const text = row.content!
      const quotes = [...text.matchAll(/"/g)].map((m) => m.index)
      if (quotes.length < 2) return
      const start = quotes[(at % (quotes.length / 2)) * 2]! + 1
      const end = quotes[(at % (quotes.length / 2)) * 2 + 1]!
      if (end === start) return
      const i = start + (at % (end - start))
      const changed = String.fromCharCode((text.charCodeAt(i) + delta) % 0xd800 || 0x41)
      if (changed === '"' || changed === '\\' || changed < ' ' || changed === text[i]) return
      const mutated = text.slice(0, i) + changed + text.slice(i + 1)
      let parsed: unknown
      try {
        parsed = JSON.parse(mutated)
      } catch {
        return
      }
      const canonical = tryCanonicalJson(parsed)
      if (canonical === null || canonical === text) return
      expect(hashCanonicalText(canonical)).not.toBe(row.content_hash)
    },
  )

  it('refuses values with no canonical form before anything is signed', () => {
    for (const bad of [{ n: 1.5 }, { n: 2 ** 53 }, { n: -(2 ** 53) }, { s: '\ud800' }, { n: Number.NaN }]) {
      expect(() =>
        buildHeader({
          room: ROOM,
          type: 'm.message',
          sender: '@alice:acme.localhost',
          origin: 'acme.localhost',
          originTs: 1,
          content: bad as unknown as JsonObject,
        }),
      ).toThrow()
    }
  })

  it('duplicate keys cannot give signed content a second reading', () => {
    const signedBody = { body: 'pay alice' }
    const header = buildHeader({
      room: ROOM,
      type: 'm.message',
      sender: '@alice:acme.localhost',
      origin: 'acme.localhost',
      originTs: 1,
      content: signedBody,
    })
    // The same bytes plus a duplicate key: JSON.parse keeps the last value, whose hash is not the signed one.
    const reread = JSON.parse('{"body":"pay alice","body":"pay mallory"}') as JsonObject
    expect(contentHash(reread)).not.toBe(header.content_hash)
  })
})
