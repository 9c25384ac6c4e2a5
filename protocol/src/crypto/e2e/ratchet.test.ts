import { blake2b } from '@noble/hashes/blake2.js'
import { describe, expect, it } from 'vitest'
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from '../../encoding.ts'
import { sodiumReady } from '../sodium.ts'
import { aeadEncrypt, encodeFields, pad, sign, signingKeyPair, u64be } from './primitives.ts'
import {
  deriveMessageKey,
  E2E_SUITE,
  InboundGroupSession,
  InboundGroupSessionStore,
  MAX_AGE_GRACE_MS,
  nextChainKey,
  OutboundGroupSession,
  rotationReason,
  seekChainKey,
  type GroupMessage,
  type GroupPlaintext,
} from './ratchet.ts'
import { rejection } from './test-utils.ts'

const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const T0 = 1_700_000_000_000
const HOUR = 3_600_000
const ROOM = '!room:a.example'
const EPOCH = new Uint8Array(32).fill(0xee)
const ALICE = { userId: '@alice:a.example', deviceId: 'ALICEDEV' }

// Top-level: some fixtures are built while the suites are collected.
await sodiumReady()

function body(n: number, room = ROOM): GroupPlaintext {
  return { room_id: room, type: 'm.message', content: { body: `message ${n}` } }
}

function aliceSession(options: { maxMsgs?: number; room?: string; dev?: string } = {}): OutboundGroupSession {
  return OutboundGroupSession.create({
    roomId: options.room ?? ROOM,
    senderUser: ALICE.userId,
    senderDev: options.dev ?? ALICE.deviceId,
    membershipEpoch: EPOCH,
    now: T0,
    ...(options.maxMsgs === undefined ? {} : { maxMsgs: options.maxMsgs }),
  })
}

function receiverOf(out: OutboundGroupSession): InboundGroupSession {
  return InboundGroupSession.fromRoomKey(
    out.exportRoomKey(),
    { userId: out.senderUser, deviceId: out.senderDev },
    T0,
  )
}

const ctx = { roomId: ROOM, receivedTs: T0 + 1000 }

// Deterministic shuffle (mulberry32) so the test is reproducible.
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let a = seed
  const random = (): number => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const out = items.slice()
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

describe('ratchet vector, CK_0 = 00..1f (E2E.md section 3 row 2)', () => {
  const ck0 = Uint8Array.from({ length: 32 }, (_, i) => i)

  it('derives MK_0, CK_1, MK_1 and MK_2 as published', () => {
    const mk0 = toHex(deriveMessageKey(ck0))
    const ck1 = nextChainKey(ck0)
    const mk1 = toHex(deriveMessageKey(ck1))
    const mk2 = toHex(deriveMessageKey(nextChainKey(ck1)))
    expect([mk0.slice(0, 8), mk0.slice(-6)]).toEqual(['1f4d1d7e', '70d3a8'])
    expect([toHex(ck1).slice(0, 8), toHex(ck1).slice(-6)]).toEqual(['8d763e1f', '16abd2'])
    expect([mk1.slice(0, 8), mk1.slice(-6)]).toEqual(['4f1dea4e', '021971'])
    expect([mk2.slice(0, 8), mk2.slice(-6)]).toEqual(['61b19bde', '64e30c'])
    expect(mk0).toBe('1f4d1d7edc2a0d03aae1466a21f1ca103c8749bdb5e332dceee768908670d3a8')
  })

  it('equals keyed BLAKE2b with salt LE64(id) ‖ 0^8 and personal "grpratch" ‖ 0^8', () => {
    const kdf = (id: number, key: Uint8Array): Uint8Array =>
      blake2b(new Uint8Array(0), {
        key,
        dkLen: 32,
        salt: concatBytes(Uint8Array.of(id, 0, 0, 0, 0, 0, 0, 0), new Uint8Array(8)),
        personalization: concatBytes(utf8('grpratch'), new Uint8Array(8)),
      })
    expect(deriveMessageKey(ck0)).toEqual(kdf(1, ck0))
    expect(nextChainKey(ck0)).toEqual(kdf(2, ck0))
  })

  it('seeks from index 0 to 99 in exactly 99 steps', () => {
    let manual: Uint8Array = ck0
    for (let i = 0; i < 99; i++) manual = nextChainKey(manual)
    const sought = seekChainKey(ck0, 99)
    expect(sought.steps).toBe(99)
    expect(sought.chainKey).toEqual(manual)
    expect(ck0[31]).toBe(31) // input untouched
    expect(rejection(() => seekChainKey(ck0, 1001))).toBe('too_far_ahead')
  })

  it('an inbound session jumping from 0 to 99 takes 99 chain steps', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    let last: GroupMessage | undefined
    for (let i = 0; i < 100; i++) last = out.encrypt(body(i), T0)
    expect(inbound.decrypt(last, ctx).index).toBe(99)
    expect(inbound.kdfSteps).toBe(99)
  })
})

