import { blake2b } from '@noble/hashes/blake2.js'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { CanonicalJsonError, canonicalJson, type JsonObject } from './canonical-json.ts'
import { sodiumReady } from './crypto/sodium.ts'
import { toBase64Url, utf8 } from './encoding.ts'
import {
  EVENT_VERSION,
  GENESIS_PREV,
  SIGNING_DOMAIN,
  buildHeader,
  canonicalHash,
  contentHash,
  envelopeHash,
  envelopeSigningBytes,
  eventIdOf,
  eventSigningBytes,
  verifyChain,
  type ChainLink,
  type Envelope,
  type EventHeader,
  type HeaderInput,
} from './events.ts'
import { isEventId } from './ids.ts'
import { signerFromSeed, verifySignature } from './signing.ts'

const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
const OTHER_ROOM = '!BBBBBBBBBBBBBBBBBBBBBB:acme.example'
const T0 = 1_700_000_000_000

/** An independent BLAKE2b-256 (noble, not libsodium) as the oracle for the hashes. */
const oracleHash = (text: string): string => toBase64Url(blake2b(utf8(text), { dkLen: 32 }))

function input(overrides: Partial<HeaderInput> = {}): HeaderInput {
  return {
    room: ROOM,
    type: 'm.message',
    sender: '@alice:acme.example',
    origin: 'acme.example',
    originTs: T0,
    content: { body: 'hello' },
    ...overrides,
  }
}

/** A fixed header (fixed nonce), so ids can be compared across calls. Built once libsodium is ready. */
let fixedHeader: EventHeader

/** A room log of `n` links built the way the owner builds it. */
function buildChain(n: number, room = ROOM): ChainLink[] {
  const links: ChainLink[] = []
  let prev = GENESIS_PREV
  for (let seq = 1; seq <= n; seq++) {
    const content: JsonObject = { body: `message ${seq}` }
    const header = buildHeader(input({ room, originTs: T0 + seq, content }))
    const envelope: Envelope = { room, seq, event_id: eventIdOf(header), prev, owner_ts: T0 + seq + 1 }
    links.push({ header, content, envelope })
    prev = envelopeHash(envelope)
  }
  return links
}

/** A copy of `links` with link `i` replaced by `change(link)`. */
function tamper(links: readonly ChainLink[], i: number, change: (link: ChainLink) => ChainLink): ChainLink[] {
  return links.map((link, j) => (j === i ? change(link) : link))
}

beforeAll(async () => {
  await sodiumReady()
  fixedHeader = { ...buildHeader(input()), nonce: 'AAAAAAAAAAAAAAAAAAAAAA' }
})

describe('hashes', () => {
  it('sets GENESIS_PREV to 32 zero bytes', () => {
    expect(GENESIS_PREV).toBe('A'.repeat(43))
  })

  it('hashes content as base64url BLAKE2b-256 of its canonical JSON', () => {
    const content = { body: 'hello', format: 'plain' }
    expect(contentHash(content)).toBe(oracleHash('{"body":"hello","format":"plain"}'))
    expect(contentHash({})).toBe(oracleHash('{}'))
    expect(canonicalHash([1, 'a'])).toBe(oracleHash('[1,"a"]'))
  })

  it('hashes content independently of key order', () => {
    expect(contentHash({ b: 1, a: { d: 2, c: 3 } })).toBe(contentHash({ a: { c: 3, d: 2 }, b: 1 }))
  })

  it('changes the content hash when a value changes', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ unit: 'binary-ascii' }), fc.string()),
        fc.string(),
        (content, extra) => {
          const changed = { ...content, extra: (content['extra'] ?? '') + extra + '!' }
          expect(contentHash(changed)).not.toBe(contentHash(content))
        },
      ),
      { numRuns: 100 },
    )
  })

  it('throws on content without a canonical form (a caller bug)', () => {
    expect(() => contentHash({ n: 1.5 })).toThrow(CanonicalJsonError)
  })
})

