import { blake2b } from '@noble/hashes/blake2.js'
import { beforeAll, describe, expect, it } from 'vitest'
import { concatBytes, toBase64Url, utf8 } from '../../encoding.ts'
import { sodiumReady } from '../sodium.ts'
import {
  checkIdentity,
  deviceListHash,
  deviceListHashMatches,
  filterSignedDevices,
  formatSafetyNumber,
  generateDeviceKeys,
  safetyNumber,
  safetyNumberHalf,
  safetyQrPayload,
  signDeviceCertificate,
  signDeviceList,
  verifyDeviceCertificate,
  verifyDeviceList,
  verifyDeviceListUpdate,
  verifySafetyQr,
  type DeviceListDevice,
  type SignedDeviceList,
} from './identity.ts'
import { signingKeyPair, type SigningKeyPair } from './primitives.ts'
import { rejection } from './test-utils.ts'

const T0 = 1_700_000_000_000
const BOB = '@bob:b.example'

// Top-level: some fixtures are built while the suites are collected.
await sodiumReady()

function newDevice(deviceId: string): DeviceListDevice {
  const keys = generateDeviceKeys()
  return { deviceId, dsk: keys.dsk.publicKey, dxk: keys.dxk.publicKey, addedTs: T0 }
}

const served = (d: DeviceListDevice) => ({
  device_id: d.deviceId,
  dsk: toBase64Url(d.dsk),
  dxk: toBase64Url(d.dxk),
})

describe('device keys (E2E.md section 2.1)', () => {
  it('generates a DXK that is a separate X25519 key, not the DSK converted', () => {
    const keys = generateDeviceKeys()
    expect(keys.dxk.publicKey.length).toBe(32)
    expect(keys.dsk.publicKey).not.toEqual(keys.dxk.publicKey)
  })

  it('certifies a device with the UIK and rejects other UIKs, users or edits', () => {
    const uik = signingKeyPair()
    const device = newDevice('B1')
    const cert = signDeviceCertificate(uik, BOB, device, T0)
    const verified = verifyDeviceCertificate(cert, { userId: BOB, uik: uik.publicKey })
    expect([verified.dsk, verified.dxk]).toEqual([device.dsk, device.dxk])
    expect(
      rejection(() => verifyDeviceCertificate(cert, { userId: BOB, uik: signingKeyPair().publicKey })),
    ).toBe('wrong_identity')
    expect(
      rejection(() => verifyDeviceCertificate(cert, { userId: '@eve:b.example', uik: uik.publicKey })),
    ).toBe('wrong_user')
    const other = newDevice('B1')
    expect(
      rejection(() =>
        verifyDeviceCertificate(
          { ...cert, dxk: toBase64Url(other.dxk) },
          { userId: BOB, uik: uik.publicKey },
        ),
      ),
    ).toBe('bad_signature')
    expect(
      rejection(() =>
        verifyDeviceCertificate({ ...cert, signature: undefined }, { userId: BOB, uik: uik.publicKey }),
      ),
    ).toBe('bad_signature')
  })
})