describe('outbound session (E2E.md section 2.4)', () => {
  it('steps and replaces CK_i after every message', () => {
    const out = aliceSession()
    const ck0 = fromBase64Url(out.exportRoomKey().chain_key)!
    out.encrypt(body(0), T0)
    expect(out.index).toBe(1)
    expect(fromBase64Url(out.exportRoomKey().chain_key)).toEqual(nextChainKey(ck0))
  })

  it('produces messages with the v1 header and base64url fields', () => {
    const message = aliceSession().encrypt(body(0), T0)
    expect(Object.keys(message).sort()).toEqual(
      [
        'ciphertext',
        'index',
        'nonce',
        'sender_dev',
        'sender_user',
        'session_id',
        'signature',
        'suite',
      ].sort(),
    )
    expect(message.suite).toBe(E2E_SUITE)
    expect(fromBase64Url(message.ciphertext)!.length % 256).toBe(16) // padded to 256-byte blocks
  })

  it('refuses to encrypt past max_msgs or max_age, or for another room', () => {
    const out = aliceSession({ maxMsgs: 10 })
    for (let i = 0; i < 10; i++) out.encrypt(body(i), T0)
    expect(rejection(() => out.encrypt(body(10), T0))).toBe('session_exhausted')
    const fresh = aliceSession()
    expect(rejection(() => fresh.encrypt(body(0), T0 + 24 * HOUR))).toBe('session_exhausted')
    expect(rejection(() => fresh.encrypt(body(0, '!other:a.example'), T0))).toBe('wrong_room')
    fresh.dispose()
    expect(rejection(() => fresh.encrypt(body(0), T0))).toBe('session_exhausted')
  })

  it('checks room limits: max_msgs 10..1000, max_age 1 h..7 d', () => {
    const base = { roomId: ROOM, senderUser: ALICE.userId, senderDev: ALICE.deviceId, membershipEpoch: EPOCH }
    expect(rejection(() => OutboundGroupSession.create({ ...base, maxMsgs: 9 }))).toBe('bad_input')
    expect(rejection(() => OutboundGroupSession.create({ ...base, maxMsgs: 1001 }))).toBe('bad_input')
    expect(rejection(() => OutboundGroupSession.create({ ...base, maxAge: HOUR - 1 }))).toBe('bad_input')
    expect(rejection(() => OutboundGroupSession.create({ ...base, maxAge: 7 * 24 * HOUR + 1 }))).toBe(
      'bad_input',
    )
    expect(
      rejection(() => OutboundGroupSession.create({ ...base, membershipEpoch: new Uint8Array(31) })),
    ).toBe('bad_input')
  })
})

