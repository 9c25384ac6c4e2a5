import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalJson } from './canonical-json.ts'
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from './encoding.ts'
import { SIGNING_DOMAIN } from './events.ts'
import { isKeyId, newKeyId } from './ids.ts'
import {
  buildKeyDocument,
  keyDocumentKeys,
  keyDocumentSigningBytes,
  signKeyDocument,
  verifyKeyDocument,
  type KeyDocument,
  type KeyDocumentFaultCode,
  type VerifyFunction,
} from './key-document.ts'
import { signerFromSeed, verifySignature, type Signer } from './signing.ts'

const SERVER = 'beta.example'
const NOW = 1_700_000_000_000
const LINK = 'wss://beta.example/api/v1/federation'
const seed = (n: number) => new Uint8Array(32).fill(n)
const oldKey = signerFromSeed('ed25519:old1', seed(1))
const current = signerFromSeed('ed25519:cur2', seed(2))
const stranger = signerFromSeed('ed25519:cur2', seed(9))
const options = { serverName: SERVER, now: NOW, verify: verifySignature }

/** A document listing `current` as the current key and `oldKey` as retired at NOW - 1000. */
function rotatedDocument(signers: readonly Signer[] = [current, oldKey], validUntilTs = NOW + 3600_000) {
  return buildKeyDocument(
    {
      serverName: SERVER,
      link: LINK,
      keys: [
        { kid: oldKey.kid, publicKey: oldKey.publicKey, expiredTs: NOW - 1000 },
        { kid: current.kid, publicKey: current.publicKey, expiredTs: null },
      ],
      validUntilTs,
    },
    signers,
  )
}

/** A deep copy as plain JSON (what a peer receives). */
const wire = (doc: unknown): Record<string, unknown> =>
  JSON.parse(JSON.stringify(doc)) as Record<string, unknown>

/** Flips the lowest bit of the first byte of a base64url value. */
function flipB64(text: string): string {
  const bytes = fromBase64Url(text)!
  bytes[0]! ^= 1
  return toBase64Url(bytes)
}

function expectFault(value: unknown, code: KeyDocumentFaultCode, opts = options) {
  const result = verifyKeyDocument(value, opts)
  expect(result.ok, JSON.stringify(result)).toBe(false)
  if (!result.ok) expect(result.error.code).toBe(code)
}

describe('buildKeyDocument and verifyKeyDocument', () => {
  it('builds the documented shape, signed by every signer under the server name', () => {
    const doc = rotatedDocument()
    expect(doc).toEqual({
      server_name: SERVER,
      link: LINK,
      verify_keys: { [current.kid]: toBase64Url(current.publicKey) },
      old_verify_keys: { [oldKey.kid]: { key: toBase64Url(oldKey.publicKey), expired_ts: NOW - 1000 } },
      valid_until_ts: NOW + 3600_000,
      signatures: { [SERVER]: { [current.kid]: expect.any(String), [oldKey.kid]: expect.any(String) } },
    })
  })

  it('signs the domain-separated canonical JSON of the document without signatures', () => {
    const doc = rotatedDocument([current])
    const { signatures: _s, ...unsigned } = doc
    const message = concatBytes(utf8(SIGNING_DOMAIN.keys), utf8(canonicalJson(unsigned)))
    expect(keyDocumentSigningBytes(doc)).toEqual(message)
    expect(keyDocumentSigningBytes(unsigned)).toEqual(message)
    const sig = fromBase64Url(doc.signatures[SERVER]![current.kid]!)!
    expect(verifySignature(current.publicKey, message, sig)).toBe(true)
    // Without the domain prefix the same signature is worthless (no cross-protocol reuse).
    expect(verifySignature(current.publicKey, utf8(canonicalJson(unsigned)), sig)).toBe(false)
  })

  it('verifies a document that went over the wire, reporting which keys signed it', () => {
    const result = verifyKeyDocument(wire(rotatedDocument()), options)
    expect(result).toMatchObject({ ok: true, value: { signedBy: [current.kid, oldKey.kid].sort() } })
  })

  it('verifies a document signed by its current key alone', () => {
    expect(verifyKeyDocument(wire(rotatedDocument([current])), options)).toMatchObject({
      ok: true,
      value: { signedBy: [current.kid] },
    })
  })

  it('accepts a document whose valid_until_ts is exactly now', () => {
    expect(verifyKeyDocument(wire(rotatedDocument([current], NOW)), options).ok).toBe(true)
  })

  it('keeps unknown top-level fields and covers them by the signature', () => {
    const { signatures: _s, ...unsigned } = rotatedDocument([current])
    const doc = signKeyDocument({ ...unsigned, motd: 'hello' }, [current])
    const result = verifyKeyDocument(wire(doc), options)
    expect(result).toMatchObject({ ok: true, value: { document: { motd: 'hello' } } })
    expectFault({ ...wire(doc), motd: 'changed' }, 'bad_signature')
  })

  it('ignores signatures under other server names (notaries, later)', () => {
    const doc = wire(rotatedDocument([current]))
    doc.signatures = {
      ...(doc.signatures as object),
      'notary.example': { 'ed25519:n': 'A'.repeat(85) + 'A' },
    }
    expect(verifyKeyDocument(doc, options).ok).toBe(true)
  })

  it('lists every key with its expiry', () => {
    const keys = keyDocumentKeys(rotatedDocument())
    expect(keys).toEqual([
      { kid: current.kid, publicKey: current.publicKey, expiredTs: null },
      { kid: oldKey.kid, publicKey: oldKey.publicKey, expiredTs: NOW - 1000 },
    ])
  })
})

