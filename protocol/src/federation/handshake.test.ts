import { blake2b } from '@noble/hashes/blake2.js'
import { createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { canonicalJson, type JsonObject } from '../canonical-json.ts'
import { sodiumReady } from '../crypto/sodium.ts'
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from '../encoding.ts'
import { signerFromSeed, verifySignature } from '../signing.ts'
import { MAX_CLOCK_SKEW_MS } from './constants.ts'
import type { LinkFailureReason } from './failure.ts'
import { ClientHello, ServerHello } from './frames.ts'
import type { HandshakeStep } from './handshake.ts'
import { MemoryReplayCache } from './replay-cache.ts'
import { clientSigningBytes, clientTranscriptHash, serverTranscriptHash } from './transcript.ts'
import {
  T0,
  World,
  expectOk,
  fill,
  flipBit,
  party,
  runHandshake,
  scriptedRandom,
  type Party,
} from './test-utils.ts'
import type { Result } from '../result.ts'
import type { LinkFailure } from './failure.ts'

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const unhex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, 'hex'))

/** The failure reason of a result, or `ok`. */
const reasonOf = (result: Result<HandshakeStep, LinkFailure>): LinkFailureReason | 'ok' =>
  result.ok ? 'ok' : result.error.reason

/** Canonical JSON of `frame` with fields replaced (`undefined` deletes one). */
function patch(frame: string, changes: Record<string, unknown>): string {
  const value = JSON.parse(frame) as Record<string, unknown>
  for (const [key, v] of Object.entries(changes)) {
    if (v === undefined) delete value[key]
    else value[key] = v
  }
  return canonicalJson(value)
}

/** A base64url signature with one bit flipped (still canonical base64url). */
function flipSig(sig: string, index: number): string {
  return toBase64Url(flipBit(fromBase64Url(sig)!, index, index % 8))
}

let w: World
let c: Party
let s: Party

beforeAll(async () => {
  await sodiumReady()
})

function freshWorld(): void {
  w = new World()
  c = party('c.example', 0xc1)
  s = party('s.example', 0x51)
  w.publish(c).publish(s)
}

describe('a complete handshake', () => {
  it('authenticates both servers and derives matching crypto_kx keys', async () => {
    freshWorld()
    const run = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    const { clientLink, serverLink } = run
    expect(clientLink).toMatchObject({
      role: 'initiator',
      self: 'c.example',
      peer: 's.example',
      peerKid: 'ed25519:k1',
    })
    expect(serverLink).toMatchObject({
      role: 'responder',
      self: 's.example',
      peer: 'c.example',
      peerKid: 'ed25519:k1',
    })
    expect(clientLink.peerPublicKey).toEqual(s.signer.publicKey)
    expect(serverLink.peerPublicKey).toEqual(c.signer.publicKey)
    expect(clientLink.keys.tx).toEqual(serverLink.keys.rx)
    expect(clientLink.keys.rx).toEqual(serverLink.keys.tx)
    expect(clientLink.keys.rx).not.toEqual(clientLink.keys.tx)
    expect(clientLink.transcriptHash).toEqual(serverLink.transcriptHash)
    expect(clientLink.transcriptHash).toHaveLength(32)
  })

  it('sends every frame as canonical JSON text', async () => {
    freshWorld()
    const run = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    for (const frame of [run.clientHello, run.serverHello, run.auth])
      expect(canonicalJson(JSON.parse(frame) as JsonObject)).toBe(frame)
  })

  it('gives every session fresh keys, nonces and transcripts', async () => {
    freshWorld()
    const one = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    const two = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    expect(two.clientLink.keys.tx).not.toEqual(one.clientLink.keys.tx)
    expect(two.clientLink.transcriptHash).not.toEqual(one.clientLink.transcriptHash)
    expect(JSON.parse(two.clientHello).nonce).not.toBe(JSON.parse(one.clientHello).nonce)
  })

  it('records both nonces only once each peer is authenticated', async () => {
    freshWorld()
    const run = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    expect(s.cache.has(JSON.parse(run.clientHello).nonce, w.now)).toBe(true)
    expect(c.cache.has(JSON.parse(run.serverHello).nonce, w.now)).toBe(true)
  })

  it('works with an asynchronous key lookup', async () => {
    freshWorld()
    const async = { lookupKey: async (server: string, kid: string) => w.keys.get(`${server} ${kid}`) ?? null }
    const run = await runHandshake(w.initiator(c, 's.example', async), w.responder(s, async))
    expect(run.clientLink.keys.tx).toEqual(run.serverLink.keys.rx)
  })

  it('interoperates with the libsodium Ed25519 signer and verifier', async () => {
    const { ed25519SignerFromSeed, ed25519Verify } = await import('../crypto/ed25519.ts')
    freshWorld()
    const sodiumSigner = ed25519SignerFromSeed('ed25519:k1', fill(0xc1))
    expect(sodiumSigner.publicKey).toEqual(c.signer.publicKey)
    const run = await runHandshake(
      w.initiator(c, 's.example', { signer: sodiumSigner, verify: ed25519Verify }),
      w.responder(s),
    )
    expect(run.serverLink.peer).toBe('c.example')
  })
})

