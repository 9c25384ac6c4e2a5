import { beforeAll, describe, expect, it } from 'vitest'
import * as e2e from '../../crypto/e2e/index.ts'
import { sodiumReady } from '../../crypto/sodium.ts'
import type { MembershipRecord, RoomMembershipResponse } from '../../schema/membership.ts'
import {
  emptyMembershipMemory,
  membershipUsers,
  rememberStatement,
  validateMembership,
} from './membership.ts'

const ROOM = '!room:a.example'
const ALICE = '@alice:a.example'
const BOB = '@bob:b.example'
const MALLORY = '@mallory:a.example'

beforeAll(sodiumReady)

/** One device per user, and the statements they sign. */
class Users {
  readonly keys = new Map<string, e2e.DeviceKeyPairs>()
  device(user: string): e2e.VerifiedDevice {
    let keys = this.keys.get(user)
    if (!keys) this.keys.set(user, (keys = e2e.generateDeviceKeys()))
    return { deviceId: 'DEVICE000001', dsk: keys.dsk.publicKey, dxk: keys.dxk.publicKey, addedTs: 1 }
  }
  sign(actor: string, target: string, membership: e2e.MembershipState, prev = e2e.membershipRoot(ROOM)) {
    this.device(actor)
    return e2e.signMembership(this.keys.get(actor)!.dsk, {
      room: ROOM,
      target,
      membership,
      actor,
      actorDevice: 'DEVICE000001',
      prev,
    })
  }
  devicesOf = (user: string) => (this.keys.has(user) ? [this.device(user)] : undefined)
}

function record(
  user: string,
  membership: MembershipRecord['membership'],
  seq: number,
  statement: e2e.SignedMembershipStatement | null,
  sender = statement?.actor ?? user,
  invite: e2e.SignedMembershipStatement | null = null,
): MembershipRecord {
  return {
    user_id: user,
    membership,
    sender,
    seq,
    statement: statement ? { ...statement } : null,
    invite_statement: invite ? { ...invite } : null,
  }
}

function view(
  members: MembershipRecord[],
  extra: Partial<RoomMembershipResponse> = {},
): RoomMembershipResponse {
  return { creator: ALICE, encrypted_at_create: true, snapshot: null, snapshot_seq: null, members, ...extra }
}