describe('verifyKeyDocument refuses tampered documents', () => {
  const good = () => wire(rotatedDocument())
  const sigs = (doc: Record<string, unknown>) =>
    (doc.signatures as Record<string, Record<string, string>>)[SERVER]!

  it.each<[string, (doc: Record<string, unknown>) => unknown, KeyDocumentFaultCode]>([
    [
      'a flipped bit in the current key signature',
      (d) => (sigs(d)[current.kid] = flipB64(sigs(d)[current.kid]!)),
      'bad_signature',
    ],
    [
      'a flipped bit in the old key signature',
      (d) => (sigs(d)[oldKey.kid] = flipB64(sigs(d)[oldKey.kid]!)),
      'bad_signature',
    ],
    [
      'a flipped bit in the current public key',
      (d) => {
        const keys = d.verify_keys as Record<string, string>
        keys[current.kid] = flipB64(keys[current.kid]!)
      },
      'bad_signature',
    ],
    ['a changed link', (d) => (d.link = 'wss://evil.example/api/v1/federation'), 'bad_signature'],
    ['a later valid_until_ts', (d) => (d.valid_until_ts = NOW + 7200_000), 'bad_signature'],
    [
      'a changed expiry of an old key',
      (d) => ((d.old_verify_keys as Record<string, { expired_ts: number }>)[oldKey.kid]!.expired_ts = NOW),
      'bad_signature',
    ],
    [
      'an added field',
      (d) => {
        d.extra = true
      },
      'bad_signature',
    ],
    [
      'a current key swapped for a stranger with the same kid',
      (d) => ((d.verify_keys as Record<string, string>)[current.kid] = toBase64Url(stranger.publicKey)),
      'bad_signature',
    ],
    [
      'a signature by a key id the document does not list',
      (d) => (sigs(d)['ed25519:ghost'] = sigs(d)[current.kid]!),
      'unknown_kid',
    ],
    [
      'only the old key signing',
      (d) => {
        delete sigs(d)[current.kid]
      },
      'not_self_signed',
    ],
    [
      'no signatures under the server name',
      (d) => (d.signatures = { 'other.example': sigs(d) }),
      'not_self_signed',
    ],
    ['an empty signatures object', (d) => (d.signatures = {}), 'not_self_signed'],
  ])('%s', (_name, tamper, code) => {
    const doc = good()
    tamper(doc)
    expectFault(doc, code)
  })

  it('refuses a document for another server name', () => {
    expectFault(good(), 'wrong_server', { ...options, serverName: 'alpha.example' })
  })

  it('refuses a document whose valid_until_ts has passed', () => {
    expectFault(wire(rotatedDocument(undefined, NOW - 1)), 'expired')
  })

  it('refuses a key id that is both current and old, even when correctly signed', () => {
    const { signatures: _s, ...unsigned } = rotatedDocument()
    const reused = signKeyDocument(
      {
        ...unsigned,
        old_verify_keys: {
          ...unsigned.old_verify_keys,
          [current.kid]: { key: toBase64Url(stranger.publicKey), expired_ts: NOW - 5 },
        },
      },
      [current],
    )
    expectFault(wire(reused), 'reused_kid')
  })

  it.each<[string, unknown]>([
    ['null', null],
    ['a string', 'document'],
    ['an array', []],
    ['an empty object', {}],
    [
      'a missing link',
      (() => {
        const d = wire(rotatedDocument())
        delete d.link
        return d
      })(),
    ],
    ['an http link', { ...wire(rotatedDocument()), link: 'https://beta.example/' }],
    ['no current key', { ...wire(rotatedDocument()), verify_keys: {} }],
    [
      'a bad key id',
      { ...wire(rotatedDocument()), verify_keys: { 'rsa:x': toBase64Url(current.publicKey) } },
    ],
    [
      'a 31-byte key',
      { ...wire(rotatedDocument()), verify_keys: { [current.kid]: toBase64Url(seed(3).subarray(1)) } },
    ],
    [
      'padded base64',
      { ...wire(rotatedDocument()), verify_keys: { [current.kid]: toBase64Url(current.publicKey) + '=' } },
    ],
    ['a float timestamp', { ...wire(rotatedDocument()), valid_until_ts: NOW + 0.5 }],
    ['a timestamp beyond 2^53', { ...wire(rotatedDocument()), valid_until_ts: 2 ** 60 }],
    ['an invalid server name', { ...wire(rotatedDocument()), server_name: 'Beta.Example' }],
    [
      'an extra field in an old key',
      (() => {
        const d = wire(rotatedDocument())
        ;(d.old_verify_keys as Record<string, object>)[oldKey.kid] = {
          key: toBase64Url(oldKey.publicKey),
          expired_ts: 1,
          x: 1,
        }
        return d
      })(),
    ],
    ['a field that has no canonical form', { ...wire(rotatedDocument()), extra: 1.5 }],
    [
      'nesting deeper than any frame allows',
      { ...wire(rotatedDocument()), extra: JSON.parse('['.repeat(40) + ']'.repeat(40)) },
    ],
    [
      'too many verify keys',
      {
        ...wire(rotatedDocument()),
        verify_keys: Object.fromEntries(
          Array.from({ length: 9 }, (_, i) => [`ed25519:k${i}`, toBase64Url(seed(i).subarray(0, 32))]),
        ),
      },
    ],
  ])('refuses %s as bad_shape', (_name, value) => {
    expectFault(value, 'bad_shape')
  })

  it('never throws on arbitrary JSON, and never accepts it', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(verifyKeyDocument(value, options).ok).toBe(false)
      }),
      { numRuns: 300 },
    )
  })

  it('never throws when fields of a good document are replaced by arbitrary JSON', () => {
    const fields = ['server_name', 'link', 'verify_keys', 'old_verify_keys', 'valid_until_ts', 'signatures']
    fc.assert(
      fc.property(fc.constantFrom(...fields), fc.jsonValue(), (field, value) => {
        const doc = { ...wire(rotatedDocument()), [field]: value }
        expect(() => verifyKeyDocument(doc, options)).not.toThrow()
      }),
      { numRuns: 300 },
    )
  })

  it('passes the exact signed bytes to the injected verify function', () => {
    const calls: Array<[string, string, string]> = []
    const spy: VerifyFunction = (key, message, sig) => {
      calls.push([toBase64Url(key), toBase64Url(message), toBase64Url(sig)])
      return verifySignature(key, message, sig)
    }
    const doc = rotatedDocument([current])
    expect(verifyKeyDocument(wire(doc), { ...options, verify: spy }).ok).toBe(true)
    expect(calls).toEqual([
      [
        toBase64Url(current.publicKey),
        toBase64Url(keyDocumentSigningBytes(doc)),
        doc.signatures[SERVER]![current.kid],
      ],
    ])
  })
})