describe('HELLO checks at the responder', () => {
  async function helloTo(overrides: Partial<Parameters<World['options']>[1]> = {}, frame?: string) {
    const hello = frame ?? w.initiator(c, 's.example').start()
    const responder = w.responder(s, overrides)
    return { responder, result: await responder.receive(hello) }
  }

  it('refuses a HELLO addressed to another server with bad_to', async () => {
    freshWorld()
    const hello = w.initiator(c, 'other.example').start()
    expect(reasonOf((await helloTo({}, hello)).result)).toBe('bad_to')
  })

  it('refuses a HELLO claiming to come from the responder itself with bad_from', async () => {
    freshWorld()
    const hello = patch(w.initiator(c, 's.example').start(), { from: 's.example' })
    expect(reasonOf((await helloTo({}, hello)).result)).toBe('bad_from')
  })

  it('refuses a denied server with not_allowed before any key lookup', async () => {
    freshWorld()
    w.denied.add('c.example')
    expect(reasonOf((await helloTo()).result)).toBe('not_allowed')
    expect(w.lookups).toEqual([])
  })

  it('treats a policy answer other than true as a refusal (fail closed)', async () => {
    freshWorld()
    const isAllowed = (() => 'yes') as unknown as (server: string) => boolean
    expect(reasonOf((await helloTo({ isAllowed })).result)).toBe('not_allowed')
  })

  it.each([
    ['exactly 5 minutes old', MAX_CLOCK_SKEW_MS, 'ok'],
    ['5 minutes and 1 ms old', MAX_CLOCK_SKEW_MS + 1, 'stale_ts'],
    ['exactly 5 minutes ahead', -MAX_CLOCK_SKEW_MS, 'ok'],
    ['5 minutes and 1 ms ahead', -MAX_CLOCK_SKEW_MS - 1, 'stale_ts'],
  ] as const)('accepts or refuses a HELLO %s', async (_name, skew, expected) => {
    freshWorld()
    const hello = w.initiator(c, 's.example').start()
    expect(reasonOf((await helloTo({ now: () => T0 + skew }, hello)).result)).toBe(expected)
  })

  it('refuses a stale HELLO before any key lookup', async () => {
    freshWorld()
    const hello = w.initiator(c, 's.example').start()
    await helloTo({ now: () => T0 + MAX_CLOCK_SKEW_MS + 1 }, hello)
    expect(w.lookups).toEqual([])
  })

  it('refuses an unknown key id with unknown_key', async () => {
    freshWorld()
    const hello = patch(w.initiator(c, 's.example').start(), { kid: 'ed25519:nope' })
    expect(reasonOf((await helloTo({}, hello)).result)).toBe('unknown_key')
    expect(w.lookups).toEqual([['c.example', 'ed25519:nope']])
  })

  it('refuses the key id of a different server with unknown_key (keys are looked up per server)', async () => {
    freshWorld()
    const x = party('x.example', 0x77, 'ed25519:x1')
    w.publish(x)
    const hello = patch(w.initiator(c, 's.example').start(), { kid: 'ed25519:x1' })
    expect(reasonOf((await helloTo({}, hello)).result)).toBe('unknown_key')
    expect(w.lookups).toEqual([['c.example', 'ed25519:x1']])
  })

  it('refuses a low-order ephemeral key with bad_eph_key', async () => {
    freshWorld()
    const hello = patch(w.initiator(c, 's.example').start(), { eph_pk: toBase64Url(new Uint8Array(32)) })
    expect(reasonOf((await helloTo({}, hello)).result)).toBe('bad_eph_key')
  })
})

