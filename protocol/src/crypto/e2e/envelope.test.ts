import { describe, expect, it } from 'vitest'
import { fromBase64Url, toBase64Url, utf8 } from '../../encoding.ts'
import { sodiumReady } from '../sodium.ts'
import {
  createSignedPrekey,
  openEnvelope,
  sealEnvelope,
  SignedPrekeyStore,
  SPK_RETENTION_MS,
  SPK_ROTATION_MS,
  verifySignedPrekey,
  type Envelope,
  type EnvelopeSelf,
  type SenderKeyLookup,
} from './envelope.ts'
import { dhKeyPair, signingKeyPair, type DhKeyPair, type SigningKeyPair } from './primitives.ts'
import { rejection } from './test-utils.ts'

const T0 = 1_700_000_000_000
const DAY = 24 * 3_600_000

// Top-level: some fixtures are built while the suites are collected.
await sodiumReady()

interface Device {
  userId: string
  deviceId: string
  dsk: SigningKeyPair
  dxk: DhKeyPair
  prekeys: SignedPrekeyStore
}

function device(userId: string, deviceId: string): Device {
  const dsk = signingKeyPair()
  const prekeys = new SignedPrekeyStore()
  prekeys.rotate(dsk, T0)
  return { userId, deviceId, dsk, dxk: dhKeyPair(), prekeys }
}

const self = (d: Device): EnvelopeSelf => ({
  userId: d.userId,
  deviceId: d.deviceId,
  dxk: d.dxk,
  prekeys: d.prekeys,
})
const recipient = (d: Device) => ({
  userId: d.userId,
  deviceId: d.deviceId,
  dxk: d.dxk.publicKey,
  dsk: d.dsk.publicKey,
  signedPrekey: d.prekeys.current,
})
// The verified device lists the recipient knows.
const directory =
  (...devices: Device[]): SenderKeyLookup =>
  (userId, deviceId) =>
    devices.find((d) => d.userId === userId && d.deviceId === deviceId)?.dxk.publicKey

describe('to-device envelope (E2E.md section 2.2)', () => {
  const alice = device('@alice:a.example', 'A1')
  const alice2 = device('@alice:a.example', 'A2')
  const bob = device('@bob:b.example', 'B1')
  const carol = device('@carol:c.example', 'C1')
  const known = directory(alice, alice2, bob, carol)
  const payload = utf8('{"type":"room_key"}')

  it('round-trips and names the authenticated sender device', () => {
    const envelope = sealEnvelope(payload, alice, recipient(bob), T0)
    const opened = openEnvelope(envelope, self(bob), known)
    expect(opened.payload).toEqual(payload)
    expect([opened.senderUser, opened.senderDev]).toEqual(['@alice:a.example', 'A1'])
    expect(fromBase64Url(opened.ephemeralHash)!.length).toBe(32)
  })

  it('uses a fresh ephemeral key and nonce per envelope', () => {
    const a = sealEnvelope(payload, alice, recipient(bob), T0)
    const b = sealEnvelope(payload, alice, recipient(bob), T0)
    expect(a.ek).not.toBe(b.ek)
    expect(a.ciphertext).not.toBe(b.ciphertext)
  })

  it('fails closed for the wrong recipient device, even when relabelled', () => {
    const envelope = sealEnvelope(payload, alice, recipient(bob), T0)
    expect(rejection(() => openEnvelope(envelope, self(carol), known))).toBe('wrong_recipient')
    const relabelled = {
      ...envelope,
      recip_user: carol.userId,
      recip_dev: carol.deviceId,
      spk_id: carol.prekeys.current!.spk_id,
    }
    expect(rejection(() => openEnvelope(relabelled, self(carol), known))).toBe('decrypt_failed')
  })

  it('fails closed when relabelled with another sender, known or not', () => {
    const envelope = sealEnvelope(payload, alice, recipient(bob), T0)
    expect(rejection(() => openEnvelope({ ...envelope, sender_dev: 'A2' }, self(bob), known))).toBe(
      'decrypt_failed',
    )
    expect(
      rejection(() =>
        openEnvelope({ ...envelope, sender_user: carol.userId, sender_dev: 'C1' }, self(bob), known),
      ),
    ).toBe('decrypt_failed')
    expect(rejection(() => openEnvelope(envelope, self(bob), directory(bob)))).toBe('unknown_device')
  })

  it('fails closed under the wrong signed prekey', () => {
    const bobNext = device(bob.userId, bob.deviceId)
    const envelope = sealEnvelope(payload, alice, recipient(bob), T0)
    // Same device ids, but the envelope names a prekey this device never had.
    expect(rejection(() => openEnvelope(envelope, self(bobNext), known))).toBe('unknown_prekey')
    // Both prekeys held (after rotation): naming the other one breaks K and AD.
    const rotatedBob: Device = { ...bob, prekeys: SignedPrekeyStore.fromRecords(bob.prekeys.toRecords()) }
    const newer = rotatedBob.prekeys.rotate(bob.dsk, T0 + SPK_ROTATION_MS)
    expect(
      rejection(() => openEnvelope({ ...envelope, spk_id: newer.spk_id }, self(rotatedBob), known)),
    ).toBe('decrypt_failed')
    expect(openEnvelope(envelope, self(rotatedBob), known).payload).toEqual(payload)
  })

  it('refuses to seal to a prekey signed by another key, stale or from the future', () => {
    expect(
      rejection(() => sealEnvelope(payload, alice, { ...recipient(bob), dsk: carol.dsk.publicKey }, T0)),
    ).toBe('bad_signature')
    const served = bob.prekeys.current!
    const forgedKey = {
      ...served,
      public_key: carol.prekeys.current!.public_key,
      spk_id: carol.prekeys.current!.spk_id,
    }
    expect(
      rejection(() => sealEnvelope(payload, alice, { ...recipient(bob), signedPrekey: forgedKey }, T0)),
    ).toBe('bad_signature')
    expect(rejection(() => sealEnvelope(payload, alice, recipient(bob), T0 + 9 * DAY))).toBe('expired')
    expect(rejection(() => sealEnvelope(payload, alice, recipient(bob), T0 - 2 * 3_600_000))).toBe(
      'not_yet_valid',
    )
    expect(
      rejection(() => verifySignedPrekey({ ...served, created_ts: T0 + 1 }, bob.dsk.publicKey, T0)),
    ).toBe('bad_signature')
    expect(rejection(() => verifySignedPrekey({ ...served, spk_id: 'x' }, bob.dsk.publicKey, T0))).toBe(
      'bad_input',
    )
  })

  it('rejects every flipped byte and every truncation with a typed error', () => {
    const envelope = sealEnvelope(payload, alice, recipient(bob), T0)
    const variants: unknown[] = []
    for (const field of [
      'sender_user',
      'sender_dev',
      'recip_user',
      'recip_dev',
      'spk_id',
      'suite',
    ] as const) {
      const bytes = utf8(envelope[field])
      for (let i = 0; i < bytes.length; i++) {
        const bad = bytes.slice()
        bad[i]! ^= 0x01
        variants.push({ ...envelope, [field]: Buffer.from(bad).toString('utf8') })
      }
    }
    for (const field of ['ek', 'nonce', 'ciphertext'] as const) {
      const bytes = fromBase64Url(envelope[field])!
      for (let i = 0; i < bytes.length; i++) {
        const bad = bytes.slice()
        bad[i]! ^= 0x01
        variants.push({ ...envelope, [field]: toBase64Url(bad) })
      }
      for (let length = 0; length < bytes.length; length++)
        variants.push({ ...envelope, [field]: toBase64Url(bytes.subarray(0, length)) })
    }
    variants.push({ ...envelope, ek: toBase64Url(new Uint8Array(32)) }) // low-order point
    for (const variant of variants)
      expect(typeof rejection(() => openEnvelope(variant, self(bob), known))).toBe('string')
    expect(openEnvelope(envelope, self(bob), known).payload).toEqual(payload) // nothing was recorded as seen
  })

  it('detects a replayed envelope by H(EK)', () => {
    const envelope = sealEnvelope(payload, alice, recipient(bob), T0)
    openEnvelope(envelope, self(bob), known)
    expect(rejection(() => openEnvelope(structuredClone(envelope), self(bob), known))).toBe('replay')
    // The dedupe set survives persistence.
    const restored = { ...self(bob), prekeys: SignedPrekeyStore.fromRecords(bob.prekeys.toRecords()) }
    expect(rejection(() => openEnvelope(envelope, restored, known))).toBe('replay')
  })
})