describe('signed device lists (E2E.md section 2.1; section 3 row 11, crypto part)', () => {
  let uik: SigningKeyPair
  let phone: DeviceListDevice
  let laptop: DeviceListDevice
  let v1: SignedDeviceList
  let v2: SignedDeviceList
  const expected = () => ({ userId: BOB, uik: uik.publicKey })

  beforeAll(() => {
    uik = signingKeyPair()
    phone = newDevice('PHONE')
    laptop = newDevice('LAPTOP')
    v1 = signDeviceList(uik, BOB, [phone])
    v2 = signDeviceList(uik, BOB, [phone, laptop], v1)
  })

  it('verifies a signed list and follows its hash chain', () => {
    const trusted = verifyDeviceList(v1, expected())
    expect(trusted.version).toBe(1)
    expect(v1.prev_hash).toBeNull()
    expect(v2.prev_hash).toBe(trusted.hash)
    const newer = verifyDeviceListUpdate(trusted, [v2])
    expect(newer.devices.map((d) => d.deviceId)).toEqual(['PHONE', 'LAPTOP'])
    const v3 = signDeviceList(uik, BOB, [laptop], v2)
    expect(verifyDeviceListUpdate(trusted, [v2, v3]).version).toBe(3)
  })

  it('ignores a device the server added: the list no longer verifies and the device is filtered out', () => {
    const mallory = newDevice('MALLORY')
    const tampered = {
      ...v2,
      devices: [...v2.devices, { ...served(mallory), added_ts: T0 }],
    }
    expect(rejection(() => verifyDeviceList(tampered, expected()))).toBe('bad_signature')
    const list = verifyDeviceList(v2, expected())
    const { accepted, rejected } = filterSignedDevices([served(phone), served(laptop), served(mallory)], list)
    expect(accepted.map((d) => d.deviceId)).toEqual(['PHONE', 'LAPTOP'])
    expect(rejected.map((d) => d.device_id)).toEqual(['MALLORY'])
    // Same id as a real device but the server's keys: still rejected.
    const swapped = { ...served(phone), dxk: toBase64Url(mallory.dxk) }
    expect(filterSignedDevices([swapped], list).rejected).toEqual([swapped])
  })

  it('rejects a list signed by a different UIK, for another user, or with edits', () => {
    const eve = signingKeyPair()
    const byEve = signDeviceList(eve, BOB, [phone])
    expect(rejection(() => verifyDeviceList(byEve, expected()))).toBe('wrong_identity')
    // Eve's signature under Bob's UIK field.
    expect(rejection(() => verifyDeviceList({ ...byEve, uik: toBase64Url(uik.publicKey) }, expected()))).toBe(
      'bad_signature',
    )
    expect(rejection(() => verifyDeviceList(v1, { userId: '@eve:b.example', uik: uik.publicKey }))).toBe(
      'wrong_user',
    )
    expect(rejection(() => verifyDeviceList({ ...v2, version: 7 }, expected()))).toBe('bad_signature')
    expect(rejection(() => verifyDeviceList({ ...v1, signature: 'AAAA' }, expected()))).toBe('bad_signature')
    expect(
      rejection(() => verifyDeviceList({ ...v1, devices: [served(phone), served(phone)] }, expected())),
    ).toBe('bad_input')
  })

  it('rejects rollback to an older or equal version', () => {
    const trusted = verifyDeviceList(v2, expected())
    expect(rejection(() => verifyDeviceListUpdate(trusted, [v1]))).toBe('rollback')
    const fork = signDeviceList(uik, BOB, [laptop], v1) // another version 2
    expect(rejection(() => verifyDeviceListUpdate(trusted, [fork]))).toBe('rollback')
  })

  it('rejects a broken hash chain or a skipped version', () => {
    const trusted = verifyDeviceList(v1, expected())
    const fork = signDeviceList(uik, BOB, [laptop], v1)
    const v3OnFork = signDeviceList(uik, BOB, [phone], fork)
    expect(rejection(() => verifyDeviceListUpdate(trusted, [v2, v3OnFork]))).toBe('bad_chain')
    expect(rejection(() => verifyDeviceListUpdate(trusted, [v3OnFork]))).toBe('bad_chain')
    expect(rejection(() => verifyDeviceList({ ...v2, prev_hash: null }, expected()))).toBe('bad_chain')
  })

  it('gives different H(DL) to different lists so gossip catches a split view', () => {
    const fork = signDeviceList(uik, BOB, [laptop], v1)
    const seenByAlice = verifyDeviceList(v2, expected())
    const seenByCarol = verifyDeviceList(fork, expected())
    expect(seenByAlice.hash).not.toBe(seenByCarol.hash)
    expect(deviceListHashMatches(seenByAlice, seenByCarol.hash)).toBe(false)
    expect(deviceListHashMatches(seenByAlice, deviceListHash(v2))).toBe(true)
    expect(deviceListHashMatches(seenByAlice, 'not base64!')).toBe(false)
  })
})