describe('S.HELLO checks at the initiator', () => {
  /** C's HELLO and S's genuine answer, with C still waiting. */
  async function pending(cOverrides = {}, peer = 's.example') {
    const initiator = w.initiator(c, peer, cOverrides)
    const responder = w.responder(s)
    const clientHello = initiator.start()
    const serverHello = expectOk(await responder.receive(clientHello)).send!
    return { initiator, responder, clientHello, serverHello }
  }

  it('refuses an S.HELLO from a server it did not dial with bad_from', async () => {
    freshWorld()
    const x = party('x.example', 0x77)
    w.publish(x)
    // C dials x.example but s.example answers (a misrouted or hijacked connection).
    const initiator = w.initiator(c, 'x.example')
    const hello = patch(initiator.start(), { to: 's.example' })
    const reply = expectOk(await w.responder(s).receive(hello)).send!
    expect(reasonOf(await initiator.receive(reply))).toBe('bad_from')
  })

  it('refuses an S.HELLO addressed to someone else with bad_to', async () => {
    freshWorld()
    const { initiator, serverHello } = await pending()
    expect(reasonOf(await initiator.receive(patch(serverHello, { to: 'z.example' })))).toBe('bad_to')
  })

  it('refuses a denied responder with not_allowed before any key lookup', async () => {
    freshWorld()
    const { initiator, serverHello } = await pending()
    w.denied.add('s.example')
    w.lookups.length = 0
    expect(reasonOf(await initiator.receive(serverHello))).toBe('not_allowed')
    expect(w.lookups).toEqual([])
  })

  it.each([
    ['exactly 5 minutes old', MAX_CLOCK_SKEW_MS, 'ok'],
    ['5 minutes and 1 ms old', MAX_CLOCK_SKEW_MS + 1, 'stale_ts'],
    ['exactly 5 minutes ahead', -MAX_CLOCK_SKEW_MS, 'ok'],
    ['5 minutes and 1 ms ahead', -MAX_CLOCK_SKEW_MS - 1, 'stale_ts'],
  ] as const)('accepts or refuses an S.HELLO %s', async (_name, skew, expected) => {
    freshWorld()
    let cNow = T0
    const { initiator, serverHello } = await pending({ now: () => cNow })
    cNow = T0 + skew
    expect(reasonOf(await initiator.receive(serverHello))).toBe(expected)
  })

  it('refuses an S.HELLO that echoes its own nonce with replayed_nonce', async () => {
    freshWorld()
    const { initiator, clientHello, serverHello } = await pending()
    const echoed = patch(serverHello, { nonce: JSON.parse(clientHello).nonce })
    expect(reasonOf(await initiator.receive(echoed))).toBe('replayed_nonce')
  })

  it('refuses an S.HELLO that reflects its ephemeral key with bad_eph_key', async () => {
    freshWorld()
    const { initiator, clientHello, serverHello } = await pending()
    const reflected = patch(serverHello, { eph_pk: JSON.parse(clientHello).eph_pk })
    expect(reasonOf(await initiator.receive(reflected))).toBe('bad_eph_key')
  })

  it('refuses an unknown responder key id with unknown_key', async () => {
    freshWorld()
    const { initiator, serverHello } = await pending()
    expect(reasonOf(await initiator.receive(patch(serverHello, { kid: 'ed25519:gone' })))).toBe('unknown_key')
  })

  it('refuses an S.HELLO signed with another server’s key with bad_signature', async () => {
    freshWorld()
    // x.example holds its own valid key but answers as s.example, naming s.example's key id.
    const impostor: Party = { ...party('s.example', 0x77), cache: new MemoryReplayCache() }
    const initiator = w.initiator(c, 's.example')
    const reply = expectOk(await w.responder(impostor).receive(initiator.start())).send!
    expect(reasonOf(await initiator.receive(reply))).toBe('bad_signature')
  })

  it('refuses an S.HELLO whose signed fields were altered with bad_signature', async () => {
    freshWorld()
    const { initiator, serverHello } = await pending()
    const ts = (JSON.parse(serverHello) as { ts: number }).ts
    expect(reasonOf(await initiator.receive(patch(serverHello, { ts: ts + 1 })))).toBe('bad_signature')
  })

  it('refuses when C.HELLO was altered in transit (S signed what it saw) with bad_signature', async () => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    const mallory = w.initiator(party('c.example', 0xc1), 's.example')
    // A man in the middle swaps in his own ephemeral key.
    const swapped = patch(initiator.start(), { eph_pk: JSON.parse(mallory.start()).eph_pk })
    const reply = expectOk(await w.responder(s).receive(swapped)).send!
    expect(reasonOf(await initiator.receive(reply))).toBe('bad_signature')
  })

  it('refuses an S.HELLO without its signature with bad_frame', async () => {
    freshWorld()
    const { initiator, serverHello } = await pending()
    expect(reasonOf(await initiator.receive(patch(serverHello, { sig: undefined })))).toBe('bad_frame')
  })
})

