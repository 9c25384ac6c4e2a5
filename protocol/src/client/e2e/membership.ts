/**
 * Which members of an encrypted room count for key sharing (E2E.md section 2.3): the server's view
 * of the room's membership (`GET /rooms/{room}/membership`) checked against the members' signed
 * statements, their actors' verified device lists and what this device remembers of the room.
 *
 * A member counts if their latest statement verifies with a device of the actor's verified device
 * list and the actor was entitled: themselves for a leave; themselves for a join that accepts an
 * invite by a validated joined member (remembered by this device, or the signed invite the join's
 * server copied into the event: a server cannot make up a user and have them join); a validated
 * joined member for an invite, a kick or a ban. The log's roots count without a statement: the creator's founding join of
 * a room created encrypted, and the members named by the signed snapshot of a room turned encrypted
 * later, for memberships set before it. Anything else is ignored, with a warning: an unsigned or
 * forged addition leaves the user out, an unsigned or forged removal leaves the member in (as this
 * device last validated them), and a replayed older statement of a user is refused.
 *
 * Pure apart from {@link MembershipMemoryStore}; the caller fetches the view and the device lists.
 */
import { z } from 'zod'
import * as e2e from '../../crypto/e2e/index.ts'
import type { MembershipStatement, RoomMembershipResponse } from '../../schema/membership.ts'
import type { ClientStore } from '../store.ts'

/** The room order of a room's founding join: `m.room.create` is 1, the creator's join 2. */
const FOUNDING_JOIN_SEQ = 2
/** Statement hashes remembered per room to recognise replays; the oldest are forgotten beyond this. */
const MAX_KNOWN_HASHES = 4096

/** What this device remembers of a room's membership log (E2E.md section 2.3). */
export const MembershipMemory = z.object({
  /** Each user's last validated membership and the hash of its statement (null for a root). */
  users: z.record(
    z.string(),
    z.object({ membership: z.enum(['invite', 'join', 'leave', 'ban']), hash: z.string().nullable() }),
  ),
  /** Hashes of every statement validated so far: one shown again for a user who moved on is a replay. */
  known: z.array(z.string()),
})
export type MembershipMemory = z.infer<typeof MembershipMemory>

/** A user whose membership the server changed without a valid statement (a `membership_unsigned` warning). */
export interface MembershipProblem {
  readonly user_id: string
  readonly detail: string
}

/** What {@link validateMembership} made of a room's membership. */
export interface MembershipVerdict {
  /** Validated joined and invited members, sorted: the users that get room keys. */
  readonly members: readonly string[]
  /** `membership_epoch = H(latest validated statement)` (or the snapshot, or the room's root), base64url. */
  readonly epoch: string
  readonly problems: readonly MembershipProblem[]
  readonly memory: MembershipMemory
}

/** An empty memory, for a room this device has not validated before. */
export function emptyMembershipMemory(): MembershipMemory {
  return { users: {}, known: [] }
}

/**
 * The users whose device lists {@link validateMembership} needs: everyone the server shows as joined
 * or invited, everyone remembered as such (a removal must be checked), and the actors of their
 * statements and of the snapshot. Former members nobody remembers are skipped: they get nothing anyway.
 */
export function membershipUsers(view: RoomMembershipResponse, memory: MembershipMemory): string[] {
  const users = new Set<string>()
  const present = (m: string | undefined) => m === 'join' || m === 'invite'
  for (const record of view.members) {
    if (!present(record.membership) && !present(memory.users[record.user_id]?.membership)) continue
    users.add(record.user_id)
    if (record.statement) users.add(record.statement.actor)
    if (record.invite_statement) users.add(record.invite_statement.actor)
  }
  for (const [user, remembered] of Object.entries(memory.users))
    if (present(remembered.membership)) users.add(user)
  if (view.snapshot) users.add(view.snapshot.actor)
  return [...users].sort()
}

interface Effective {
  readonly membership: 'invite' | 'join' | 'leave' | 'ban'
  readonly hash: string | null
  readonly seq: number
}

/**
 * Validates a room's membership as the server shows it (E2E.md section 2.3; see the module comment
 * for the rules). `devicesOf` gives a user's devices from their verified (pinned, UIK-signed) device
 * list, or undefined. Returns the members to share keys with, the membership epoch, the problems to
 * warn about, and the memory to keep for the next call.
 */
