/**
 * Who may do what in a room (DESIGN.md section 4), checked inside the sequencer's transaction so
 * every decision sees the state left by the events before it.
 *
 * Levels: owner 100 (the creator, implied by `m.room.create`), admin 50, moderator 25, member 0.
 * - messages, edits, reactions, redactions: joined members; in broadcast rooms only admins post or edit
 *   messages (everyone may react); edits only of one's own messages; redactions of one's own events,
 *   or by a moderator.
 * - invite: any joined member of a group; admins in broadcast rooms; in a DM only the other person.
 * - join: with a pending invite (or the creator, once). leave: oneself.
 * - kick, ban, unban: moderators, over members of lower level; never in DMs.
 * - power: admins, over lower members and to levels below their own; never in DMs.
 * - name, topic: moderators (any member in a DM).
 * - signed membership (E2E.md 2.3): in an encrypted room every `m.member` carries the actor device's
 *   statement, matching the event (P_UNSIGNED_MEMBERSHIP, P_BAD_MEMBERSHIP_STATEMENT), but the founding
 *   join of a room created encrypted; `m.room.encryption` carries a signed snapshot of the members.
 * - encryption (`m.room.encryption`, irreversible): admins (any member in a DM). An encrypted room
 *   takes `m.encrypted` and `m.redaction` only, never plaintext (`m.message`, `m.edit`, `m.reaction`:
 *   P_ENCRYPTED_ROOM); `m.encrypted` only there, with `sender_user` = the sender, and in broadcast
 *   rooms from admins only (the server cannot tell an encrypted message from an encrypted reaction).
 * A non-member and a non-existent room get the same answer, so existence does not leak (AC-2).
 */
import { ParleyError, parseRoomId, parseUserId } from '@parley/protocol'
import {
  CONTENT_SCHEMAS,
  ENCRYPTED_ROOM_TYPES,
  ReactionContent,
  ROLE_LEVEL,
  type MemberContent,
} from '@parley/protocol/schema'
import type { MembershipRow, Repos, RoomRow } from '../db/repos/index.ts'
import type { Clock } from '../clock.ts'
import type { CommittedEvent, Draft, RoomRules } from './sequencer.ts'

const { admin: ADMIN, moderator: MODERATOR, owner: OWNER } = ROLE_LEVEL

/** Event types that set room state (never redactable, never without content). */
export const STATE_TYPES: ReadonlySet<string> = new Set([
  'm.room.create',
  'm.member',
  'm.power_levels',
  'm.room.name',
  'm.room.topic',
  'm.room.encryption',
])

/** The one answer for "no such room" and "not your room". */
export const notMember = (): ParleyError =>
  new ParleyError('P_FORBIDDEN', 'you are not a member of this room')
/** A plaintext event type sent to an end-to-end encrypted room. */
export const encryptedRoom = (type: string): ParleyError =>
  new ParleyError('P_ENCRYPTED_ROOM', `this room is end-to-end encrypted: send m.encrypted, not ${type}`)
const notFound = (): ParleyError => new ParleyError('P_NOT_FOUND', 'event not found')
const forbidden = (why: string): ParleyError => new ParleyError('P_FORBIDDEN', why)

/** The immutable facts about a room that the rules need. */
type RoomFacts = Pick<RoomRow, 'room_id' | 'kind' | 'creator'>

export class RoomRulesImpl implements RoomRules {
  /** Kind and creator never change, so they are read from the database once per room. */
  readonly #facts = new Map<string, RoomFacts>()

  constructor(
    private readonly repos: Repos,
    private readonly serverName: string,
    private readonly clock: Clock,
    /** Whether we federate with a server (its users can be invited). Default: with nobody. */
    private readonly federatesWith: (server: string) => boolean = () => false,
  ) {}

  check(draft: Draft): void {
    if (draft.type === 'm.room.create') {
      if (this.repos.rooms.get(draft.room)) throw new ParleyError('P_CONFLICT', 'room exists')
      return
    }
    const room = this.#roomFacts(draft.room)
    if (!room) throw notMember()
    const me = this.repos.memberships.get(room.room_id, draft.sender)
    switch (draft.type) {
      case 'm.member':
        return this.#checkMember(room, draft, me)
      case 'm.power_levels':
        return this.#checkPower(room, draft, me)
      case 'm.room.name':
      case 'm.room.topic':
        joined(me)
        if (room.kind !== 'dm' && me!.level < MODERATOR)
          throw forbidden('only moderators can change room settings')
        return
      case 'm.room.encryption':
        joined(me)
        if (room.kind !== 'dm' && me!.level < ADMIN) throw forbidden('only admins can turn on encryption')
        if (this.repos.rooms.get(room.room_id)?.encrypted === 1)
          throw new ParleyError('P_CONFLICT', 'this room is already end-to-end encrypted')
        return this.#checkSnapshot(room, draft)
      case 'm.message':
      case 'm.edit':
      case 'm.redaction':
      case 'm.reaction':
      case 'm.encrypted':
        return this.#checkMessage(room, draft, joined(me))
      default:
        throw new ParleyError('P_BAD_REQUEST', `unknown event type ${draft.type}`)
    }
  }