describe('flipped signature bits', () => {
  it.each(Array.from({ length: 64 }, (_, i) => i))(
    'refuses S.HELLO with bit %i of its sig flipped',
    async (i) => {
      freshWorld()
      const initiator = w.initiator(c, 's.example')
      const reply = expectOk(await w.responder(s).receive(initiator.start())).send!
      const forged = patch(reply, { sig: flipSig(JSON.parse(reply).sig, i) })
      expect(reasonOf(await initiator.receive(forged))).toBe('bad_signature')
    },
  )

  it.each(Array.from({ length: 64 }, (_, i) => i))(
    'refuses AUTH with bit %i of its sig flipped',
    async (i) => {
      freshWorld()
      const initiator = w.initiator(c, 's.example')
      const responder = w.responder(s)
      const reply = expectOk(await responder.receive(initiator.start())).send!
      const auth = expectOk(await initiator.receive(reply)).send!
      const forged = patch(auth, { sig: flipSig(JSON.parse(auth).sig, i) })
      expect(reasonOf(await responder.receive(forged))).toBe('bad_signature')
      expect(s.cache.size).toBe(0) // an unauthenticated HELLO never consumes a cache slot
    },
  )
})

describe('replays (TESTPLAN FED-4)', () => {
  it('refuses a recorded C.HELLO replayed to the same server by nonce, and to a third server by to', async () => {
    freshWorld()
    const run = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    w.lookups.length = 0
    expect(reasonOf(await w.responder(s).receive(run.clientHello))).toBe('replayed_nonce')
    expect(w.lookups).toEqual([]) // refused before any key lookup or signature
    const c2 = party('c2.example', 0xc2)
    w.publish(c2)
    expect(reasonOf(await w.responder(c2).receive(run.clientHello))).toBe('bad_to')
    // A fresh HELLO from the same server still succeeds.
    const again = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    expect(again.serverLink.peer).toBe('c.example')
  })

  it('remembers the nonce for the whole window: a HELLO dated 5 min ahead is refused as a replay 10 min later', async () => {
    freshWorld()
    // C's clock runs 5 minutes ahead of S's: the widest skew both still accept.
    const aheadNow = () => T0 + MAX_CLOCK_SKEW_MS
    const run = await runHandshake(w.initiator(c, 's.example', { now: aheadNow }), w.responder(s))
    // At S's T0 + 10 min the HELLO's ts (T0 + 5 min) is still acceptable, so only the nonce stops it.
    w.now = T0 + 2 * MAX_CLOCK_SKEW_MS
    expect(reasonOf(await w.responder(s).receive(run.clientHello))).toBe('replayed_nonce')
    w.now = T0 + 2 * MAX_CLOCK_SKEW_MS + 1
    expect(reasonOf(await w.responder(s).receive(run.clientHello))).toBe('stale_ts')
  })

  it('refuses a replayed C.HELLO that never completed at AUTH, since the replayer cannot sign', async () => {
    freshWorld()
    const clientHello = w.initiator(c, 's.example').start() // C gave up after sending it
    const responder = w.responder(s)
    const reply = expectOk(await responder.receive(clientHello))
    expect(reply.send).not.toBeNull()
    const staleAuth = (await runHandshake(w.initiator(c, 's.example'), w.responder(s))).auth
    expect(reasonOf(await responder.receive(staleAuth))).toBe('bad_signature')
  })

  it('refuses an AUTH recorded in an earlier session with bad_signature', async () => {
    freshWorld()
    const earlier = await runHandshake(w.initiator(c, 's.example'), w.responder(s))
    const initiator = w.initiator(c, 's.example')
    const responder = w.responder(s)
    expectOk(await responder.receive(initiator.start()))
    expect(reasonOf(await responder.receive(earlier.auth))).toBe('bad_signature')
  })

  it('accepts a nonce only once even when two handshakes with it reach AUTH', async () => {
    freshWorld()
    // Two sockets to s.example (one cache) get the same C.HELLO; a validly signed AUTH for each.
    const initiator = w.initiator(c, 's.example')
    const clientHello = initiator.start()
    const first = w.responder(s)
    const second = w.responder(s)
    const replyA = expectOk(await first.receive(clientHello)).send!
    const replyB = expectOk(await second.receive(clientHello)).send!
    const authA = expectOk(await initiator.receive(replyA)).send!
    const authB = canonicalJson({
      type: 'auth',
      sig: toBase64Url(
        c.signer.sign(
          clientSigningBytes(
            ClientHello.parse(JSON.parse(clientHello)),
            ServerHello.parse(JSON.parse(replyB)),
          ),
        ),
      ),
    })
    expect(reasonOf(await first.receive(authA))).toBe('ok')
    expect(reasonOf(await second.receive(authB))).toBe('replayed_nonce')
  })

  it('fails closed with busy when the replay cache is full', async () => {
    freshWorld()
    const tiny = { ...s, cache: new MemoryReplayCache({ maxEntries: 1 }) }
    await runHandshake(w.initiator(c, 's.example'), w.responder(tiny))
    const initiator = w.initiator(c, 's.example')
    const responder = w.responder(tiny)
    const reply = expectOk(await responder.receive(initiator.start())).send!
    const auth = expectOk(await initiator.receive(reply)).send!
    expect(reasonOf(await responder.receive(auth))).toBe('busy')
  })
})