describe('buildHeader and eventIdOf', () => {
  it('builds a version-1 header with every field of the input', () => {
    const header = buildHeader(input())
    expect(header).toEqual({
      v: EVENT_VERSION,
      room: ROOM,
      type: 'm.message',
      sender: '@alice:acme.example',
      origin: 'acme.example',
      origin_ts: T0,
      nonce: header.nonce,
      content_hash: contentHash({ body: 'hello' }),
    })
    expect(EVENT_VERSION).toBe(1)
    expect(header.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/)
  })

  it('omits state_key when absent and keeps it when empty', () => {
    expect(Object.hasOwn(buildHeader(input()), 'state_key')).toBe(false)
    expect(Object.hasOwn(buildHeader(input({ stateKey: undefined })), 'state_key')).toBe(false)
    expect(buildHeader(input({ stateKey: '' })).state_key).toBe('')
    expect(buildHeader(input({ stateKey: '@bob:acme.example' })).state_key).toBe('@bob:acme.example')
  })

  it('draws a fresh nonce, so identical inputs give distinct events', () => {
    const a = buildHeader(input())
    const b = buildHeader(input())
    expect(a.content_hash).toBe(b.content_hash)
    expect(a.nonce).not.toBe(b.nonce)
    expect(eventIdOf(a)).not.toBe(eventIdOf(b))
  })

  it('derives the id as "$" + base64url BLAKE2b-256 of the canonical header', () => {
    const id = eventIdOf(fixedHeader)
    expect(id).toBe('$' + oracleHash(canonicalJson(fixedHeader)))
    expect(isEventId(id)).toBe(true)
  })

  it('is deterministic and independent of key order', () => {
    const reversed = Object.fromEntries(Object.entries(fixedHeader).reverse()) as unknown as EventHeader
    expect(eventIdOf(fixedHeader)).toBe(eventIdOf({ ...fixedHeader }))
    expect(eventIdOf(reversed)).toBe(eventIdOf(fixedHeader))
  })

  const changes: ReadonlyArray<readonly [string, (h: EventHeader) => EventHeader]> = [
    ['v', (h) => ({ ...h, v: h.v + 1 })],
    ['room', (h) => ({ ...h, room: OTHER_ROOM })],
    ['type', (h) => ({ ...h, type: 'm.edit' })],
    ['sender', (h) => ({ ...h, sender: '@mallory:acme.example' })],
    ['origin', (h) => ({ ...h, origin: 'evil.example' })],
    ['origin_ts', (h) => ({ ...h, origin_ts: h.origin_ts + 1 })],
    ['nonce', (h) => ({ ...h, nonce: 'AAAAAAAAAAAAAAAAAAAAAQ' })],
    ['content_hash', (h) => ({ ...h, content_hash: contentHash({ body: 'bye' }) })],
    ['state_key added', (h) => ({ ...h, state_key: '' })],
  ]

  it.each(changes)('changes the id when %s changes', (_field, change) => {
    expect(eventIdOf(change(fixedHeader))).not.toBe(eventIdOf(fixedHeader))
  })

  it('changes the id when state_key changes or is removed', () => {
    const withKey: EventHeader = { ...fixedHeader, state_key: '@bob:acme.example' }
    const { state_key: _removed, ...withoutKey } = withKey
    expect(eventIdOf({ ...withKey, state_key: '@carol:acme.example' })).not.toBe(eventIdOf(withKey))
    expect(eventIdOf(withoutKey)).not.toBe(eventIdOf(withKey))
  })
})