export function validateMembership(
  room: string,
  view: RoomMembershipResponse,
  devicesOf: (user: string) => readonly e2e.VerifiedDevice[] | undefined,
  memory: MembershipMemory,
): MembershipVerdict {
  const known = new Set(memory.known)
  const fresh: string[] = []
  const problems: MembershipProblem[] = []
  const effective = new Map<string, Effective>()

  let snapshotHash: string | null = null
  const snapshotMembers = new Map<string, string>()
  if (view.snapshot) {
    try {
      const verified = e2e.verifyMembershipSnapshot(view.snapshot, room, devicesOf(view.snapshot.actor) ?? [])
      snapshotHash = verified.hash
      for (const m of verified.snapshot.members) snapshotMembers.set(m.user_id, m.membership)
    } catch (error) {
      problems.push({
        user_id: view.snapshot.actor,
        detail: `membership snapshot refused: ${describe(error)}`,
      })
    }
  }

  const present = (m: string | undefined) => m === 'join' || m === 'invite'
  /** The server's change is not accepted: the user stays as this device last validated them. */
  const refuse = (user: string, claimed: string, why: string) => {
    const remembered = memory.users[user]
    if (remembered) effective.set(user, { membership: remembered.membership, hash: remembered.hash, seq: 0 })
    if (present(claimed) && !present(remembered?.membership))
      problems.push({ user_id: user, detail: `server tried to add ${user} (${claimed}): ${why}` })
    else if (present(remembered?.membership) && remembered?.membership !== claimed)
      problems.push({ user_id: user, detail: `server tried to remove ${user} (${claimed}): ${why}` })
    else if (present(claimed)) problems.push({ user_id: user, detail: `${user} (${claimed}): ${why}` })
  }

  const byOthers: Array<{ user: string; claimed: Effective; statement: MembershipStatement }> = []
  /** Self-signed joins whose invite this device checks now: its actor must be a validated member. */
  const invitedJoins: Array<{ user: string; claimed: Effective; inviter: string }> = []
  const shown = new Set<string>()
  for (const record of view.members) {
    const user = record.user_id
    shown.add(user)
    const claimed = record.membership
    const statement = record.statement
    const remembered = memory.users[user]
    if (!present(claimed) && !present(remembered?.membership)) {
      // Gone, and not a member as far as this device knows: nothing to share with or check. What it
      // remembers stays (a replay of their older join is recognised by it).
      if (remembered)
        effective.set(user, { membership: remembered.membership, hash: remembered.hash, seq: 0 })
      continue
    }
    if (statement === null) {
      const founding =
        view.encrypted_at_create &&
        user === view.creator &&
        record.sender === view.creator &&
        claimed === 'join' &&
        record.seq <= FOUNDING_JOIN_SEQ
      const inSnapshot =
        snapshotHash !== null &&
        view.snapshot_seq !== null &&
        record.seq < view.snapshot_seq &&
        snapshotMembers.get(user) === claimed
      if ((founding || inSnapshot) && (remembered === undefined || remembered.hash === null))
        effective.set(user, { membership: claimed, hash: null, seq: record.seq })
      else refuse(user, claimed, 'no signed statement')
      continue
    }
    if (statement.target !== user || statement.membership !== claimed || statement.actor !== record.sender) {
      refuse(user, claimed, 'the statement does not match the event')
      continue
    }
    // Validated before (entitlement included): not verified again, so it also stays valid when its
    // device has since left its owner's list, and a send re-verifies only what changed.
    if (
      remembered?.hash != null &&
      e2e.membershipHashEquals(e2e.membershipHash(statement), remembered.hash)
    ) {
      effective.set(user, { membership: claimed, hash: remembered.hash, seq: record.seq })
      continue
    }
    let hash: string
    try {
      hash = e2e.verifyMembership(statement, room, devicesOf(statement.actor) ?? []).hash
    } catch (error) {
      refuse(user, claimed, describe(error))
      continue
    }
    if (remembered?.hash != null && remembered.hash !== hash && known.has(hash)) {
      refuse(user, claimed, 'an older statement replayed')
      continue
    }
    const entry: Effective = { membership: claimed, hash, seq: record.seq }
    if (statement.actor === user && claimed === 'join') {
      // Invited first: as this device validated it, or by the signed invite the event carries.
      if (remembered?.membership === 'invite') {
        effective.set(user, entry)
        fresh.push(hash)
        continue
      }
      const invite = record.invite_statement ?? null
      let inviter: string | null = null
      if (invite && invite.target === user && invite.membership === 'invite' && invite.actor !== user) {
        try {
          e2e.verifyMembership(invite, room, devicesOf(invite.actor) ?? [])
          inviter = invite.actor
        } catch {
          inviter = null
        }
      }
      if (inviter === null) refuse(user, claimed, 'joined without a validated invitation')
      else invitedJoins.push({ user, claimed: entry, inviter })
    } else if (statement.actor === user) {
      if (claimed === 'leave') {
        effective.set(user, entry)
        fresh.push(hash)
      } else refuse(user, claimed, `nobody may ${claimed} themselves`)
    } else byOthers.push({ user, claimed: entry, statement })
  }
  // Invites, kicks and bans count when their actor is a validated joined member.
  const joined = (user: string) => effective.get(user)?.membership === 'join'
  for (const { user, claimed, statement } of byOthers) {
    if (claimed.membership === 'join') refuse(user, claimed.membership, 'only the user may sign their join')
    else if (!joined(statement.actor))
      refuse(user, claimed.membership, `${statement.actor} is not a validated member`)
    else {
      effective.set(user, claimed)
      fresh.push(claimed.hash!)
    }
  }
  for (const { user, claimed, inviter } of invitedJoins) {
    if (!joined(inviter)) refuse(user, claimed.membership, `invited by ${inviter}, not a validated member`)
    else {
      effective.set(user, claimed)
      fresh.push(claimed.hash!)
    }
  }
  // A member this device validated and the server no longer shows at all: kept, and reported.
  for (const [user, remembered] of Object.entries(memory.users))
    if (!shown.has(user) && present(remembered.membership)) refuse(user, 'absent', 'the server dropped them')

  let head: Effective | null = null
  for (const entry of effective.values())
    if (entry.hash !== null && (head === null || entry.seq > head.seq)) head = entry
  const epoch = head?.hash ?? snapshotHash ?? e2e.membershipRoot(room)
  const users: MembershipMemory['users'] = {}
  for (const [user, entry] of effective) users[user] = { membership: entry.membership, hash: entry.hash }
  const allKnown = [...known, ...fresh.filter((h) => !known.has(h))].slice(-MAX_KNOWN_HASHES)
  const members = [...effective].filter(([, e]) => present(e.membership)).map(([u]) => u)
  return { members: members.sort(), epoch, problems, memory: { users, known: allKnown } }
}