describe('impersonation', () => {
  it('refuses a server that signs AUTH with its own key while claiming another name', async () => {
    freshWorld()
    // Mallory knows c.example's key id but not its secret key.
    const mallory: Party = { ...party('c.example', 0x66), cache: new MemoryReplayCache() }
    const initiator = w.initiator(mallory, 's.example', { lookupKey: () => s.signer.publicKey })
    const responder = w.responder(s)
    const reply = expectOk(await responder.receive(initiator.start())).send!
    const auth = expectOk(await initiator.receive(reply)).send!
    expect(reasonOf(await responder.receive(auth))).toBe('bad_signature')
  })

  it('refuses an AUTH signature made with the responder-side domain (no reflection)', async () => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    const responder = w.responder(s)
    const clientHello = initiator.start()
    const reply = expectOk(await responder.receive(clientHello)).send!
    const th = clientTranscriptHash(
      ClientHello.parse(JSON.parse(clientHello)),
      ServerHello.parse(JSON.parse(reply)),
    )
    const wrongDomain = c.signer.sign(concatBytes(utf8('parley/link/S\0'), th))
    const auth = canonicalJson({ type: 'auth', sig: toBase64Url(wrongDomain) })
    expect(reasonOf(await responder.receive(auth))).toBe('bad_signature')
  })
})

describe('the state machine', () => {
  it('refuses AUTH as the first frame at the responder with unexpected_frame', async () => {
    freshWorld()
    const auth = (await runHandshake(w.initiator(c, 's.example'), w.responder(s))).auth
    expect(reasonOf(await w.responder(s).receive(auth))).toBe('unexpected_frame')
  })

  it('refuses a second HELLO at the responder with unexpected_frame', async () => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    const responder = w.responder(s)
    const hello = initiator.start()
    expectOk(await responder.receive(hello))
    expect(reasonOf(await responder.receive(hello))).toBe('unexpected_frame')
    expect(responder.state).toBe('failed')
  })

  it('refuses AUTH at the initiator with unexpected_frame', async () => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    initiator.start()
    expect(reasonOf(await initiator.receive('{"type":"auth","sig":"x"}'))).toBe('unexpected_frame')
  })

  it('refuses input before start() at the initiator', async () => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    expect(reasonOf(await initiator.receive('{}'))).toBe('unexpected_frame')
    expect(() => initiator.start()).toThrow(/start\(\) in state failed/)
  })

  it('refuses a binary frame during the handshake with unexpected_frame', async () => {
    freshWorld()
    expect(reasonOf(await w.responder(s).receive(utf8(w.initiator(c, 's.example').start())))).toBe(
      'unexpected_frame',
    )
  })

  it('refuses anything after the handshake completed', async () => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    const responder = w.responder(s)
    const run = await runHandshake(initiator, responder)
    expect(reasonOf(await responder.receive(run.auth))).toBe('unexpected_frame')
    expect(reasonOf(await initiator.receive(run.serverHello))).toBe('unexpected_frame')
  })

  it('stays dead after a failure: even a valid frame then fails with closed', async () => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    const responder = w.responder(s)
    const hello = initiator.start()
    expect(reasonOf(await responder.receive('not json'))).toBe('bad_frame')
    expect(responder.failure?.reason).toBe('bad_frame')
    expect(reasonOf(await responder.receive(hello))).toBe('closed')
    expect(responder.failure?.reason).toBe('bad_frame')
  })

  it('dies when abort() is called (the driver’s 10 s deadline)', async () => {
    freshWorld()
    const responder = w.responder(s)
    responder.abort('deadline')
    expect(responder.failure).toEqual({ reason: 'aborted', message: 'deadline' })
    expect(reasonOf(await responder.receive(w.initiator(c, 's.example').start()))).toBe('closed')
  })

  it('refuses input that arrives while a key lookup is pending, and the pending step then fails', async () => {
    freshWorld()
    let release: (key: Uint8Array | null) => void = () => {}
    const responder = w.responder(s, { lookupKey: () => new Promise((resolve) => (release = resolve)) })
    const hello = w.initiator(c, 's.example').start()
    const pending = responder.receive(hello)
    expect(responder.state).toBe('working')
    expect(reasonOf(await responder.receive(hello))).toBe('unexpected_frame')
    release(c.signer.publicKey)
    expect(reasonOf(await pending)).toBe('closed')
  })

  it('dies and rethrows when the key lookup throws', async () => {
    freshWorld()
    const responder = w.responder(s, {
      lookupKey: () => {
        throw new Error('discovery exploded')
      },
    })
    await expect(responder.receive(w.initiator(c, 's.example').start())).rejects.toThrow('discovery exploded')
    expect(responder.failure?.reason).toBe('aborted')
  })

  it('throws when the key lookup returns something other than 32 bytes or null (a caller bug)', async () => {
    freshWorld()
    const responder = w.responder(s, { lookupKey: () => new Uint8Array(31) })
    await expect(responder.receive(w.initiator(c, 's.example').start())).rejects.toThrow(/32-byte/)
    expect(responder.state).toBe('failed')
  })
})

