import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { toBase64Url, utf8 } from '@parley/protocol'
import { verifySignature } from '@parley/protocol/signing'
import { ManualClock } from '../clock.ts'
import { openDatabase, type Database } from '../db/database.ts'
import { Repos } from '../db/repos/index.ts'
import { memoryLogger } from '../../test/helpers.ts'
import { FakePeer } from '../../test/support/fake-peer.ts'
import { PeerKeys, type PeerKeysOptions } from './peer-keys.ts'

const PEER = 'beta.example'
const OWN = 'acme.example'
const MINUTE = 60_000

let dir: string
let db: Database
let repos: Repos
let clock: ManualClock
let logs: ReturnType<typeof memoryLogger>
let peer: FakePeer
let keys: PeerKeys

function peerKeys(options: Partial<PeerKeysOptions> = {}): PeerKeys {
  return new PeerKeys(repos, clock, logs.logger, {
    serverName: OWN,
    ownKeys: { keyFor: () => null },
    pinnedKeys: {},
    fetch: peer.fetch,
    ...options,
  })
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-peer-keys-'))
  db = openDatabase(join(dir, 'test.db'))
  repos = new Repos(db)
  clock = new ManualClock(1_700_000_000_000)
  logs = memoryLogger('info')
  peer = new FakePeer(PEER, () => clock.now())
  keys = peerKeys()
})
afterEach(async () => {
  db.close()
  await rm(dir, { recursive: true, force: true })
})

/** The PeerKeys answer for `kid` at `atTs`, as `{ok, key | code}` for compact assertions. */
async function lookup(kid: string, atTs = clock.now()) {
  const result = await keys.keyFor(PEER, kid, atTs)
  return result.ok ? { ok: true, key: toBase64Url(result.value) } : { ok: false, code: result.error.code }
}
const b64 = (k: { publicKey: Uint8Array }) => toBase64Url(k.publicKey)

describe('first contact', () => {
  it('trusts on first use and pins every key the document lists', async () => {
    const first = peer.current
    peer.rotate(clock.now() - 1000)
    expect(await lookup(peer.current.kid)).toEqual({ ok: true, key: b64(peer.current) })
    const info = keys.peer(PEER)!
    expect(info).toMatchObject({ serverName: PEER, state: 'trusted', reason: null, firstSeenTs: clock.now() })
    expect(info.keys.map((k) => [k.kid, k.key, k.expiredTs]).sort()).toEqual(
      [
        [first.kid, b64(first), clock.now() - 1000],
        [peer.current.kid, b64(peer.current), null],
      ].sort(),
    )
    expect(logs.text()).toContain('pinned peer keys on first use')
  })

  it('answers later lookups of pinned keys without fetching', async () => {
    await lookup(peer.current.kid)
    clock.advance(10 * MINUTE)
    expect(await lookup(peer.current.kid)).toEqual({ ok: true, key: b64(peer.current) })
    expect(peer.fetches).toBe(1)
  })

  it('stores nothing when the fetch fails or the document does not verify', async () => {
    peer.failWith = new Error('connection refused')
    expect(await lookup(peer.current.kid)).toEqual({ ok: false, code: 'fetch_failed' })
    peer.failWith = null
    clock.advance(MINUTE)
    peer.serve = () => ({ ...peer.document(), server_name: 'other.example' })
    expect(await lookup(peer.current.kid)).toEqual({ ok: false, code: 'bad_document' })
    clock.advance(MINUTE)
    peer.serve = (now) => peer.document(now - 25 * 3600_000) // valid_until_ts in the past
    expect(await lookup(peer.current.kid)).toEqual({ ok: false, code: 'bad_document' })
    expect(keys.list()).toEqual([])
  })

  it('answers our own keys from our key store, never by fetching', async () => {
    const own = FakePeer.newSigner()
    keys = peerKeys({ ownKeys: { keyFor: (kid) => (kid === own.kid ? own.publicKey : null) } })
    expect((await keys.keyFor(OWN, own.kid, clock.now())).ok).toBe(true)
    expect(await keys.keyFor(OWN, 'ed25519:nope', clock.now())).toMatchObject({
      ok: false,
      error: { code: 'unknown_key' },
    })
    expect(peer.fetches).toBe(0)
  })
})

