/**
 * Signed membership at the actor's own homeserver (E2E.md section 2.3; docs/e2e.md "Signed
 * membership"): a membership request may carry the acting device's signed statement (or, to turn
 * encryption on, a signed snapshot of the members). Before the change is sequenced here or forwarded
 * to the room's owner, the statement must describe exactly this request and verify with a device of
 * the actor's currently published device list. The owner of a room cannot check the signatures of
 * other servers' users (it holds no directory of their keys it could trust more than their server):
 * it checks presence and the match with the event (room rules), their own server checked the
 * signature before forwarding. Clients check everything again against device lists they pinned.
 */
import { fromBase64Url, ParleyError } from '@parley/protocol'
import { e2e } from '@parley/protocol/crypto'
import type { Membership, MembershipSnapshot, MembershipStatement } from '@parley/protocol/schema'
import type { KeysService } from './keys.ts'

const bad = (why: string): ParleyError => new ParleyError('P_BAD_MEMBERSHIP_STATEMENT', why)

/** What a membership request asks for: the statement must say exactly this. */
export interface MembershipRequest {
  readonly room: string
  readonly target: string
  readonly membership: Membership
  /** The authenticated user. */
  readonly actor: string
}

export class MembershipStatements {
  constructor(private readonly keys: KeysService) {}

  /**
   * Checks a statement against its request and the actor's published device list (E2E.md section
   * 2.3); throws `P_BAD_MEMBERSHIP_STATEMENT` on any difference or a signature that does not verify.
   */
  checkStatement(request: MembershipRequest, statement: MembershipStatement): void {
    if (
      statement.room !== request.room ||
      statement.target !== request.target ||
      statement.membership !== request.membership ||
      statement.actor !== request.actor
    )
      throw bad('the signed statement does not match this request (room, target, membership, actor)')
    try {
      e2e.verifyMembership(statement, request.room, this.#devicesOf(request.actor))
    } catch (err) {
      if (e2e.isE2eError(err)) throw bad(`the signed statement does not verify: ${err.code}`)
      throw err
    }
  }

  /**
   * Checks a snapshot signed to turn encryption on (E2E.md section 2.3): about this room, by the
   * authenticated user, verifying with a device of their published list. That it names exactly the
   * members is checked by the room rules, in the transaction that turns encryption on.
   */
  checkSnapshot(room: string, actor: string, snapshot: MembershipSnapshot): void {
    if (snapshot.room !== room || snapshot.actor !== actor)
      throw bad('the signed snapshot does not match this request (room, actor)')
    try {
      e2e.verifyMembershipSnapshot(snapshot, room, this.#devicesOf(actor))
    } catch (err) {
      if (e2e.isE2eError(err)) throw bad(`the signed snapshot does not verify: ${err.code}`)
      throw err
    }
  }

  /** The devices of the actor's published list; none if they published none (nothing verifies then). */
  #devicesOf(actor: string): readonly e2e.VerifiedDevice[] {
    const list = this.keys.localDeviceList(actor)
    const uik = list ? fromBase64Url(list.uik) : null
    if (!list || !uik) throw bad('you have no published device list to verify the statement with')
    return e2e.verifyDeviceList(list, { userId: actor, uik }).devices
  }
}