describe('rotation rule (E2E.md section 2.4)', () => {
  const base = { messagesSent: 5, createdTs: T0, maxMsgs: 100, maxAge: 24 * HOUR, now: T0 + HOUR }
  it('rotates on member removal, device removal, UIK change, 100 messages and 24 h, not otherwise', () => {
    expect(rotationReason(base)).toBeNull()
    expect(rotationReason({ ...base, memberRemoved: true })).toBe('member_removed')
    expect(rotationReason({ ...base, deviceRemoved: true })).toBe('device_removed')
    expect(rotationReason({ ...base, identityChanged: true })).toBe('identity_changed')
    expect(rotationReason({ ...base, messagesSent: 100 })).toBe('max_msgs')
    expect(rotationReason({ ...base, now: T0 + 24 * HOUR })).toBe('max_age')
    const out = aliceSession()
    expect(out.rotationReason(T0)).toBeNull()
    expect(out.rotationReason(T0, { memberRemoved: true })).toBe('member_removed')
  })
})

describe('shuffled delivery (E2E.md section 3 row 3)', () => {
  it('decrypts 100 messages delivered in random order, each exactly once', () => {
    const out = aliceSession()
    const store = new InboundGroupSessionStore()
    store.add(receiverOf(out))
    const messages = Array.from({ length: 100 }, (_, i) => out.encrypt(body(i), T0))
    const shown = new Set<number>()
    for (const message of shuffled(messages, 42)) {
      const result = store.decrypt(message, ctx)
      expect(result.plaintext).toEqual(body(result.index))
      expect(shown.has(result.index)).toBe(false)
      shown.add(result.index)
    }
    expect(shown.size).toBe(100)
    for (const message of shuffled(messages, 7))
      expect(rejection(() => store.decrypt(message, ctx))).toBe('replay')
    expect(store.get(out.sessionId)!.kdfSteps).toBeLessThanOrEqual(100)
  })
})

describe('tampering (E2E.md section 3 row 4)', () => {
  it('rejects every flipped byte of header, nonce, ciphertext and signature with a typed error', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    const variants: unknown[] = []
    for (const field of ['suite', 'sender_user', 'sender_dev'] as const) {
      const bytes = utf8(message[field])
      for (let i = 0; i < bytes.length; i++) {
        const bad = bytes.slice()
        bad[i]! ^= 0x01
        variants.push({ ...message, [field]: Buffer.from(bad).toString('utf8') })
      }
    }
    for (const field of ['session_id', 'nonce', 'ciphertext', 'signature'] as const) {
      const bytes = fromBase64Url(message[field])!
      for (let i = 0; i < bytes.length; i++) {
        for (const mask of [0x01, 0x80]) {
          const bad = bytes.slice()
          bad[i]! ^= mask
          variants.push({ ...message, [field]: toBase64Url(bad) })
        }
      }
      variants.push({ ...message, [field]: message[field] + '!' }) // not base64url
    }
    for (const index of [1, 2, 50, 99, 100, 2 ** 53, -1, 0.5, '0', null]) variants.push({ ...message, index })
    for (const key of Object.keys(message)) {
      const missing: Record<string, unknown> = { ...message }
      delete missing[key]
      variants.push(missing)
    }
    variants.push(null, 'text', [], { ...message, suite: 'e2e/v2' })
    let rejected = 0
    for (const variant of variants) {
      expect(typeof rejection(() => inbound.decrypt(variant, ctx))).toBe('string')
      rejected++
    }
    expect(rejected).toBeGreaterThan(700)
    expect(inbound.kdfSteps).toBe(0) // no failed attempt advanced the chain
    expect(inbound.decrypt(message, ctx).plaintext).toEqual(body(0)) // nor broke the session
  })

  it('rejects every truncation of nonce, ciphertext and signature', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    for (const field of ['nonce', 'ciphertext', 'signature'] as const) {
      const bytes = fromBase64Url(message[field])!
      for (let length = 0; length < bytes.length; length++) {
        const code = rejection(() =>
          inbound.decrypt({ ...message, [field]: toBase64Url(bytes.subarray(0, length)) }, ctx),
        )
        expect(['bad_input', 'bad_signature']).toContain(code)
      }
    }
    expect(inbound.decrypt(message, ctx).index).toBe(0)
  })

  it('rejects authentic ciphertext whose padding or JSON is malformed (a buggy or malicious sender)', () => {
    const signing = signingKeyPair()
    const chainKey = new Uint8Array(32).fill(3)
    const payload = {
      suite: E2E_SUITE,
      room_id: ROOM,
      session_id: toBase64Url(signing.publicKey),
      sender_user: ALICE.userId,
      sender_dev: ALICE.deviceId,
      index: 0,
      chain_key: toBase64Url(chainKey),
      created_ts: T0,
      max_msgs: 100,
      max_age: 24 * HOUR,
      membership_epoch: toBase64Url(EPOCH),
    }
    const forge = (index: number, padded: Uint8Array): GroupMessage => {
      let ck: Uint8Array = chainKey
      for (let i = 0; i < index; i++) ck = nextChainKey(ck)
      const ad = encodeFields(
        'e2e/v1/msg',
        ROOM,
        signing.publicKey,
        ALICE.userId,
        ALICE.deviceId,
        u64be(index),
        EPOCH,
      )
      const { nonce, ciphertext } = aeadEncrypt(deriveMessageKey(ck), padded, ad)
      const signature = sign(signing.secretKey, encodeFields('e2e/v1/msgsig', ad, nonce, ciphertext))
      return {
        suite: E2E_SUITE,
        session_id: payload.session_id,
        sender_user: ALICE.userId,
        sender_dev: ALICE.deviceId,
        index,
        nonce: toBase64Url(nonce),
        ciphertext: toBase64Url(ciphertext),
        signature: toBase64Url(signature),
      }
    }
    const inbound = InboundGroupSession.fromRoomKey(payload, ALICE, T0)
    expect(rejection(() => inbound.decrypt(forge(0, new Uint8Array(256)), ctx))).toBe('bad_padding')
    expect(rejection(() => inbound.decrypt(forge(0, pad(utf8('not json'))), ctx))).toBe('bad_input')
    const otherRoom = pad(utf8(JSON.stringify(body(0, '!other:a.example'))))
    expect(rejection(() => inbound.decrypt(forge(0, otherRoom), ctx))).toBe('wrong_room')
    expect(inbound.decrypt(forge(0, pad(utf8(JSON.stringify(body(0))))), ctx).plaintext).toEqual(body(0))
  })
})