describe('fetch rate limit', () => {
  it('fetches an unknown key id at most once a minute', async () => {
    await lookup(peer.current.kid)
    expect(await lookup('ed25519:unknown')).toEqual({ ok: false, code: 'rate_limited' })
    expect(peer.fetches).toBe(1)
    clock.advance(MINUTE)
    expect(await lookup('ed25519:unknown')).toEqual({ ok: false, code: 'unknown_key' })
    expect(peer.fetches).toBe(2)
    expect(await lookup('ed25519:unknown')).toEqual({ ok: false, code: 'rate_limited' })
    expect(peer.fetches).toBe(2)
  })

  it('counts failed fetches too', async () => {
    peer.failWith = new Error('timeout')
    await lookup(peer.current.kid)
    peer.failWith = null
    expect(await lookup(peer.current.kid)).toEqual({ ok: false, code: 'rate_limited' })
    expect(peer.fetches).toBe(1)
  })

  it('shares one fetch between concurrent lookups', async () => {
    peer.hold()
    const pending = [lookup(peer.current.kid), lookup(peer.current.kid), lookup('ed25519:other')]
    const forced = keys.refresh(PEER, { force: true })
    peer.release()
    const [a, b, c] = await Promise.all(pending)
    expect(a).toEqual({ ok: true, key: b64(peer.current) })
    expect(b).toEqual(a)
    expect(c).toEqual({ ok: false, code: 'unknown_key' })
    expect((await forced).ok).toBe(true)
    expect(peer.fetches).toBe(1)
  })

  it('fetches again within the minute when forced', async () => {
    await lookup(peer.current.kid)
    expect((await keys.refresh(PEER, { force: true })).ok).toBe(true)
    expect(peer.fetches).toBe(2)
  })
})

describe('key rotation (FED-6)', () => {
  it('accepts a new key signed by the key it replaced, with one fetch, and keeps the old key for old signatures', async () => {
    const old = peer.current
    const before = clock.now()
    const signedBefore = old.sign(utf8('event at T0'))
    await lookup(old.kid)
    clock.advance(2 * MINUTE)
    const rotatedAt = clock.now()
    const next = peer.rotate(rotatedAt)
    const fetchesBefore = peer.fetches
    expect(await lookup(next.kid)).toEqual({ ok: true, key: b64(next) })
    expect(peer.fetches).toBe(fetchesBefore + 1)
    expect(keys.peer(PEER)!.state).toBe('trusted')

    // The old key still verifies what it signed before its expiry...
    const oldKey = await keys.keyFor(PEER, old.kid, before)
    expect(oldKey.ok && verifySignature(oldKey.value, utf8('event at T0'), signedBefore)).toBe(true)
    // ...and nothing claimed to be signed at or after it.
    expect(await lookup(old.kid, rotatedAt)).toEqual({ ok: false, code: 'expired_key' })
    expect(await lookup(old.kid, rotatedAt + 1)).toEqual({ ok: false, code: 'expired_key' })
  })

  it('never records an expiry later than the time it learned of it', async () => {
    await lookup(peer.current.kid)
    clock.advance(MINUTE)
    const old = peer.current
    peer.rotate(clock.now() + 3600_000) // the peer claims the old key stays valid for another hour
    await lookup(peer.current.kid)
    expect(keys.peer(PEER)!.keys.find((k) => k.kid === old.kid)!.expiredTs).toBe(clock.now())
  })

  it('retires a current key the new document no longer lists at all', async () => {
    // Two current keys; the next document drops one, adds another, and is vouched for by the one kept.
    const dropped = peer.current
    const kept = FakePeer.newSigner()
    peer.keys.push({ signer: kept, expiredTs: null })
    peer.signers = [dropped, kept]
    await lookup(kept.kid)
    clock.advance(MINUTE)
    const added = FakePeer.newSigner()
    peer.keys.splice(
      0,
      peer.keys.length,
      { signer: kept, expiredTs: null },
      { signer: added, expiredTs: null },
    )
    peer.signers = [added, kept]
    expect(await lookup(added.kid)).toEqual({ ok: true, key: b64(added) })
    expect(keys.peer(PEER)!.keys.find((k) => k.kid === dropped.kid)!.expiredTs).toBe(clock.now())
    expect(await lookup(dropped.kid)).toEqual({ ok: false, code: 'expired_key' })
    expect(await lookup(dropped.kid, clock.now() - 1)).toEqual({ ok: true, key: b64(dropped) })
  })

  it('quarantines a peer whose new key is not signed by its pinned key, and stops fetching', async () => {
    await lookup(peer.current.kid)
    clock.advance(MINUTE)
    const impostor = peer.replaceIdentity()
    expect(await lookup(impostor.kid)).toEqual({ ok: false, code: 'quarantined' })
    const info = keys.peer(PEER)!
    expect(info.state).toBe('quarantined')
    expect(info.reason).toContain(impostor.kid)
    expect(logs.text()).toContain('peer quarantined')
    const fetches = peer.fetches
    clock.advance(10 * MINUTE)
    // Every lookup fails, even of keys pinned before, and nothing is fetched.
    expect(await lookup(info.keys[0]!.kid)).toEqual({ ok: false, code: 'quarantined' })
    expect((await keys.refresh(PEER, { force: true })).ok).toBe(false)
    expect(peer.fetches).toBe(fetches)
  })

  it('quarantines a key change vouched for only by a key it already saw retired (a leaked old key)', async () => {
    const leaked = peer.current
    await lookup(leaked.kid)
    clock.advance(MINUTE)
    peer.rotate()
    await lookup(peer.current.kid)
    expect(keys.peer(PEER)!.state).toBe('trusted')
    // The attacker holds the retired key and mints a new "current" key signed by it.
    clock.advance(MINUTE)
    const attacker = FakePeer.newSigner()
    peer.keys.push({ signer: attacker, expiredTs: null })
    peer.keys.find((k) => k.signer.kid !== attacker.kid && k.expiredTs === null)!.expiredTs = clock.now()
    peer.signers = [attacker, leaked]
    expect(await lookup(attacker.kid)).toEqual({ ok: false, code: 'quarantined' })
    expect(keys.peer(PEER)!.reason).toContain('not signed by a key we hold as current')
  })

  it('quarantines a retired key listed as current again', async () => {
    const old = peer.current
    await lookup(old.kid)
    clock.advance(MINUTE)
    const next = peer.rotate()
    await lookup(next.kid)
    clock.advance(MINUTE)
    peer.keys.find((k) => k.signer.kid === old.kid)!.expiredTs = null
    peer.signers = [old, next]
    // Two current keys, signed by both: still a retired key coming back.
    await keys.refresh(PEER)
    expect(keys.peer(PEER)).toMatchObject({
      state: 'quarantined',
      reason: expect.stringContaining('retired'),
    })
  })

  it('quarantines a key id that now names a different key', async () => {
    const original = peer.current
    await lookup(original.kid)
    clock.advance(MINUTE)
    const twin = FakePeer.newSigner()
    const sameKid = { ...twin, kid: original.kid, sign: twin.sign }
    peer.keys.splice(0, 1, { signer: sameKid, expiredTs: null })
    await keys.refresh(PEER)
    expect(keys.peer(PEER)).toMatchObject({
      state: 'quarantined',
      reason: expect.stringContaining('different key'),
    })
  })

  it('leaves a trusted peer trusted when a later document fails to verify', async () => {
    await lookup(peer.current.kid)
    clock.advance(MINUTE)
    peer.serve = () => ({ ...peer.document(), link: 'wss://evil.example/api/v1/federation' })
    expect((await keys.refresh(PEER)).ok).toBe(false)
    expect(keys.peer(PEER)!.state).toBe('trusted')
  })
})