describe('signing bytes', () => {
  let envelope: Envelope
  beforeAll(() => {
    envelope = { room: ROOM, seq: 1, event_id: eventIdOf(fixedHeader), prev: GENESIS_PREV, owner_ts: T0 }
  })

  it('uses NUL-terminated domain prefixes, none a prefix of another', () => {
    expect(SIGNING_DOMAIN).toEqual({ event: 'parley/event\0', seq: 'parley/seq\0', keys: 'parley/keys\0' })
    const prefixes = Object.values(SIGNING_DOMAIN)
    for (const a of prefixes) for (const b of prefixes) if (a !== b) expect(b.startsWith(a)).toBe(false)
  })

  it('signs an event as the event prefix followed by its canonical header', () => {
    expect(eventSigningBytes(fixedHeader)).toEqual(utf8('parley/event\0' + canonicalJson(fixedHeader)))
  })

  it('signs an envelope as the seq prefix followed by its canonical envelope', () => {
    expect(envelopeSigningBytes(envelope)).toEqual(utf8('parley/seq\0' + canonicalJson(envelope)))
  })

  it('never lets an event signature pass as an envelope signature', () => {
    const signer = signerFromSeed('ed25519:test', new Uint8Array(32).fill(7))
    const eventBytes = eventSigningBytes(fixedHeader)
    const envelopeBytes = envelopeSigningBytes(envelope)
    expect(eventBytes).not.toEqual(envelopeBytes)
    const sig = signer.sign(eventBytes)
    expect(verifySignature(signer.publicKey, eventBytes, sig)).toBe(true)
    expect(verifySignature(signer.publicKey, envelopeBytes, sig)).toBe(false)
  })

  it('throws on a header without a canonical form (a caller bug)', () => {
    expect(() => eventSigningBytes({ ...fixedHeader, origin_ts: 1.5 })).toThrow(CanonicalJsonError)
  })
})