describe('context binding (E2E.md section 3 row 5)', () => {
  it('rejects a ciphertext moved to another room', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    expect(rejection(() => inbound.decrypt(message, { ...ctx, roomId: '!other:a.example' }))).toBe(
      'wrong_room',
    )
    expect(inbound.decrypt(message, ctx).index).toBe(0)
  })

  it('rejects a message relabelled with another device of the sender, even one with its own session', () => {
    const phone = aliceSession()
    const laptop = aliceSession({ dev: 'ALICELAPTOP' })
    const store = new InboundGroupSessionStore()
    store.add(receiverOf(phone))
    store.add(receiverOf(laptop))
    const message = phone.encrypt(body(0), T0)
    expect(rejection(() => store.decrypt({ ...message, sender_dev: 'ALICELAPTOP' }, ctx))).toBe(
      'wrong_sender',
    )
    expect(rejection(() => store.decrypt({ ...message, sender_user: '@mallory:a.example' }, ctx))).toBe(
      'wrong_sender',
    )
    const rebound = { ...message, sender_dev: 'ALICELAPTOP', session_id: laptop.sessionId }
    expect(rejection(() => store.decrypt(rebound, ctx))).toBe('bad_signature')
    expect(store.decrypt(message, ctx).senderDev).toBe(ALICE.deviceId)
  })

  it('does not decrypt a message of a session in another room even with that session known', () => {
    const here = aliceSession()
    const there = aliceSession({ room: '!other:a.example' })
    const store = new InboundGroupSessionStore()
    store.add(receiverOf(here))
    store.add(receiverOf(there))
    const message = there.encrypt(body(0, '!other:a.example'), T0)
    expect(rejection(() => store.decrypt(message, ctx))).toBe('wrong_room')
  })
})