describe('options (caller bugs throw)', () => {
  it('refuses an invalid own name, a bad key id, a missing callback and a self-link', () => {
    freshWorld()
    expect(() => w.responder(s, { serverName: 'Not A Name' })).toThrow(TypeError)
    expect(() => w.responder(s, { signer: signerFromSeed('k1', fill(1)) })).toThrow(/kid/)
    expect(() => w.responder(s, { verify: undefined as never })).toThrow(/verify/)
    expect(() => w.initiator(c, 'c.example')).toThrow(/itself/)
    expect(() => w.initiator(c, 'bad name')).toThrow(/peer/)
  })

  it('throws when injected randomness or the clock misbehave', () => {
    freshWorld()
    expect(() => w.initiator(c, 's.example', { random: () => new Uint8Array(3) }).start()).toThrow(/random/)
    expect(() => w.initiator(c, 's.example', { now: () => 1.5 }).start()).toThrow(/now/)
  })
})

describe('frame schema (extra fields, bad types)', () => {
  const cases: Array<[string, (hello: string) => string, LinkFailureReason]> = [
    ['an extra field', (h) => patch(h, { extra: 1 }), 'bad_frame'],
    ['a sig on C.HELLO', (h) => patch(h, { sig: toBase64Url(new Uint8Array(64)) }), 'bad_frame'],
    ['a missing nonce', (h) => patch(h, { nonce: undefined }), 'bad_frame'],
    ['a missing v', (h) => patch(h, { v: undefined }), 'bad_frame'],
    ['v as a string', (h) => patch(h, { v: '1' }), 'bad_frame'],
    ['v = 2', (h) => patch(h, { v: 2 }), 'unsupported_version'],
    ['ts as a string', (h) => patch(h, { ts: String(T0) }), 'bad_frame'],
    ['a fractional ts', (h) => h.replace(`"ts":${T0}`, `"ts":${T0}.5`), 'bad_frame'],
    ['a negative ts', (h) => patch(h, { ts: -1 }), 'bad_frame'],
    ['a 31-byte nonce', (h) => patch(h, { nonce: toBase64Url(new Uint8Array(31)) }), 'bad_frame'],
    ['a padded nonce', (h) => patch(h, { nonce: toBase64Url(new Uint8Array(32)) + '=' }), 'bad_frame'],
    ['a nonce with non-zero trailing bits', (h) => patch(h, { nonce: 'A'.repeat(42) + 'B' }), 'bad_frame'],
    ['a nonce in standard base64', (h) => patch(h, { nonce: '+'.repeat(43) }), 'bad_frame'],
    ['a 33-byte eph_pk', (h) => patch(h, { eph_pk: toBase64Url(new Uint8Array(33)) }), 'bad_frame'],
    ['a malformed kid', (h) => patch(h, { kid: 'rsa:1' }), 'bad_frame'],
    ['an upper-case from', (h) => patch(h, { from: 'C.example' }), 'bad_frame'],
    ['from with a port', (h) => patch(h, { from: 'c.example:8448' }), 'bad_frame'],
    ['to as a number', (h) => patch(h, { to: 7 }), 'bad_frame'],
    ['no type', (h) => patch(h, { type: undefined }), 'bad_frame'],
    ['an unknown type', (h) => patch(h, { type: 'hola' }), 'bad_frame'],
    ['type auth', (h) => patch(h, { type: 'auth' }), 'unexpected_frame'],
    ['not JSON', () => '{"type":"hello"', 'bad_frame'],
    ['a JSON array', () => '[]', 'bad_frame'],
    ['JSON null', () => 'null', 'bad_frame'],
    ['an empty string', () => '', 'bad_frame'],
    ['an oversized frame', (h) => h + ' '.repeat(5000), 'bad_frame'],
    [
      'deep nesting in an extra field',
      (h) => patch(h, { x: JSON.parse('['.repeat(40) + ']'.repeat(40)) }),
      'bad_frame',
    ],
  ]

  it.each(cases)('refuses a C.HELLO with %s', async (_name, mutate, expected) => {
    freshWorld()
    const result = await w.responder(s).receive(mutate(w.initiator(c, 's.example').start()))
    expect(reasonOf(result)).toBe(expected)
  })

  it.each([
    ['an extra field', (a: string) => patch(a, { extra: true })],
    ['a short sig', (a: string) => patch(a, { sig: toBase64Url(new Uint8Array(63)) })],
    ['a sig as bytes array', (a: string) => patch(a, { sig: [1, 2, 3] })],
  ])('refuses an AUTH with %s with bad_frame', async (_name, mutate) => {
    freshWorld()
    const initiator = w.initiator(c, 's.example')
    const responder = w.responder(s)
    const reply = expectOk(await responder.receive(initiator.start())).send!
    const auth = expectOk(await initiator.receive(reply)).send!
    expect(reasonOf(await responder.receive(mutate(auth)))).toBe('bad_frame')
  })
})