/**
 * Adds this device's own accepted statement to the memory (E2E.md section 2.3), so a server that
 * later shows an older statement of that user instead is caught even before the next validation.
 */
export function rememberStatement(
  memory: MembershipMemory,
  statement: e2e.SignedMembershipStatement,
): MembershipMemory {
  const hash = e2e.membershipHash(statement)
  return {
    users: { ...memory.users, [statement.target]: { membership: statement.membership, hash } },
    known: memory.known.includes(hash) ? memory.known : [...memory.known, hash].slice(-MAX_KNOWN_HASHES),
  }
}

/** Where {@link MembershipMemory} lives: the item `e2e:membership:<room>` of the client's store. */
export class MembershipMemoryStore {
  constructor(private readonly store: ClientStore) {}

  /** The room's memory; empty if none (or damaged). */
  async get(room: string): Promise<MembershipMemory> {
    const raw = await this.store.getItem(`e2e:membership:${room}`)
    if (raw === null) return emptyMembershipMemory()
    try {
      return MembershipMemory.safeParse(JSON.parse(raw)).data ?? emptyMembershipMemory()
    } catch {
      return emptyMembershipMemory()
    }
  }

  put(room: string, memory: MembershipMemory): Promise<void> {
    return this.store.setItem(`e2e:membership:${room}`, JSON.stringify(memory))
  }
}

function describe(error: unknown): string {
  if (error instanceof e2e.E2eError) return `${error.code}: ${error.message}`
  return error instanceof Error ? error.message : String(error)
}