describe('safety numbers (E2E.md section 2.1; section 3 row 13)', () => {
  const alice = { userId: '@alice:a.example', uik: signingKeyPairFromByte(1).publicKey }
  const bob = { userId: BOB, uik: signingKeyPairFromByte(2).publicKey }

  it('is 30 digits per user as the spec: BLAKE2b-512 iterated 5200 times', () => {
    const userId = utf8(bob.userId)
    let h = concatBytes(utf8('v1'), Uint8Array.of(0, 0, 0, userId.length), userId, bob.uik)
    for (let i = 0; i < 5200; i++) h = blake2b(concatBytes(h, bob.uik), { dkLen: 64 })
    let expected = ''
    for (let c = 0; c < 6; c++) {
      let v = 0
      for (let j = 0; j < 5; j++) v = v * 256 + h[c * 5 + j]!
      expected += String(v % 100000).padStart(5, '0')
    }
    expect(safetyNumberHalf(bob)).toBe(expected)
    expect(expected).toMatch(/^\d{30}$/)
  })

  it('is the same 60 digits on both sides', () => {
    const number = safetyNumber(alice, bob)
    expect(number).toMatch(/^\d{60}$/)
    expect(safetyNumber(bob, alice)).toBe(number)
    expect(formatSafetyNumber(number).split(' ')).toHaveLength(12)
  })

  it("changes when Bob's UIK is swapped, and TOFU reports a blocking change", () => {
    const swapped = { userId: BOB, uik: signingKeyPairFromByte(3).publicKey }
    expect(safetyNumber(alice, swapped)).not.toBe(safetyNumber(alice, bob))
    expect(checkIdentity(undefined, bob)).toEqual({ status: 'new' })
    expect(checkIdentity({ ...bob, verified: false }, bob)).toEqual({ status: 'match', verified: false })
    expect(checkIdentity({ ...bob, verified: false }, swapped)).toEqual({
      status: 'changed',
      blockSending: false,
    })
    expect(checkIdentity({ ...bob, verified: true }, swapped)).toEqual({
      status: 'changed',
      blockSending: true,
    })
  })

  it('accepts a QR code carrying both full keys as pinned, in both directions', () => {
    verifySafetyQr(safetyQrPayload(bob, alice), alice, bob) // Alice scans Bob
    verifySafetyQr(safetyQrPayload(alice, bob), bob, alice) // Bob scans Alice
    const swapped = { userId: BOB, uik: signingKeyPairFromByte(3).publicKey }
    expect(rejection(() => verifySafetyQr(safetyQrPayload(swapped, alice), alice, bob))).toBe(
      'wrong_identity',
    )
    expect(
      rejection(() => verifySafetyQr(safetyQrPayload(bob, { ...alice, uik: bob.uik }), alice, bob)),
    ).toBe('wrong_identity')
    const qr = safetyQrPayload(bob, alice)
    expect(rejection(() => verifySafetyQr(qr.subarray(0, qr.length - 1), alice, bob))).toBe('bad_input')
    expect(rejection(() => verifySafetyQr(concatBytes(qr, Uint8Array.of(0)), alice, bob))).toBe('bad_input')
  })
})

describe('ids are never keys (E2E.md section 3 row 14)', () => {
  it('a device whose id equals the identity-key string does not pass as the identity', () => {
    const bobUik = signingKeyPair()
    const malloryUik = signingKeyPair()
    const keyString = toBase64Url(bobUik.publicKey)
    const alice = { userId: '@alice:a.example', uik: signingKeyPair().publicKey }
    const pinnedBob = { userId: BOB, uik: bobUik.publicKey }

    // The server lists a device named after Bob's UIK, with Mallory's keys, in a list Mallory signed.
    const trap = { ...newDevice(keyString), dsk: malloryUik.publicKey }
    const malloryList = signDeviceList(malloryUik, BOB, [trap])
    expect(rejection(() => verifyDeviceList(malloryList, pinnedBob))).toBe('wrong_identity')

    // Bob's real list, and the server serves the trap device under Bob's name.
    const bobList = verifyDeviceList(signDeviceList(bobUik, BOB, [newDevice('B1')]), pinnedBob)
    expect(filterSignedDevices([served(trap)], bobList).accepted).toEqual([])

    // Mallory's QR code claims to be Bob, with the key string as a "device id"-looking user id or her own key.
    const fakeQr = safetyQrPayload({ userId: BOB, uik: malloryUik.publicKey }, alice)
    expect(rejection(() => verifySafetyQr(fakeQr, alice, pinnedBob))).toBe('wrong_identity')
    const idQr = safetyQrPayload({ userId: keyString, uik: malloryUik.publicKey }, alice)
    expect(rejection(() => verifySafetyQr(idQr, alice, pinnedBob))).toBe('wrong_identity')
    expect(
      checkIdentity({ ...pinnedBob, verified: true }, { userId: BOB, uik: malloryUik.publicKey }).status,
    ).toBe('changed')
    expect(safetyNumber(alice, { userId: BOB, uik: malloryUik.publicKey })).not.toBe(
      safetyNumber(alice, pinnedBob),
    )
  })
})

function signingKeyPairFromByte(byte: number): SigningKeyPair {
  return signingKeyPair(new Uint8Array(32).fill(byte))
}
