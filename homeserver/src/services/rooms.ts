/** Room operations behind the REST API: create, membership, settings, roles, listing and history. */
import { newRoomId, ParleyError, parseRoomId, type JsonObject } from '@parley/protocol'
import {
  E2E_SUITE_V1,
  ROLE_LEVEL,
  roleOfLevel,
  type ClientEvent,
  type CreateRoomBody,
  type Role,
  type RoomSummary,
} from '@parley/protocol/schema'
import type { Repos } from '../db/repos/index.ts'
import { clientEvent } from './event-json.ts'
import { notMember } from './room-rules.ts'
import type { RemoteRooms } from './remote-rooms.ts'
import type { Draft, LeaveIntent, Sequencer } from './sequencer.ts'

export class RoomsService {
  constructor(
    private readonly repos: Repos,
    private readonly sequencer: Sequencer,
    private readonly serverName: string,
    private readonly remote: RemoteRooms,
  ) {}

  /** Sequences here if we own the room, else through its owner (resolves once it has). */
  #submit(draft: Draft): Promise<{ event_id: string }> {
    if (parseRoomId(draft.room)?.server === this.serverName) return this.sequencer.submit(draft)
    return this.remote.submit(draft)
  }

  #member(
    room: string,
    sender: string,
    target: string,
    membership: string,
    reason?: string,
    intent?: LeaveIntent,
  ) {
    const content: JsonObject = reason === undefined ? { membership } : { membership, reason }
    return this.#submit({ room, type: 'm.member', stateKey: target, sender, content, intent })
  }

  /** Creates a room; its creation, the creator's join, settings and invites commit together, in order. */
  async create(userId: string, body: CreateRoomBody): Promise<{ room_id: string }> {
    const invite = [...new Set(body.invite ?? [])].filter((u) => u !== userId)
    if (body.kind === 'dm' && invite.length !== 1) {
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

  invite(userId: string, room: string, target: string, reason?: string) {
    return this.#member(room, userId, target, 'invite', reason)
  }
  join(userId: string, room: string) {
    return this.#member(room, userId, userId, 'join')
  }
  leave(userId: string, room: string) {
    return this.#member(room, userId, userId, 'leave')
  }
  kick(userId: string, room: string, target: string, reason?: string) {
    if (target === userId) throw new ParleyError('P_BAD_REQUEST', 'use leave to leave a room')
    return this.#member(room, userId, target, 'leave', reason, 'kick')
  }
  ban(userId: string, room: string, target: string, reason?: string) {
    return this.#member(room, userId, target, 'ban', reason)
  }
  unban(userId: string, room: string, target: string) {
    return this.#member(room, userId, target, 'leave', undefined, 'unban')
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

  /** Turns end-to-end encryption on for good (E2E.md section 2): a state event, like name and topic. */
  enableEncryption(userId: string, room: string) {
    return this.#submit({ room, type: 'm.room.encryption', sender: userId, content: { suite: E2E_SUITE_V1 } })
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