/**
 * Known-answer vectors. Fixed inputs: a.example signs with Ed25519 seed 0x01 x 32 (kid ed25519:a1),
 * b.example with seed 0x02 x 32 (kid ed25519:b1); both clocks read T0 = 1700000000000. C's ephemeral
 * crypto_kx seed is 0x11 x 32 and its nonce 0x12 x 32; S's are 0x21 x 32 and 0x22 x 32. The ephemeral
 * X25519 secret key is BLAKE2b-256(seed) (crypto_kx_seed_keypair).
 */
const KAT = {
  clientHello:
    '{"eph_pk":"y4QD2eCFe1XEf_IztrQ3lYjJZEqrq7JYgCe_cYi5ghc","from":"a.example","kid":"ed25519:a1","nonce":"EhISEhISEhISEhISEhISEhISEhISEhISEhISEhISEhI","to":"b.example","ts":1700000000000,"type":"hello","v":1}',
  serverHello:
    '{"eph_pk":"Avnj951KcptECO0Uq6Rh8oxxUZPjqZioQvuZ5krt8lA","from":"b.example","kid":"ed25519:b1","nonce":"IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI","sig":"q8VqtIJz_5IrDo7AmwURBjmSQdN1S-uhNGWCy3aw5AH1s2JpGuvj3bW3tkftvIS6Vn2Q2sykMkJDQD0UyvtDCg","to":"a.example","ts":1700000000000,"type":"hello","v":1}',
  auth: '{"sig":"HUGeZZNuy3MH0OOyx0TH9APKrLG_i3YlyHpSqwqXhZPOnvOHOOGZeemmPuU38YymBqd3Q8hZZZyyjzHgrpkoBw","type":"auth"}',
  serverTranscriptHash: 'ea2b195491a9716827c94dbc253cd08521cf4d512f2fb72f33a93479e6d6dc4b',
  clientTranscriptHash: '9a7d68f682cad47d1dee11f654e1c37d73443f27f751651d262a0d8fe62265fe',
  /** The initiator's keys; the responder's are the same two swapped. */
  clientRx: '1e6506748318ca3a3d2cac62f6a6dd1a371a60995ee55e3b28d398caaa0224e7',
  clientTx: 'f2484c0493010fb3dd5b88069e95bfdb968b88894a1d7089e0c8549b24d297cf',
  aPublicKey: '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c',
  bPublicKey: '8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394',
} as const

