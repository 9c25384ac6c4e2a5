/** Room operations behind the REST API: create, membership, settings, roles, listing and history. */
import { newRoomId, ParleyError, parseRoomId, type JsonObject } from '@parley/protocol'
import {
  E2E_SUITE_V1,
  MembershipSnapshot as MembershipSnapshotSchema,
  MembershipStatement as MembershipStatementSchema,
  ROLE_LEVEL,
  roleOfLevel,
  type ClientEvent,
  type CreateRoomBody,
  type Membership,
  type MembershipRecord,
  type MembershipSnapshot,
  type MembershipStatement,
  type Role,
  type RoomMembershipResponse,
  type RoomSummary,
} from '@parley/protocol/schema'
import type { Repos } from '../db/repos/index.ts'
import { clientEvent } from './event-json.ts'
import type { MembershipStatements } from './membership-statements.ts'
import { notMember } from './room-rules.ts'
import type { RemoteRooms } from './remote-rooms.ts'
import type { Draft, LeaveIntent, Sequencer } from './sequencer.ts'

export class RoomsService {
  /** Each encrypted room's `m.room.encryption` snapshot and seq: it never changes once sequenced. */
  readonly #encryption = new Map<string, { snapshot: unknown; seq: number }>()

  constructor(
    private readonly repos: Repos,
    private readonly sequencer: Sequencer,
    private readonly serverName: string,
    private readonly remote: RemoteRooms,
    private readonly statements: MembershipStatements,
  ) {}