describe('insider forgery (E2E.md section 3 row 6)', () => {
  it("rejects C's message in A's session with a valid AEAD under CK_i but C's own signature", () => {
    const out = aliceSession()
    const roomKey = out.exportRoomKey()
    const bob = receiverOf(out)
    const carol = signingKeyPair()
    const ck = fromBase64Url(roomKey.chain_key)!
    const ad = encodeFields(
      'e2e/v1/msg',
      ROOM,
      fromBase64Url(out.sessionId)!,
      ALICE.userId,
      ALICE.deviceId,
      u64be(0),
      EPOCH,
    )
    const { nonce, ciphertext } = aeadEncrypt(deriveMessageKey(ck), pad(utf8(JSON.stringify(body(666)))), ad)
    const forged: GroupMessage = {
      suite: E2E_SUITE,
      session_id: out.sessionId,
      sender_user: ALICE.userId,
      sender_dev: ALICE.deviceId,
      index: 0,
      nonce: toBase64Url(nonce),
      ciphertext: toBase64Url(ciphertext),
      signature: toBase64Url(sign(carol.secretKey, encodeFields('e2e/v1/msgsig', ad, nonce, ciphertext))),
    }
    expect(rejection(() => bob.decrypt(forged, ctx))).toBe('bad_signature')
    expect(bob.decrypt(out.encrypt(body(0), T0), ctx).plaintext).toEqual(body(0))
  })

  it("rejects a session C creates in A's name: the room key did not come from A", () => {
    const fake = aliceSession()
    const carol = { userId: '@carol:a.example', deviceId: 'CAROLDEV' }
    expect(rejection(() => InboundGroupSession.fromRoomKey(fake.exportRoomKey(), carol, T0))).toBe(
      'wrong_sender',
    )
  })
})

describe('replay, age and index limits (E2E.md section 3 row 7)', () => {
  it('flags a replay of the same (session, i) under any new event id', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    inbound.decrypt(message, ctx)
    expect(rejection(() => inbound.decrypt(structuredClone(message), ctx))).toBe('replay')
    expect(inbound.hasSeen(0)).toBe(true)
  })

  it('rejects messages received after created_ts + max_age + 1 h', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    const late = { roomId: ROOM, receivedTs: T0 + 24 * HOUR + MAX_AGE_GRACE_MS + 1 }
    expect(rejection(() => inbound.decrypt(message, late))).toBe('expired')
    expect(inbound.decrypt(message, { roomId: ROOM, receivedTs: T0 + 25 * HOUR }).index).toBe(0)
  })

  it('refuses to import sessions older than 2 × max_age or from the future', () => {
    const key = aliceSession().exportRoomKey()
    expect(rejection(() => InboundGroupSession.fromRoomKey(key, ALICE, T0 + 48 * HOUR + 1))).toBe('expired')
    expect(rejection(() => InboundGroupSession.fromRoomKey(key, ALICE, T0 - 2 * HOUR))).toBe('not_yet_valid')
    expect(InboundGroupSession.fromRoomKey(key, ALICE, T0 + 48 * HOUR).sessionId).toBe(key.session_id)
  })

  it('rejects i >= max_msgs before any signature check or key derivation', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    for (const index of [100, 1000, 2 ** 40])
      expect(rejection(() => inbound.decrypt({ ...message, index }, ctx))).toBe('too_far_ahead')
    expect(inbound.kdfSteps).toBe(0)
  })

  it('does no skip work for an unsigned message far ahead', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    expect(rejection(() => inbound.decrypt({ ...message, index: 99 }, ctx))).toBe('bad_signature')
    expect(inbound.kdfSteps).toBe(0)
  })

  it('refuses room keys with index >= max_msgs or out-of-range limits', () => {
    const key = aliceSession().exportRoomKey()
    expect(rejection(() => InboundGroupSession.fromRoomKey({ ...key, index: 100 }, ALICE, T0))).toBe(
      'too_far_ahead',
    )
    expect(rejection(() => InboundGroupSession.fromRoomKey({ ...key, max_msgs: 100000 }, ALICE, T0))).toBe(
      'bad_input',
    )
    expect(rejection(() => InboundGroupSession.fromRoomKey({ ...key, chain_key: 'AA' }, ALICE, T0))).toBe(
      'bad_input',
    )
  })

  it('ignores a second key for a known session id', () => {
    const out = aliceSession()
    const store = new InboundGroupSessionStore()
    expect(store.add(receiverOf(out))).toBe(true)
    expect(store.add(receiverOf(out))).toBe(false)
    expect(store.size).toBe(1)
    expect(rejection(() => store.decrypt(aliceSession().encrypt(body(0), T0), ctx))).toBe('unknown_session')
  })
})