describe('signed prekey lifetime and forward secrecy (E2E.md section 2.1; section 3 row 18, crypto part)', () => {
  it('rotates every 24 h, keeps replaced keys 7 days, then wipes them; captured envelopes become undecryptable', () => {
    const alice = device('@alice:a.example', 'A1')
    const bob = device('@bob:b.example', 'B1')
    const known = directory(alice, bob)
    const captured: Envelope = sealEnvelope(utf8('secret'), alice, recipient(bob), T0)

    // Own the records so the wipe of the private key itself can be observed.
    const records = bob.prekeys.toRecords()
    const oldSecret = records[0]!.secretKey
    const prekeys = SignedPrekeyStore.fromRecords(records)
    const bobSelf = { ...self(bob), prekeys }

    expect(prekeys.needsRotation(T0 + SPK_ROTATION_MS - 1)).toBe(false)
    expect(prekeys.needsRotation(T0 + SPK_ROTATION_MS)).toBe(true)
    const rotatedAt = T0 + SPK_ROTATION_MS
    prekeys.rotate(bob.dsk, rotatedAt)
    expect(prekeys.prune(rotatedAt + SPK_RETENTION_MS)).toEqual([])
    expect(openEnvelope(captured, bobSelf, known).payload).toEqual(utf8('secret')) // within 7 days

    const again = sealEnvelope(
      utf8('again'),
      alice,
      { ...recipient(bob), signedPrekey: records[0]!.signed },
      T0,
    )
    expect(prekeys.prune(rotatedAt + SPK_RETENTION_MS + 1)).toEqual([captured.spk_id])
    expect(oldSecret).toEqual(new Uint8Array(32)) // memzero'd in place
    expect(prekeys.ids).toEqual([prekeys.current!.spk_id])
    expect(prekeys.toRecords().some((r) => r.signed.spk_id === captured.spk_id)).toBe(false)
    expect(rejection(() => openEnvelope(again, bobSelf, known))).toBe('unknown_prekey')
    expect(rejection(() => openEnvelope(captured, bobSelf, known))).toBe('unknown_prekey')
  })

  it('signs prekeys with the DSK over the id, key and timestamp', () => {
    const dsk = signingKeyPair()
    const { signed, keyPair } = createSignedPrekey(dsk, T0)
    const verified = verifySignedPrekey(signed, dsk.publicKey, T0)
    expect(verified.publicKey).toEqual(keyPair.publicKey)
    expect(verified.createdTs).toBe(T0)
    expect(rejection(() => verifySignedPrekey(signed, signingKeyPair().publicKey, T0))).toBe('bad_signature')
    expect(rejection(() => verifySignedPrekey({ ...signed, signature: 'AA' }, dsk.publicKey, T0))).toBe(
      'bad_signature',
    )
    expect(rejection(() => verifySignedPrekey(null, dsk.publicKey, T0))).toBe('bad_input')
  })
})