describe('verifyChain', () => {
  let chain: ChainLink[]
  let head: string
  beforeAll(() => {
    chain = buildChain(20)
    head = envelopeHash(chain[19]!.envelope)
  })

  it('verifies a chain of 20 links from genesis and returns the hash of the last envelope', () => {
    expect(verifyChain(ROOM, 0, GENESIS_PREV, chain)).toEqual({ ok: true, head })
  })

  it('verifies any suffix given the envelope before it', () => {
    for (const start of [1, 10, 19]) {
      const prev = envelopeHash(chain[start - 1]!.envelope)
      expect(verifyChain(ROOM, start, prev, chain.slice(start))).toEqual({ ok: true, head })
    }
  })

  it('verifies an empty batch, returning the prev it was given', () => {
    expect(verifyChain(ROOM, 20, head, [])).toEqual({ ok: true, head })
  })

  it('still verifies after content is redacted', () => {
    const redacted = tamper(chain, 7, (link) => ({ ...link, content: null }))
    expect(verifyChain(ROOM, 0, GENESIS_PREV, redacted)).toEqual({ ok: true, head })
    const allRedacted = chain.map((link) => ({ ...link, content: null }))
    expect(verifyChain(ROOM, 0, GENESIS_PREV, allRedacted)).toEqual({ ok: true, head })
  })

  const faults: ReadonlyArray<
    readonly [string, (links: readonly ChainLink[]) => ChainLink[], string, number]
  > = [
    [
      'flipped content',
      (links) => tamper(links, 7, (l) => ({ ...l, content: { body: 'message 8!' } })),
      'bad_content_hash',
      7,
    ],
    [
      'content with an extra key',
      (links) => tamper(links, 0, (l) => ({ ...l, content: { ...l.content, x: 1 } })),
      'bad_content_hash',
      0,
    ],
    [
      'a wrong seq',
      (links) => tamper(links, 7, (l) => ({ ...l, envelope: { ...l.envelope, seq: l.envelope.seq + 1 } })),
      'bad_seq',
      7,
    ],
    [
      'a wrong prev',
      (links) => tamper(links, 7, (l) => ({ ...l, envelope: { ...l.envelope, prev: GENESIS_PREV } })),
      'bad_prev',
      7,
    ],
    ['a dropped link', (links) => links.filter((_, i) => i !== 7), 'bad_seq', 7],
    ['a duplicated link', (links) => [...links.slice(0, 8), links[7]!, ...links.slice(8)], 'bad_seq', 8],
    [
      'two links swapped',
      (links) => {
        const swapped = [...links]
        ;[swapped[7], swapped[8]] = [swapped[8]!, swapped[7]!]
        return swapped
      },
      'bad_seq',
      7,
    ],
    [
      'a changed header',
      (links) =>
        tamper(links, 7, (l) => ({ ...l, header: { ...l.header, origin_ts: l.header.origin_ts + 1 } })),
      'bad_event_id',
      7,
    ],
    [
      'a header swapped with its content for another event',
      (links) => tamper(links, 7, (l) => ({ ...l, header: links[8]!.header, content: links[8]!.content })),
      'bad_event_id',
      7,
    ],
    [
      'a changed owner_ts, which breaks the next prev',
      (links) =>
        tamper(links, 7, (l) => ({ ...l, envelope: { ...l.envelope, owner_ts: l.envelope.owner_ts + 1 } })),
      'bad_prev',
      8,
    ],
    [
      'an envelope moved to another room',
      (links) => tamper(links, 7, (l) => ({ ...l, envelope: { ...l.envelope, room: OTHER_ROOM } })),
      'bad_room',
      7,
    ],
    [
      'a header from another room',
      (links) => tamper(links, 7, (l) => ({ ...l, header: { ...l.header, room: OTHER_ROOM } })),
      'bad_room',
      7,
    ],
  ]

  it.each(faults)('reports %s', (_name, change, fault, index) => {
    expect(verifyChain(ROOM, 0, GENESIS_PREV, change(chain))).toEqual({ ok: false, fault, index })
  })

  it('reports a batch that does not start right after prevSeq', () => {
    expect(verifyChain(ROOM, 1, GENESIS_PREV, chain)).toEqual({ ok: false, fault: 'bad_seq', index: 0 })
  })

  it('reports a batch that does not continue the given prev', () => {
    expect(verifyChain(ROOM, 0, head, chain)).toEqual({ ok: false, fault: 'bad_prev', index: 0 })
  })

  it('reports a whole chain checked against the wrong room', () => {
    expect(verifyChain(OTHER_ROOM, 0, GENESIS_PREV, chain)).toEqual({
      ok: false,
      fault: 'bad_room',
      index: 0,
    })
  })

  it('rejects a chain rebuilt in another room', () => {
    const other = buildChain(3, OTHER_ROOM)
    expect(verifyChain(OTHER_ROOM, 0, GENESIS_PREV, other).ok).toBe(true)
    expect(verifyChain(ROOM, 0, GENESIS_PREV, other)).toEqual({ ok: false, fault: 'bad_room', index: 0 })
  })

  it('detects a changed seq or owner_ts on any link', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 19 }), fc.integer({ min: 1, max: 2 ** 31 }), (i, delta) => {
        const reseq = tamper(chain, i, (l) => ({
          ...l,
          envelope: { ...l.envelope, seq: l.envelope.seq + delta },
        }))
        expect(verifyChain(ROOM, 0, GENESIS_PREV, reseq)).toEqual({ ok: false, fault: 'bad_seq', index: i })
        const retime = tamper(chain, i, (l) => ({
          ...l,
          envelope: { ...l.envelope, owner_ts: l.envelope.owner_ts + delta },
        }))
        const result = verifyChain(ROOM, 0, GENESIS_PREV, retime)
        if (i === 19) expect(result.ok && result.head).not.toBe(head)
        else expect(result).toEqual({ ok: false, fault: 'bad_prev', index: i + 1 })
      }),
      { numRuns: 50 },
    )
  })
})

describe('verifyChain on untrusted links', () => {
  it('reports a fault instead of throwing for values with no canonical form', async () => {
    await sodiumReady()
    const room = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
    const header = buildHeader({
      room,
      type: 'm.message',
      sender: '@a:acme.example',
      origin: 'acme.example',
      originTs: 1,
      content: { body: 'x' },
    })
    const envelope = { room, seq: 1, event_id: eventIdOf(header), prev: GENESIS_PREV, owner_ts: 1 }
    const floatHeader = { ...header, origin_ts: 1.5 }
    expect(
      verifyChain(room, 0, GENESIS_PREV, [{ header: floatHeader, content: { body: 'x' }, envelope }]),
    ).toMatchObject({ ok: false, fault: 'bad_event_id' })
    expect(verifyChain(room, 0, GENESIS_PREV, [{ header, content: { body: 1.5 }, envelope }])).toMatchObject({
      ok: false,
      fault: 'bad_content_hash',
    })
  })
})
