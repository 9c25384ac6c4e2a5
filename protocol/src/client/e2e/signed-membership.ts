/**
 * Membership changes of encrypted rooms signed by this device, and the validated members a send
 * shares keys with (E2E.md section 2.3; docs/e2e.md "Signed membership"). Used by `EndToEnd`: it
 * signs each statement with this device's DSK, `prev` being the latest validated statement this
 * device knows in the room, and remembers what it validated per room (`membership.ts`).
 */
import * as e2e from '../../crypto/e2e/index.ts'
import type { CreateRoomBody } from '../../schema/rest.ts'
import type { HttpApi } from '../http.ts'
import type { ClientStore } from '../store.ts'
import {
  MembershipMemoryStore,
  membershipUsers,
  rememberStatement,
  validateMembership,
  type MembershipProblem,
} from './membership.ts'

/** What {@link SignedMembership} needs from `EndToEnd`. */
export interface SignedMembershipDeps {
  readonly api: HttpApi
  readonly store: ClientStore
  readonly dsk: e2e.SigningKeyPair
  readonly userId: string
  readonly deviceId: string
  /** Verified devices of users, from their pinned UIK-signed device lists (TOFU). */
  devicesOf(users: readonly string[]): Promise<ReadonlyMap<string, readonly e2e.VerifiedDevice[]>>
  /** Reports a membership the server changed without a valid statement (`membership_unsigned`). */
  warn(problem: MembershipProblem): void
}

/** The validated members of a room, their devices' entries, and the membership epoch (E2E.md section 2.3). */
export interface ValidatedRoom<T> {
  readonly members: readonly string[]
  /** Entries of every user fetched (members, actors), by user: filter by `members` before sharing. */
  readonly devices: ReadonlyMap<string, readonly T[]>
  /** `H(latest validated statement)`, base64url: the membership epoch of new sessions, the next `prev`. */
  readonly epoch: string
}

export class SignedMembership {
  readonly #deps: SignedMembershipDeps
  readonly #memory: MembershipMemoryStore

  constructor(deps: SignedMembershipDeps) {
    this.#deps = deps
    this.#memory = new MembershipMemoryStore(deps.store)
  }

  /**
   * The room's validated members (E2E.md section 2.3): fetches the server's view of the membership,
   * the device lists of its members and actors through `devicesFor` (one query for both: the send
   * needs the members' devices anyway), validates, warns about what it ignored, and remembers.
   */
  async validate<T>(
    room: string,
    devicesFor: (users: readonly string[]) => Promise<ReadonlyMap<string, readonly T[]>>,
    deviceOf: (entry: T) => e2e.VerifiedDevice,
  ): Promise<ValidatedRoom<T>> {
    const view = await this.#deps.api.membership(room)
    const memory = await this.#memory.get(room)
    const devices = await devicesFor(membershipUsers(view, memory))
    const verdict = validateMembership(room, view, (u) => devices.get(u)?.map(deviceOf), memory)
    await this.#memory.put(room, verdict.memory)
    for (const problem of verdict.problems) this.#deps.warn(problem)
    return { members: verdict.members, devices, epoch: verdict.epoch }
  }

  /** Invites `user` with a signed statement (E2E.md section 2.3). */
  async invite(room: string, user: string, reason?: string): Promise<void> {
    const statement = await this.#sign(room, user, 'invite')
    await this.#deps.api.invite(room, user, reason, statement)
    await this.#remember(room, statement)
  }

  /** Joins (accepts an invite) with a signed statement. */
  async join(room: string): Promise<void> {
    const statement = await this.#sign(room, this.#deps.userId, 'join')
    await this.#deps.api.join(room, statement)
    await this.#remember(room, statement)
  }

  /** Leaves with a signed statement. */
  async leave(room: string): Promise<void> {
    const statement = await this.#sign(room, this.#deps.userId, 'leave')
    await this.#deps.api.leave(room, statement)
    await this.#remember(room, statement)
  }

  /** Removes `user` with a signed statement (a kick is a `leave` set by someone else). */
  async kick(room: string, user: string, reason?: string): Promise<void> {
    const statement = await this.#sign(room, user, 'leave')
    await this.#deps.api.kick(room, user, reason, statement)
    await this.#remember(room, statement)
  }

  /** Bans `user` with a signed statement. */
  async ban(room: string, user: string, reason?: string): Promise<void> {
    const statement = await this.#sign(room, user, 'ban')
    await this.#deps.api.ban(room, user, reason, statement)
    await this.#remember(room, statement)
  }

  /**
   * Creates a room; an encrypted one without invites (an invite's statement names the room, whose
   * id the server picks), then invites each person with a signed statement. Returns the room id.
   */
  async createRoom(body: CreateRoomBody): Promise<string> {
    if (body.encrypted !== true) return this.#deps.api.createRoom(body)
    const { invite = [], ...rest } = body
    const room = await this.#deps.api.createRoom({ ...rest, encrypted: true })
    for (const user of new Set(invite)) if (user !== this.#deps.userId) await this.invite(room, user)
    return room
  }

  /**
   * Turns encryption on with the members at this moment (as the server lists them) signed by this
   * device (E2E.md section 2.3): they are the roots of the room's membership log.
   */
  async enableEncryption(room: string): Promise<void> {
    const view = await this.#deps.api.membership(room)
    const members = view.members
      .filter((m) => m.membership === 'join' || m.membership === 'invite')
      .map((m) => ({ user_id: m.user_id, membership: m.membership as 'join' | 'invite' }))
    const snapshot = e2e.signMembershipSnapshot(this.#deps.dsk, {
      room,
      members,
      actor: this.#deps.userId,
      actorDevice: this.#deps.deviceId,
      prev: e2e.membershipRoot(room),
    })
    await this.#deps.api.enableEncryption(room, {
      ...snapshot,
      members: snapshot.members.map((m) => ({ ...m })),
    })
  }

  async #sign(
    room: string,
    target: string,
    membership: e2e.MembershipState,
  ): Promise<e2e.SignedMembershipStatement> {
    // The latest validated statement is `prev`; the epoch is exactly that hash.
    const { epoch } = await this.validate(
      room,
      (users) => this.#deps.devicesOf(users),
      (d) => d,
    )
    return e2e.signMembership(this.#deps.dsk, {
      room,
      target,
      membership,
      actor: this.#deps.userId,
      actorDevice: this.#deps.deviceId,
      prev: epoch,
    })
  }

  async #remember(room: string, statement: e2e.SignedMembershipStatement): Promise<void> {
    await this.#memory.put(room, rememberStatement(await this.#memory.get(room), statement))
  }
}