describe('known-answer vectors', () => {
  async function katRun() {
    const world = new World()
    const a = party('a.example', 0x01, 'ed25519:a1')
    const b = party('b.example', 0x02, 'ed25519:b1')
    world.publish(a).publish(b)
    return runHandshake(
      world.initiator(a, 'b.example', { random: scriptedRandom(fill(0x11), fill(0x12)) }),
      world.responder(b, { random: scriptedRandom(fill(0x21), fill(0x22)) }),
    )
  }

  it('reproduces the frames, transcript hashes and session keys', async () => {
    const run = await katRun()
    expect(run.clientHello).toBe(KAT.clientHello)
    expect(run.serverHello).toBe(KAT.serverHello)
    expect(run.auth).toBe(KAT.auth)
    expect(hex(run.clientLink.transcriptHash)).toBe(KAT.clientTranscriptHash)
    expect(hex(run.clientLink.keys.rx)).toBe(KAT.clientRx)
    expect(hex(run.clientLink.keys.tx)).toBe(KAT.clientTx)
    expect(hex(run.serverLink.keys.rx)).toBe(KAT.clientTx)
    expect(hex(run.serverLink.keys.tx)).toBe(KAT.clientRx)
  })

  // Independent oracles: noble BLAKE2b and Node's Ed25519 and X25519, not libsodium.
  it('matches an independent computation of the transcript hashes and signatures', () => {
    const cHello = ClientHello.parse(JSON.parse(KAT.clientHello))
    const sHello = ServerHello.parse(JSON.parse(KAT.serverHello))
    const { sig: sSig, ...sUnsigned } = sHello
    const thS = blake2b(utf8(canonicalJson(cHello) + canonicalJson(sUnsigned)), { dkLen: 32 })
    const thC = blake2b(utf8(KAT.clientHello + KAT.serverHello), { dkLen: 32 })
    expect(hex(thS)).toBe(KAT.serverTranscriptHash)
    expect(hex(thC)).toBe(KAT.clientTranscriptHash)
    expect(hex(serverTranscriptHash(cHello, sHello))).toBe(KAT.serverTranscriptHash)
    const aPk = unhex(KAT.aPublicKey)
    const bPk = unhex(KAT.bPublicKey)
    expect(signerFromSeed('ed25519:a1', fill(0x01)).publicKey).toEqual(aPk)
    expect(signerFromSeed('ed25519:b1', fill(0x02)).publicKey).toEqual(bPk)
    const sMessage = concatBytes(utf8('parley/link/S\0'), thS)
    const cMessage = concatBytes(utf8('parley/link/C\0'), thC)
    expect(verifySignature(bPk, sMessage, fromBase64Url(sSig)!)).toBe(true)
    expect(verifySignature(aPk, cMessage, fromBase64Url(JSON.parse(KAT.auth).sig)!)).toBe(true)
    // Domain separation: neither signature verifies under the other role's prefix.
    expect(verifySignature(bPk, concatBytes(utf8('parley/link/C\0'), thS), fromBase64Url(sSig)!)).toBe(false)
  })

  it('matches an independent crypto_kx computation (X25519, then BLAKE2b-512(q || client_pk || server_pk))', () => {
    const x25519Secret = (seed: Uint8Array) => blake2b(seed, { dkLen: 32 })
    const PKCS8_X25519 = unhex('302e020100300506032b656e04220420')
    const SPKI_X25519 = unhex('302a300506032b656e032100')
    const privateKey = (seed: Uint8Array) =>
      createPrivateKey({
        key: Buffer.from(concatBytes(PKCS8_X25519, x25519Secret(seed))),
        format: 'der',
        type: 'pkcs8',
      })
    const publicRaw = (seed: Uint8Array) =>
      new Uint8Array(createPublicKey(privateKey(seed)).export({ format: 'der', type: 'spki' })).subarray(12)
    const cPk = fromBase64Url(JSON.parse(KAT.clientHello).eph_pk)!
    const sPk = fromBase64Url(JSON.parse(KAT.serverHello).eph_pk)!
    expect(publicRaw(fill(0x11))).toEqual(cPk)
    expect(publicRaw(fill(0x21))).toEqual(sPk)
    const sPublicKey = createPublicKey({
      key: Buffer.from(concatBytes(SPKI_X25519, sPk)),
      format: 'der',
      type: 'spki',
    })
    const q = new Uint8Array(diffieHellman({ privateKey: privateKey(fill(0x11)), publicKey: sPublicKey }))
    const keys = blake2b(concatBytes(q, cPk, sPk), { dkLen: 64 })
    expect(hex(keys.subarray(0, 32))).toBe(KAT.clientRx)
    expect(hex(keys.subarray(32))).toBe(KAT.clientTx)
  })

  it('accepts the recorded transcript at a fresh responder with the same inputs', async () => {
    const world = new World()
    const a = party('a.example', 0x01, 'ed25519:a1')
    const b = party('b.example', 0x02, 'ed25519:b1')
    world.publish(a).publish(b)
    const responder = world.responder(b, { random: scriptedRandom(fill(0x21), fill(0x22)) })
    expect(expectOk(await responder.receive(KAT.clientHello)).send).toBe(KAT.serverHello)
    expect(expectOk(await responder.receive(KAT.auth)).link?.peer).toBe('a.example')
  })
})