describe('configured pins (federation.pinnedKeys)', () => {
  it('refuses a document not signed by a configured key, storing nothing', async () => {
    keys = peerKeys({ pinnedKeys: { [PEER]: [b64(FakePeer.newSigner())] } })
    expect(await lookup(peer.current.kid)).toEqual({ ok: false, code: 'pin_mismatch' })
    expect(keys.list()).toEqual([])
    expect(logs.text()).toContain('federation.pinnedKeys')
  })

  it('accepts a document signed by a configured key, and a rotation co-signed by it', async () => {
    keys = peerKeys({ pinnedKeys: { [PEER]: [b64(peer.current)] } })
    expect((await lookup(peer.current.kid)).ok).toBe(true)
    clock.advance(MINUTE)
    const next = peer.rotate()
    expect((await lookup(next.kid)).ok).toBe(true)
    // The next rotation is no longer signed by the configured key: refused until the config changes.
    clock.advance(MINUTE)
    const third = peer.rotate()
    expect(await lookup(third.kid)).toEqual({ ok: false, code: 'pin_mismatch' })
    expect(keys.peer(PEER)!.state).toBe('trusted')
  })
})

describe('admin actions', () => {
  it('trust clears a quarantine by pinning the current document, old pins kept as retired', async () => {
    const first = peer.current
    await lookup(first.kid)
    clock.advance(MINUTE)
    const impostor = peer.replaceIdentity()
    await lookup(impostor.kid)
    expect(keys.peer(PEER)!.state).toBe('quarantined')
    const trusted = await keys.trust(PEER)
    expect(trusted).toMatchObject({ ok: true, value: { state: 'trusted', reason: null } })
    expect(await lookup(impostor.kid)).toEqual({ ok: true, key: b64(impostor) })
    const firstPin = keys.peer(PEER)!.keys.find((k) => k.kid === first.kid)!
    expect(firstPin.expiredTs).toBe(clock.now())
  })

  it('trust refuses a document that does not match the configured pins', async () => {
    keys = peerKeys({ pinnedKeys: { [PEER]: [b64(FakePeer.newSigner())] } })
    expect(await keys.trust(PEER)).toMatchObject({ ok: false, error: { code: 'pin_mismatch' } })
    expect(keys.list()).toEqual([])
  })

  it('forget drops the peer and its pins; the next contact is a first contact again', async () => {
    await lookup(peer.current.kid)
    clock.advance(MINUTE)
    peer.replaceIdentity()
    await lookup(peer.current.kid)
    expect(keys.forget(PEER)).toBe(true)
    expect(keys.peer(PEER)).toBeNull()
    expect(await lookup(peer.current.kid)).toEqual({ ok: true, key: b64(peer.current) })
    expect(keys.forget('nobody.example')).toBe(false)
  })
})