  #roomFacts(roomId: string): RoomFacts | undefined {
    let facts = this.#facts.get(roomId)
    if (!facts) {
      const row = this.repos.rooms.get(roomId)
      if (!row) return undefined
      facts = { room_id: row.room_id, kind: row.kind, creator: row.creator }
      this.#facts.set(roomId, facts)
    }
    return facts
  }

  #checkMessage(room: RoomFacts, draft: Draft, me: MembershipRow): void {
    const c = draft.content
    // Read each time: encryption is the one fact of a room that changes (once, never back).
    const encrypted = this.repos.rooms.get(room.room_id)?.encrypted === 1
    if (encrypted && !ENCRYPTED_ROOM_TYPES.has(draft.type)) throw encryptedRoom(draft.type)
    if (draft.type === 'm.encrypted') {
      if (!encrypted) throw new ParleyError('P_BAD_REQUEST', 'this room is not end-to-end encrypted')
      if (c.sender_user !== draft.sender)
        throw new ParleyError('P_BAD_REQUEST', 'sender_user must be the sender of the event')
      if (room.kind === 'broadcast' && me.level < ADMIN)
        throw forbidden('only admins can post in a broadcast room')
      return
    }
    if (
      (draft.type === 'm.message' || draft.type === 'm.edit') &&
      room.kind === 'broadcast' &&
      me.level < ADMIN
    ) {
      throw forbidden('only admins can post in a broadcast room')
    }
    if (draft.type === 'm.message') {
      if (typeof c.reply_to === 'string') this.#target(room, c.reply_to)
      return
    }
    const target = this.#target(room, c.target as string)
    switch (draft.type) {
      case 'm.edit':
        if (target.type !== 'm.message' || target.sender !== draft.sender)
          throw forbidden('you can only edit your own messages')
        return
      case 'm.redaction':
        if (STATE_TYPES.has(target.type) || target.type === 'm.redaction') {
          throw new ParleyError('P_BAD_REQUEST', 'this event cannot be deleted')
        }
        if (target.sender !== draft.sender && me.level < MODERATOR)
          throw forbidden('you can only delete your own messages')
        return
      case 'm.reaction':
        if (target.type !== 'm.message')
          throw new ParleyError('P_BAD_REQUEST', 'you can only react to messages')
        for (const r of this.repos.events.reactions(room.room_id, target.event_id, draft.sender)) {
          if (r.content !== null && ReactionContent.safeParse(JSON.parse(r.content)).data?.key === c.key) {
            throw new ParleyError('P_CONFLICT', 'you already reacted with this')
          }
        }
        return
    }
  }

  /** An event of this room that is not deleted; events of other rooms are "not found" (AC-2). */
  #target(room: RoomFacts, eventId: string) {
    const target = this.repos.events.get(eventId)
    if (!target || target.room_id !== room.room_id || target.redacted_by !== null) throw notFound()
    return target
  }

  /**
   * Signed membership (E2E.md section 2.3): a statement, where there is one, must say exactly what the
   * event does; in an encrypted room there must be one, except for the creator's join that founds a
   * room created encrypted (the root of its log). Its signature was checked by the actor's own server.
   */
  #checkStatement(room: RoomFacts, draft: Draft): void {
    const content = draft.content as unknown as MemberContent
    const statement = content.statement
    if (statement === undefined) {
      if (this.repos.rooms.get(room.room_id)?.encrypted !== 1) return
      const founding =
        draft.sender === room.creator &&
        draft.stateKey === draft.sender &&
        content.membership === 'join' &&
        this.repos.memberships.forRoom(room.room_id).length === 0
      if (founding) return
      throw new ParleyError(
        'P_UNSIGNED_MEMBERSHIP',
        'this room is end-to-end encrypted: a membership change needs the signed statement of your device',
      )
    }
    if (
      statement.room !== room.room_id ||
      statement.target !== draft.stateKey ||
      statement.membership !== content.membership ||
      statement.actor !== draft.sender
    )
      throw new ParleyError(
        'P_BAD_MEMBERSHIP_STATEMENT',
        'the signed statement does not match this membership change (room, target, membership, actor)',
      )
  }

  /**
   * Turning encryption on needs the members at that moment, signed by the enabling device (E2E.md
   * section 2.3): exactly the joined and invited users, with their membership, by the sender.
   */
  #checkSnapshot(room: RoomFacts, draft: Draft): void {
    const snapshot = draft.content.snapshot as
      | { room?: unknown; actor?: unknown; members?: Array<{ user_id: string; membership: string }> }
      | undefined
    if (snapshot === undefined)
      throw new ParleyError(
        'P_UNSIGNED_MEMBERSHIP',
        'turning encryption on needs the members of the room signed by your device (snapshot)',
      )
    const current = this.repos.memberships
      .forRoom(room.room_id)
      .filter((m) => m.membership === 'join' || m.membership === 'invite')
      .map((m) => `${m.user_id} ${m.membership}`)
      .sort()
    const named = (snapshot.members ?? []).map((m) => `${m.user_id} ${m.membership}`).sort()
    if (
      snapshot.room !== room.room_id ||
      snapshot.actor !== draft.sender ||
      named.length !== current.length ||
      named.some((m, i) => m !== current[i])
    )
      throw new ParleyError(
        'P_BAD_MEMBERSHIP_STATEMENT',
        'the signed snapshot does not name exactly the joined and invited members of this room',
      )
  }

  /** The membership rules first (a stranger learns nothing, AC-2), then the signed statement. */
  #checkMember(room: RoomFacts, draft: Draft, me: MembershipRow | undefined): void {
    this.#checkMemberRules(room, draft, me)
    this.#checkStatement(room, draft)
  }

  #checkMemberRules(room: RoomFacts, draft: Draft, me: MembershipRow | undefined): void {
    const target = draft.stateKey!
    const membership = (draft.content as unknown as MemberContent).membership
    const theirs = target === draft.sender ? me : this.repos.memberships.get(room.room_id, target)
    switch (membership) {
      case 'join':
        if (target !== draft.sender) throw forbidden('you can only join for yourself')
        if (theirs?.membership === 'join') throw new ParleyError('P_CONFLICT', 'already a member')
        if (theirs?.membership === 'ban') throw forbidden('you are banned from this room')
        if (theirs?.membership === 'invite') return
        if (
          !theirs &&
          draft.sender === room.creator &&
          this.repos.memberships.forRoom(room.room_id).length === 0
        )
          return
        // The same answer as for a room that does not exist: a stranger cannot probe room ids (AC-2).
        throw notMember()
      case 'invite': {
        const inviter = joined(me)
        if (target === draft.sender) throw new ParleyError('P_BAD_REQUEST', 'you cannot invite yourself')
        if (theirs?.membership === 'join') throw new ParleyError('P_CONFLICT', 'already a member')
        if (theirs?.membership === 'invite') throw new ParleyError('P_CONFLICT', 'already invited')
        if (theirs?.membership === 'ban') throw forbidden('that user is banned from this room')
        if (room.kind === 'broadcast' && inviter.level < ADMIN)
          throw forbidden('only admins can invite to a broadcast room')
        if (room.kind === 'dm') {
          const others = this.repos.memberships
            .forRoom(room.room_id)
            .filter((m) => m.user_id !== draft.sender)
          if (others.some((m) => m.user_id !== target))
            throw forbidden('a direct message has exactly two people')
        }
        this.#checkInvitee(target)
        return
      }
      case 'leave': {
        if (target === draft.sender) {
          if (theirs?.membership !== 'join' && theirs?.membership !== 'invite') throw notMember()
          return
        }
        const mine = joined(me)
        if (draft.intent === 'unban') {
          this.#checkModeration(room, mine, theirs, 'unban')
          if (theirs?.membership !== 'ban') throw new ParleyError('P_NOT_FOUND', 'that user is not banned')
          return
        }
        this.#checkModeration(room, mine, theirs, 'remove')
        if (theirs?.membership === 'ban')
          throw new ParleyError('P_BAD_REQUEST', 'that user is banned: use unban')
        if (theirs?.membership !== 'join' && theirs?.membership !== 'invite') {
          throw new ParleyError('P_NOT_FOUND', 'that user is not in this room')
        }
        return
      }
      case 'ban': {
        // Membership first: a stranger learns nothing about the room (AC-2).
        const mine = joined(me)
        if (target === draft.sender) throw new ParleyError('P_BAD_REQUEST', 'you cannot ban yourself')
        this.#checkModeration(room, mine, theirs, 'ban')
        if (theirs?.membership === 'ban') throw new ParleyError('P_CONFLICT', 'already banned')
        return
      }
    }
  }

  #checkModeration(
    room: RoomFacts,
    me: MembershipRow,
    theirs: MembershipRow | undefined,
    what: string,
  ): void {
    if (room.kind === 'dm') throw forbidden(`you cannot ${what} people in a direct message`)
    if (me.level < MODERATOR) throw forbidden(`only moderators can ${what} people`)
    if ((theirs?.level ?? 0) >= me.level)
      throw forbidden(`you cannot ${what} someone of equal or higher rank`)
  }

  #checkInvitee(target: string): void {
    const parts = parseUserId(target)
    if (!parts) throw new ParleyError('P_BAD_REQUEST', 'invalid user id')
    if (parts.server !== this.serverName) {
      // Whether the account exists is the other server's business: it refuses the join if not.
      if (!this.federatesWith(parts.server))
        throw forbidden(`this server does not federate with ${parts.server}`)
      return
    }
    const user = this.repos.users.get(target)
    if (!user || user.deactivated) throw new ParleyError('P_NOT_FOUND', 'no such user')
  }

  #checkPower(room: RoomFacts, draft: Draft, me: MembershipRow | undefined): void {
    const mine = joined(me)
    if (room.kind === 'dm') throw forbidden('there are no roles in a direct message')
    if (mine.level < ADMIN) throw forbidden('only admins can change roles')
    const theirs = this.repos.memberships.get(room.room_id, draft.stateKey!)
    if (theirs?.membership !== 'join') throw new ParleyError('P_NOT_FOUND', 'that user is not in this room')
    if (draft.stateKey === draft.sender) throw forbidden('you cannot change your own role')
    if (theirs.level >= mine.level)
      throw forbidden('you cannot change the role of someone of equal or higher rank')
    if ((draft.content.level as number) >= mine.level)
      throw forbidden('you can only grant roles below your own')
  }

  /**
   * Keeps `peer_cursors` in step with membership, in the event's own transaction: a server replicates
   * a room we own while one of its users is joined or invited (so the invitee's server can show the
   * invite and check the join); when its last one goes, it still gets the room up to that event.
   */
  #trackReplica(room: string, target: string, seq: number): void {
    const peer = parseUserId(target)?.server
    if (!peer || peer === this.serverName || parseRoomId(room)?.server !== this.serverName) return
    const suffix = ':' + peer
    const present = this.repos.memberships
      .forRoom(room)
      .some((m) => m.user_id.endsWith(suffix) && (m.membership === 'join' || m.membership === 'invite'))
    const cursor = this.repos.replication.cursor(peer, room)
    if (present) {
      if (!cursor || cursor.until_seq !== null) this.repos.replication.open(peer, room)
    } else if (cursor && cursor.until_seq === null) this.repos.replication.closeAt(peer, room, seq)
  }

  apply(event: CommittedEvent, draft: Draft): void {
    const room = event.room_id
    switch (event.type) {
      case 'm.room.create': {
        const c = CONTENT_SCHEMAS['m.room.create'].parse(draft.content)
        this.repos.rooms.insert(room, c.kind, c.creator, c.encrypted, this.clock.now(), 'pending')
        return
      }
      case 'm.member': {
        const target = event.state_key!
        const membership = (draft.content as unknown as MemberContent).membership
        const firstJoin = membership === 'join' && !this.repos.memberships.get(room, target)
        this.repos.memberships.set(room, target, membership, event.stream_pos)
        // The creator's first join makes them owner: their power is implied by m.room.create.
        if (firstJoin && this.repos.rooms.get(room)?.creator === target)
          this.repos.memberships.setLevel(room, target, OWNER)
        this.#trackReplica(room, target, event.seq)
        return
      }
      case 'm.power_levels':
        this.repos.memberships.setLevel(room, event.state_key!, draft.content.level as number)
        return
      case 'm.room.name':
        this.repos.rooms.setName(room, draft.content.name as string)
        return
      case 'm.room.topic':
        this.repos.rooms.setTopic(room, draft.content.topic as string)
        return
      case 'm.room.encryption':
        this.repos.rooms.setEncrypted(room)
        return
      case 'm.redaction': {
        const target = draft.content.target as string
        this.repos.events.redact(target, event.event_id)
        // A deleted message must not live on in its edits, which carry its text.
        this.repos.events.redactEdits(target, event.event_id)
        return
      }
    }
  }
}

function joined(me: MembershipRow | undefined): MembershipRow {
  if (me?.membership !== 'join') throw notMember()
  return me
}