describe('late joiner (E2E.md section 3 row 9)', () => {
  it('a member given the key at index k decrypts index >= k only', () => {
    const out = aliceSession()
    const early = Array.from({ length: 5 }, (_, i) => out.encrypt(body(i), T0))
    const dave = receiverOf(out) // key at index 5
    expect(dave.firstKnownIndex).toBe(5)
    const late = Array.from({ length: 3 }, (_, i) => out.encrypt(body(5 + i), T0))
    for (const message of early) expect(rejection(() => dave.decrypt(message, ctx))).toBe('unknown_index')
    for (const message of late.reverse()) expect(dave.decrypt(message, ctx).index).toBeGreaterThanOrEqual(5)
    expect(dave.exportRoomKey().index).toBe(5)
  })
})

describe('persistence (E2E.md section 2.4)', () => {
  it('restores an outbound session that continues at the same index with the same keys', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    inbound.decrypt(out.encrypt(body(0), T0), ctx)
    const restored = OutboundGroupSession.fromState(structuredClone(out.toState()))
    expect(restored.sessionId).toBe(out.sessionId)
    expect(restored.index).toBe(1)
    expect(inbound.decrypt(restored.encrypt(body(1), T0), ctx).index).toBe(1)
    const state = out.toState()
    const otherKey = toBase64Url(signingKeyPair().secretKey.slice(0, 32))
    const mixed = { ...state, signing_key: otherKey + state.signing_key.slice(otherKey.length) }
    expect(rejection(() => OutboundGroupSession.fromState(mixed))).toBe('bad_input')
  })

  it('restores an inbound session with its skipped keys and replay set', () => {
    const out = aliceSession()
    const inbound = receiverOf(out)
    const messages = Array.from({ length: 6 }, (_, i) => out.encrypt(body(i), T0))
    inbound.decrypt(messages[4], ctx) // skips 0..3
    inbound.decrypt(messages[1], ctx)
    const restored = InboundGroupSession.fromState(structuredClone(inbound.toState()))
    expect(rejection(() => restored.decrypt(messages[4], ctx))).toBe('replay')
    expect(rejection(() => restored.decrypt(messages[1], ctx))).toBe('replay')
    for (const i of [0, 2, 3, 5]) expect(restored.decrypt(messages[i], ctx).index).toBe(i)
    const state = inbound.toState()
    expect(rejection(() => InboundGroupSession.fromState({ ...state, chain_index: 101 }))).toBe('bad_input')
    expect(rejection(() => InboundGroupSession.fromState({ ...state, seen: [7] }))).toBe('bad_input')
  })

  it('imports old sessions from the own backup without the 2 × max_age cut-off', () => {
    const out = aliceSession()
    const receiver = receiverOf(out)
    const message = out.encrypt(body(0), T0)
    receiver.decrypt(message, ctx)
    const key = receiver.exportRoomKey() // still from index 0, for backup
    expect(key.index).toBe(0)
    const monthLater = T0 + 30 * 24 * HOUR
    expect(rejection(() => InboundGroupSession.fromRoomKey(key, ALICE, monthLater))).toBe('expired')
    const restored = InboundGroupSession.fromTrustedBackup(key)
    expect(restored.decrypt(message, ctx).plaintext).toEqual(body(0))
  })
})