describe('validateMembership (E2E.md 2.3)', () => {
  it('counts a self-signed join only after an invite by a validated member (a server cannot make up a joiner)', () => {
    const u = new Users()
    u.device(ALICE)
    const join = u.sign(MALLORY, MALLORY, 'join')
    const check = (invite: e2e.SignedMembershipStatement | null) =>
      validateMembership(
        ROOM,
        view([record(ALICE, 'join', 2, null), record(MALLORY, 'join', 3, join, MALLORY, invite)]),
        u.devicesOf,
        emptyMembershipMemory(),
      )
    // No invite at all; one signed by a non-member; one for someone else: mallory gets nothing.
    for (const invite of [null, u.sign(BOB, MALLORY, 'invite'), u.sign(ALICE, BOB, 'invite')]) {
      const verdict = check(invite)
      expect(verdict.members).toEqual([ALICE])
      expect(verdict.problems.map((p) => p.user_id)).toEqual([MALLORY])
    }
    // Invited by alice (a validated member): counts.
    expect(check(u.sign(ALICE, MALLORY, 'invite'))).toMatchObject({ members: [ALICE, MALLORY], problems: [] })
  })

  it('counts the founding join, a member-signed invite and a self-signed join; the epoch is the latest hash', () => {
    const u = new Users()
    u.device(ALICE)
    const invite = u.sign(ALICE, BOB, 'invite')
    const join = u.sign(BOB, BOB, 'join', e2e.membershipHash(invite))
    const first = validateMembership(
      ROOM,
      view([record(ALICE, 'join', 2, null), record(BOB, 'invite', 3, invite)]),
      u.devicesOf,
      emptyMembershipMemory(),
    )
    expect(first).toMatchObject({ members: [ALICE, BOB], problems: [], epoch: e2e.membershipHash(invite) })
    const second = validateMembership(
      ROOM,
      view([record(ALICE, 'join', 2, null), record(BOB, 'join', 4, join)]),
      u.devicesOf,
      first.memory,
    )
    expect(second).toMatchObject({ members: [ALICE, BOB], problems: [], epoch: e2e.membershipHash(join) })
  })

  it('ignores, with a problem each, an unsigned join, a self-invite, an invite by a non-member and a late "founding" join', () => {
    const u = new Users()
    u.device(ALICE)
    const byOutsider = u.sign(MALLORY, BOB, 'invite')
    const selfInvite = u.sign('@eve:a.example', '@eve:a.example', 'invite')
    const verdict = validateMembership(
      ROOM,
      view([
        record(ALICE, 'join', 2, null),
        record(MALLORY, 'join', 3, null),
        record(BOB, 'invite', 4, byOutsider),
        record('@eve:a.example', 'invite', 5, selfInvite),
      ]),
      u.devicesOf,
      emptyMembershipMemory(),
    )
    expect(verdict.members).toEqual([ALICE])
    expect(verdict.problems.map((p) => p.user_id).sort()).toEqual(['@eve:a.example', BOB, MALLORY].sort())
    // The creator's unsigned join counts only as the room's founding event.
    const late = validateMembership(
      ROOM,
      view([record(ALICE, 'join', 9, null)]),
      u.devicesOf,
      emptyMembershipMemory(),
    )
    expect(late.members).toEqual([])
  })

  it('refuses a statement signed by a key not in the actor device list, and a forged removal keeps the member', () => {
    const u = new Users()
    u.device(ALICE)
    const join = u.sign(BOB, BOB, 'join')
    const before = validateMembership(
      ROOM,
      view([record(ALICE, 'join', 2, null), record(BOB, 'join', 3, join, BOB, u.sign(ALICE, BOB, 'invite'))]),
      u.devicesOf,
      emptyMembershipMemory(),
    )
    const forger = new Users()
    const forgedKick = forger.sign(ALICE, BOB, 'leave')
    const after = validateMembership(
      ROOM,
      view([record(ALICE, 'join', 2, null), record(BOB, 'leave', 4, forgedKick)]),
      u.devicesOf,
      before.memory,
    )
    expect(after.members).toEqual([ALICE, BOB])
    expect(after.problems).toEqual([
      { user_id: BOB, detail: expect.stringContaining('server tried to remove') },
    ])
    expect(after.epoch).toBe(before.epoch)
  })

  it('after a signed kick, a replay of the old join is refused', () => {
    const u = new Users()
    u.device(ALICE)
    const join = u.sign(BOB, BOB, 'join')
    const kick = u.sign(ALICE, BOB, 'leave', e2e.membershipHash(join))
    const seen = validateMembership(
      ROOM,
      view([record(ALICE, 'join', 2, null), record(BOB, 'join', 3, join, BOB, u.sign(ALICE, BOB, 'invite'))]),
      u.devicesOf,
      emptyMembershipMemory(),
    )
    const memory = rememberStatement(seen.memory, kick)
    const replay = validateMembership(
      ROOM,
      view([record(ALICE, 'join', 2, null), record(BOB, 'join', 5, join)]),
      u.devicesOf,
      memory,
    )
    expect(replay.members).toEqual([ALICE])
    expect(replay.problems[0]?.detail).toContain('replayed')
  })

  it('in a room encrypted later, the signed snapshot roots the members set before it, and nothing unsigned after it', () => {
    const u = new Users()
    u.device(ALICE)
    const snapshot = e2e.signMembershipSnapshot(u.keys.get(ALICE)!.dsk, {
      room: ROOM,
      members: [
        { user_id: ALICE, membership: 'join' },
        { user_id: BOB, membership: 'invite' },
      ],
      actor: ALICE,
      actorDevice: 'DEVICE000001',
      prev: e2e.membershipRoot(ROOM),
    })
    const shown = view(
      [
        record(ALICE, 'join', 2, null),
        record(BOB, 'invite', 3, null, ALICE),
        record(MALLORY, 'join', 8, null),
      ],
      {
        encrypted_at_create: false,
        snapshot: { ...snapshot, members: snapshot.members.map((m) => ({ ...m })) },
        snapshot_seq: 5,
      },
    )
    expect(membershipUsers(shown, emptyMembershipMemory())).toEqual([ALICE, BOB, MALLORY])
    const verdict = validateMembership(ROOM, shown, u.devicesOf, emptyMembershipMemory())
    expect(verdict.members).toEqual([ALICE, BOB])
    expect(verdict.epoch).toBe(e2e.membershipSnapshotHash(snapshot))
    expect(verdict.problems.map((p) => p.user_id)).toEqual([MALLORY])
  })
})
