import { beforeAll, describe, expect, it } from 'vitest'
import { toBase64Url } from '../../encoding.ts'
import { sodiumReady } from '../sodium.ts'
import { generateDeviceKeys, type VerifiedDevice } from './identity.ts'
import {
  membershipHash,
  membershipHashEquals,
  membershipRoot,
  membershipSnapshotHash,
  signMembership,
  signMembershipSnapshot,
  verifyMembership,
  verifyMembershipSnapshot,
  type MembershipChange,
  type SignedMembershipStatement,
} from './membership.ts'
import { rejection } from './test-utils.ts'

const ROOM = '!r1:a.example'
const ALICE = '@alice:a.example'
const BOB = '@bob:b.example'

beforeAll(sodiumReady)

function device(id: string) {
  const keys = generateDeviceKeys()
  const verified: VerifiedDevice = {
    deviceId: id,
    dsk: keys.dsk.publicKey,
    dxk: keys.dxk.publicKey,
    addedTs: 1,
  }
  return { keys, verified }
}

describe('membership statements (E2E.md 2.3)', () => {
  let alice: ReturnType<typeof device>
  let change: MembershipChange
  let signed: SignedMembershipStatement
  beforeAll(() => {
    alice = device('ALICEDEVICE1')
    change = {
      room: ROOM,
      target: BOB,
      membership: 'invite',
      actor: ALICE,
      actorDevice: 'ALICEDEVICE1',
      prev: membershipRoot(ROOM),
    }
    signed = signMembership(alice.keys.dsk, change)
  })

  it('signs and verifies, naming the signing device and the hash', () => {
    const verified = verifyMembership(signed, ROOM, [alice.verified])
    expect(verified.signer.deviceId).toBe('ALICEDEVICE1')
    expect(verified.hash).toBe(membershipHash(signed))
    expect(verified.statement).toEqual(signed)
  })

  it('the root is fixed per room and differs between rooms', () => {
    expect(membershipRoot(ROOM)).toBe(membershipRoot(ROOM))
    expect(membershipRoot(ROOM)).not.toBe(membershipRoot('!r2:a.example'))
  })

  it('refuses every tampered field', () => {
    const other = toBase64Url(new Uint8Array(32).fill(7))
    const tampered: Array<Partial<Record<keyof SignedMembershipStatement, unknown>>> = [
      { target: '@carol:a.example' },
      { membership: 'join' },
      { actor: '@mallory:a.example' },
      { prev: other },
      { suite: 'e2e/v2' },
      { signature: toBase64Url(new Uint8Array(64)) },
    ]
    for (const patch of tampered) {
      const code = rejection(() => verifyMembership({ ...signed, ...patch }, ROOM, [alice.verified]))
      expect(['bad_signature', 'bad_input']).toContain(code)
    }
    // Moved to another room (and checked as that room's): the signature breaks.
    const moved = { ...signed, room: '!r2:a.example' }
    expect(rejection(() => verifyMembership(moved, '!r2:a.example', [alice.verified]))).toBe('bad_signature')
    expect(
      rejection(() => verifyMembership({ ...signed, actor_device: 'OTHERDEVICE1' }, ROOM, [alice.verified])),
    ).toBe('unknown_device')
  })

  it('refuses a statement of another room, and a wrong key under the same device id', () => {
    expect(rejection(() => verifyMembership(signed, '!r2:a.example', [alice.verified]))).toBe('wrong_room')
    const impostor = { ...device('ALICEDEVICE1').verified }
    expect(rejection(() => verifyMembership(signed, ROOM, [impostor]))).toBe('bad_signature')
    expect(rejection(() => verifyMembership(signed, ROOM, []))).toBe('unknown_device')
  })

  it('refuses malformed input and caller bugs with bad_input', () => {
    for (const bad of [null, 'x', [], { ...signed, membership: 'kick' }, { ...signed, prev: 'short' }])
      expect(rejection(() => verifyMembership(bad, ROOM, [alice.verified]))).toBe('bad_input')
    expect(rejection(() => signMembership(alice.keys.dsk, { ...change, prev: 'nope' }))).toBe('bad_input')
  })

  it('the hash covers the signature and every field: it changes with any of them', () => {
    const again = signMembership(alice.keys.dsk, { ...change, membership: 'ban' })
    expect(membershipHash(again)).not.toBe(membershipHash(signed))
    expect(membershipHashEquals(membershipHash(signed), membershipHash({ ...signed }))).toBe(true)
    expect(membershipHashEquals(membershipHash(signed), membershipRoot(ROOM))).toBe(false)
  })
})

describe('membership snapshots (E2E.md 2.3)', () => {
  it('signs sorted members, verifies, and refuses tampering, another room and a non-member actor', () => {
    const alice = device('ALICEDEVICE1')
    const snapshot = signMembershipSnapshot(alice.keys.dsk, {
      room: ROOM,
      members: [
        { user_id: BOB, membership: 'invite' },
        { user_id: ALICE, membership: 'join' },
      ],
      actor: ALICE,
      actorDevice: 'ALICEDEVICE1',
      prev: membershipRoot(ROOM),
    })
    expect(snapshot.members.map((m) => m.user_id)).toEqual([ALICE, BOB])
    const verified = verifyMembershipSnapshot(snapshot, ROOM, [alice.verified])
    expect(verified.hash).toBe(membershipSnapshotHash(snapshot))
    const added = [...snapshot.members, { user_id: '@zed:z.example', membership: 'join' }]
    expect(
      rejection(() => verifyMembershipSnapshot({ ...snapshot, members: added }, ROOM, [alice.verified])),
    ).toBe('bad_signature')
    const unsorted = [...snapshot.members].reverse()
    expect(
      rejection(() => verifyMembershipSnapshot({ ...snapshot, members: unsorted }, ROOM, [alice.verified])),
    ).toBe('bad_input')
    expect(rejection(() => verifyMembershipSnapshot(snapshot, '!r2:a.example', [alice.verified]))).toBe(
      'wrong_room',
    )
    const bob = device('BOBDEVICE001')
    const byOutsider = signMembershipSnapshot(bob.keys.dsk, {
      room: ROOM,
      members: [{ user_id: ALICE, membership: 'join' }],
      actor: BOB,
      actorDevice: 'BOBDEVICE001',
      prev: membershipRoot(ROOM),
    })
    expect(rejection(() => verifyMembershipSnapshot(byOutsider, ROOM, [bob.verified]))).toBe('bad_input')
  })
})