describe('caller bugs throw', () => {
  const base = {
    serverName: SERVER,
    link: LINK,
    keys: [{ kid: current.kid, publicKey: current.publicKey, expiredTs: null }],
    validUntilTs: NOW,
  }

  it.each<[string, () => KeyDocument]>([
    ['no signers', () => buildKeyDocument(base, [])],
    [
      'only an old key signing',
      () =>
        buildKeyDocument(
          { ...base, keys: [...base.keys, { kid: oldKey.kid, publicKey: oldKey.publicKey, expiredTs: 1 }] },
          [oldKey],
        ),
    ],
    ['a signer that is not listed', () => buildKeyDocument(base, [current, oldKey])],
    ['a signer whose key differs from the listed one', () => buildKeyDocument(base, [stranger])],
    [
      'no current key',
      () => buildKeyDocument({ ...base, keys: [{ ...base.keys[0]!, expiredTs: 5 }] }, [current]),
    ],
    [
      'a duplicate key id',
      () =>
        buildKeyDocument({ ...base, keys: [...base.keys, { ...base.keys[0]!, expiredTs: 5 }] }, [current]),
    ],
    [
      'a short public key',
      () =>
        buildKeyDocument({ ...base, keys: [{ ...base.keys[0]!, publicKey: new Uint8Array(31) }] }, [current]),
    ],
    [
      'an invalid key id',
      () => buildKeyDocument({ ...base, keys: [{ ...base.keys[0]!, kid: 'ed25519:' }] }, [current]),
    ],
    ['an invalid server name', () => buildKeyDocument({ ...base, serverName: 'Nope' }, [current])],
  ])('%s', (_name, build) => {
    expect(build).toThrow(TypeError)
  })
})

describe('key ids', () => {
  it('generates fresh valid key ids', () => {
    const a = newKeyId()
    expect(isKeyId(a)).toBe(true)
    expect(a).toMatch(/^ed25519:[A-Za-z0-9_]{12}$/)
    expect(newKeyId()).not.toBe(a)
  })

  it.each(['ed25519:', 'ed25519:a-b', 'ED25519:a', 'ed25519:' + 'a'.repeat(33), 'rsa:abc', 'ed25519:a:b'])(
    'rejects %j',
    (kid) => {
      expect(isKeyId(kid)).toBe(false)
    },
  )
})