  /** Sequences here if we own the room, else through its owner (resolves once it has). */
  #submit(draft: Draft): Promise<{ event_id: string }> {
    if (parseRoomId(draft.room)?.server === this.serverName) return this.sequencer.submit(draft)
    return this.remote.submit(draft)
  }

  /**
   * One membership change. A signed statement (E2E.md section 2.3) is checked here, at the actor's
   * own server, against the request and the actor's published device list, then stored in the
   * content unchanged; the room rules require it in encrypted rooms.
   */
  #member(
    room: string,
    sender: string,
    target: string,
    membership: Membership,
    options: {
      reason?: string | undefined
      intent?: LeaveIntent
      statement?: MembershipStatement | undefined
    } = {},
  ) {
    const { reason, intent, statement } = options
    const content: JsonObject = { membership }
    if (reason !== undefined) content.reason = reason
    if (statement !== undefined) {
      this.statements.checkStatement({ room, target, membership, actor: sender }, statement)
      content.statement = { ...statement }
      // A join accepts an invite: its signed statement goes along, so clients can check who invited.
      const invite = membership === 'join' ? this.#inviteStatement(room, target) : undefined
      if (invite) content.invite_statement = { ...invite }
    }
    return this.#submit({ room, type: 'm.member', stateKey: target, sender, content, intent })
  }

  /** Creates a room; its creation, the creator's join, settings and invites commit together, in order. */
  async create(userId: string, body: CreateRoomBody): Promise<{ room_id: string }> {
    const invite = [...new Set(body.invite ?? [])].filter((u) => u !== userId)
    // An invite into an encrypted room needs the inviter's signed statement, which names the room:
    // the room id does not exist before this call, so the client invites in a second step.
    if (body.encrypted === true && invite.length > 0) {
      throw new ParleyError(
        'P_UNSIGNED_MEMBERSHIP',
        'an encrypted room is created without invites: invite each person afterwards with a signed statement',
      )
    }
    if (body.kind === 'dm' && body.encrypted !== true && invite.length !== 1) {
      throw new ParleyError('P_BAD_REQUEST', 'a direct message needs exactly one other person in invite')
    }
    const room = newRoomId(this.serverName)
    const steps: Array<Promise<unknown>> = [
      this.#submit({
        room,
        type: 'm.room.create',
        sender: userId,
        content: { kind: body.kind, creator: userId, encrypted: body.encrypted ?? false },
      }),
      this.#member(room, userId, userId, 'join'),
    ]
    if (body.name)
      steps.push(this.#submit({ room, type: 'm.room.name', sender: userId, content: { name: body.name } }))
    if (body.topic)
      steps.push(this.#submit({ room, type: 'm.room.topic', sender: userId, content: { topic: body.topic } }))
    // Invites can fail one by one (unknown user); the room exists either way, so collect the outcome.
    const invites = invite.map((u) => this.#member(room, userId, u, 'invite'))
    await Promise.all(steps)
    const results = await Promise.allSettled(invites)
    const failed = results.find((r) => r.status === 'rejected')
    if (failed && body.kind === 'dm') throw (failed as PromiseRejectedResult).reason
    return { room_id: room }
  }

  invite(userId: string, room: string, target: string, reason?: string, statement?: MembershipStatement) {
    return this.#member(room, userId, target, 'invite', { reason, statement })
  }
  join(userId: string, room: string, statement?: MembershipStatement) {
    return this.#member(room, userId, userId, 'join', { statement })
  }
  leave(userId: string, room: string, statement?: MembershipStatement) {
    return this.#member(room, userId, userId, 'leave', { statement })
  }
  kick(userId: string, room: string, target: string, reason?: string, statement?: MembershipStatement) {
    if (target === userId) throw new ParleyError('P_BAD_REQUEST', 'use leave to leave a room')
    return this.#member(room, userId, target, 'leave', { reason, intent: 'kick', statement })
  }
  ban(userId: string, room: string, target: string, reason?: string, statement?: MembershipStatement) {
    return this.#member(room, userId, target, 'ban', { reason, statement })
  }
  unban(userId: string, room: string, target: string, statement?: MembershipStatement) {
    return this.#member(room, userId, target, 'leave', { intent: 'unban', statement })
  }

  async settings(
    userId: string,
    room: string,
    body: { name?: string | undefined; topic?: string | undefined },
  ) {
    const steps: Array<Promise<unknown>> = []
    if (body.name !== undefined)
      steps.push(this.#submit({ room, type: 'm.room.name', sender: userId, content: { name: body.name } }))
    if (body.topic !== undefined)
      steps.push(this.#submit({ room, type: 'm.room.topic', sender: userId, content: { topic: body.topic } }))
    await Promise.all(steps)
  }

  /**
   * Turns end-to-end encryption on for good (E2E.md section 2): a state event, like name and topic.
   * It carries the members at that moment signed by the enabling device (E2E.md section 2.3): checked
   * here against the user's published device list; the room rules check it names exactly the members.
   */
  enableEncryption(userId: string, room: string, snapshot?: MembershipSnapshot) {
    const content: JsonObject = { suite: E2E_SUITE_V1 }
    if (snapshot !== undefined) {
      this.statements.checkSnapshot(room, userId, snapshot)
      content.snapshot = { ...snapshot, members: snapshot.members.map((m) => ({ ...m })) }
    }
    return this.#submit({ room, type: 'm.room.encryption', sender: userId, content })
  }

  setRole(userId: string, room: string, target: string, role: Exclude<Role, 'owner'>) {
    return this.#submit({
      room,
      type: 'm.power_levels',
      stateKey: target,
      sender: userId,
      content: { level: ROLE_LEVEL[role] },
    })
  }

  #requireJoined(room: string, userId: string) {
    const me = this.repos.memberships.get(room, userId)
    if (me?.membership !== 'join') throw notMember()
    return me
  }

  /** Rooms the user is in or invited to, with unread counts (messages from others after their receipt). */
  list(userId: string): RoomSummary[] {
    const out: RoomSummary[] = []
    for (const m of this.repos.memberships.forUser(userId)) {
      if (m.membership !== 'join' && m.membership !== 'invite') continue
      out.push(this.#summary(m.room_id, userId, m.membership, m.level))
    }
    return out
  }

  /** One room's summary, for a member or invitee. */
  get(userId: string, room: string): RoomSummary {
    const m = this.repos.memberships.get(room, userId)
    if (m?.membership !== 'join' && m?.membership !== 'invite') throw notMember()
    return this.#summary(room, userId, m.membership, m.level)
  }

  #summary(roomId: string, userId: string, membership: 'join' | 'invite', level: number): RoomSummary {
    const room = this.repos.rooms.get(roomId)!
    const joined = membership === 'join'
    const receipt = joined ? this.repos.receipts.get(roomId, userId) : undefined
    // Summaries show durable events only, like sync and history.
    const head = this.sequencer.streamHead
    const last = joined ? this.repos.events.lastMessage(roomId, head) : undefined
    const summary: RoomSummary = {
      room_id: roomId,
      kind: room.kind,
      name: room.name,
      topic: room.topic,
      encrypted: room.encrypted === 1,
      membership,
      role: roleOfLevel(level),
      members: this.repos.memberships.joinedCount(roomId),
      unread: joined ? this.repos.events.unreadCount(roomId, receipt?.seq ?? 0, userId, head) : 0,
      last_seq: joined ? this.repos.events.lastSeq(roomId, head) : 0,
    }
    if (last) summary.last_event = clientEvent(last)
    if (room.kind === 'dm') {
      // A DM holds two people (the rules refuse a third): name it after the other one.
      const peer = this.repos.memberships.forRoom(roomId).find((m) => m.user_id !== userId)
      if (peer) summary.dm_peer = peer.user_id
    }
    return summary
  }

  members(userId: string, room: string) {
    this.#requireJoined(room, userId)
    return this.repos.memberships
      .forRoom(room)
      .filter((m) => m.membership !== 'leave')
      .map((m) => ({ user_id: m.user_id, membership: m.membership, role: roleOfLevel(m.level) }))
  }

  /**
   * Every user's latest membership in a room with the signed statement that set it, and the roots of
   * its membership log (E2E.md section 2.3): what clients validate before sharing room keys, for a
   * member or invitee. One
   * indexed read per member; the encryption event is looked up once per room (it never changes).
   */
  membership(userId: string, room: string): RoomMembershipResponse {
    // Invitees too: a join is signed over the latest statement, which they must see first.
    const me = this.repos.memberships.get(room, userId)
    if (me?.membership !== 'join' && me?.membership !== 'invite') throw notMember()
    const roomRow = this.repos.rooms.get(room)!
    const create = this.repos.events.atSeq(room, 1)
    const createContent =
      create?.type === 'm.room.create' && create.content ? parseJson(create.content) : null
    const enabling = roomRow.encrypted === 1 ? this.#encryptionEvent(room) : null
    const snapshot = enabling?.snapshot ?? null
    const members: MembershipRecord[] = this.repos.memberships.withEvents(room).map((m) => {
      const statement = m.content ? parseJson(m.content)?.statement : undefined
      // An event this server does not hold (a replica started from a snapshot): no statement, and
      // the user stands in for the unknown sender.
      return {
        user_id: m.user_id,
        membership: m.membership,
        sender: m.sender ?? m.user_id,
        seq: m.seq ?? 0,
        statement: MembershipStatementSchema.safeParse(statement).data ?? null,
        invite_statement: m.content
          ? (MembershipStatementSchema.safeParse(parseJson(m.content)?.invite_statement).data ?? null)
          : null,
      }
    })
    return {
      creator: roomRow.creator,
      encrypted_at_create: createContent?.encrypted === true,
      snapshot: MembershipSnapshotSchema.safeParse(snapshot).data ?? null,
      snapshot_seq: enabling?.seq ?? null,
      members,
    }
  }

  /** The signed statement of `user`'s pending invite to `room`, if that is their membership now. */
  #inviteStatement(room: string, user: string): MembershipStatement | undefined {
    const current = this.repos.memberships.withEvents(room).find((m) => m.user_id === user)
    if (current?.membership !== 'invite' || !current.content) return undefined
    return MembershipStatementSchema.safeParse(parseJson(current.content)?.statement).data
  }

  #encryptionEvent(room: string): { snapshot: unknown; seq: number } | null {
    const cached = this.#encryption.get(room)
    if (cached) return cached
    const row = this.repos.events.firstOfType(room, 'm.room.encryption')
    if (!row) return null
    const found = { snapshot: row.content ? parseJson(row.content)?.snapshot : undefined, seq: row.seq }
    this.#encryption.set(room, found)
    return found
  }

  /**
   * History, newest first. Joined members read the whole room; anyone who stopped being joined reads
   * up to that moment and no further, whatever their membership became since (AC-3); someone who was
   * never joined reads nothing.
   */
  history(
    userId: string,
    room: string,
    before: number | undefined,
    limit: number,
  ): { events: ClientEvent[]; next_before?: number } {
    const me = this.repos.memberships.get(room, userId)
    if (!me || (me.membership !== 'join' && me.left_pos === 0)) throw notMember()
    const roomRow = this.repos.rooms.get(room)!
    let upto = (before ?? roomRow.last_seq + 1) - 1
    if (me.membership !== 'join') {
      const leaveSeq = this.repos.events.seqAtStream(room, me.left_pos) ?? 0
      upto = Math.min(upto, leaveSeq)
    }
    // Only durable events: a commit whose fsync is still running is not shown to anyone yet.
    const rows = this.repos.events.history(room, upto + 1, this.sequencer.streamHead, limit)
    const events = rows.map(clientEvent)
    const oldest = rows.at(-1)
    // A replica that started from a snapshot holds nothing before its base.
    return oldest && oldest.seq > roomRow.base_seq + 1 ? { events, next_before: oldest.seq } : { events }
  }
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : null
  } catch {
    return null
  }
}
