/**
 * The replica's half of replication (docs/federation.md, "Replication"): on every new link, tell the
 * owner where each of its rooms stands here; verify what the owner sends (chain, owner signature,
 * origin signatures, who may speak for whom) and apply it in `seq` order through the sequencer's group
 * commit; acknowledge after the commit; ask again (FETCH) across a gap. Rooms never wait on each other.
 */
import {
  canonicalJson,
  envelopeSigningBytes,
  eventSigningBytes,
  fromBase64Url,
  hashCanonicalText,
  ParleyError,
  parseRoomId,
  parseUserId,
  verifyChain,
  type ChainLink,
  type JsonObject,
} from '@parley/protocol'
import { CONTENT_SCHEMAS, ENCRYPTED_ROOM_TYPES } from '@parley/protocol/schema'
import {
  MAX_CURSORS_PER_FRAME,
  type EventsFrame,
  type KeyedSignature,
  type ReplicatedEvent,
  type SnapshotFrame,
} from '@parley/protocol/federation'
import type { Repos } from '../db/repos/index.ts'
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { CommittedEvent, Draft, JobContext, RoomRules, Sequencer } from '../services/sequencer.ts'
import type { LinkManager } from './link-manager.ts'
import { TRANSIENT_KEY_FAULTS } from './owner-side.ts'
import type { PeerKeys } from './peer-keys.ts'
import { clientRowOf, eventRowOf } from '../services/event-log.ts'
import { STATE_TYPES } from '../services/room-rules.ts'

/** Which state a snapshot brings (the rest of the frame is events). */
type SnapshotState = SnapshotFrame['state']

/** A different event at a seq we already hold: proof that the owner misbehaves. */
export class EquivocationError extends ParleyError {
  constructor(
    readonly room: string,
    readonly seq: number,
  ) {
    super('P_CONFLICT', `equivocation: a different event at ${room} seq ${seq}`)
  }
}

/** A batch the owner sent that breaks a rule only the database can check; `code` is the fault. */
export class ReplicaRefusal extends ParleyError {
  constructor(
    readonly code: string,
    detail: string,
  ) {
    super('P_FORBIDDEN', `${code}: ${detail}`)
  }
}

/** State event types that carry a state key (all state types carry content, never null). */
const STATE_KEYED: ReadonlySet<string> = new Set(['m.member', 'm.power_levels'])
/** Frames of one peer waiting for verification, beyond which its link stops being read for a while. */
const MAX_QUEUED_PER_PEER = 256
/** A frame that could not be verified for a passing reason (a key fetch) is asked for again after this. */
const RETRY_MS = 5000

export interface ReplicaSideOptions {
  readonly serverName: string
  readonly repos: Repos
  readonly sequencer: Sequencer
  readonly rules: RoomRules
  readonly links: LinkManager
  readonly peerKeys: Pick<PeerKeys, 'keyFor'>
  readonly verify: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean
  readonly maxContentBytes: number
  readonly clock: Clock
  readonly log: Logger
  readonly fault: (peer: string, code: string, detail: string) => void
  /** Events applied (statistics). */
  readonly applied: (count: number) => void
  /** An owner sent a different event at a seq we hold. */
  readonly equivocation: (peer: string, room: string, seq: number) => void
}

interface Head {
  seq: number
  hash: string
}

export class ReplicaSide {
  readonly #o: ReplicaSideOptions
  /** Head after the last verified batch of each room (ahead of the database while commits run). */
  readonly #heads = new Map<string, Head>()
  /** Verification of a room's frames runs one at a time; commits are pipelined behind it. */
  readonly #queues = new Map<string, Promise<void>>()
  /** Commits in flight per room (an ACK waits for them). */
  readonly #applying = new Map<string, number>()
  /** Rooms with a FETCH outstanding (one at a time per room). */
  readonly #fetching = new Set<string>()
  /**
   * Rooms that reached an event of a server our policy refuses: nothing after it can be applied (the
   * chain needs every event), so the room stops there for us until a restart re-reads the policy.
   */
  readonly #stopped = new Map<string, string>()
  /** Frames waiting per peer (bounded: see MAX_QUEUED_PER_PEER). */
  readonly #queued = new Map<string, number>()

  constructor(options: ReplicaSideOptions) {
    this.#o = options
  }

  /** A new link to an owner: send where each of its rooms stands here, so it resumes from there. */
  linkUp(peer: string): void {
    const rooms = this.#o.repos.rooms.ownedBy(peer).map((r) => [r.room_id, r.last_seq] as [string, number])
    for (const room of rooms) {
      this.#heads.delete(room[0])
      this.#fetching.delete(room[0])
    }
    for (let i = 0; i === 0 || i < rooms.length; i += MAX_CURSORS_PER_FRAME) {
      const chunk = rooms.slice(i, i + MAX_CURSORS_PER_FRAME)
      const done = i + MAX_CURSORS_PER_FRAME >= rooms.length
      if (!this.#o.links.send(peer, { type: 'cursors', rooms: chunk, done })) return
    }
  }

  onEvents(peer: string, frame: EventsFrame): void {
    this.#enqueue(peer, frame.room, () =>
      this.#receive(peer, frame.room, frame.events, frame.owner_sig, null),
    )
  }

  onSnapshot(peer: string, frame: SnapshotFrame): void {
    this.#enqueue(peer, frame.room, () =>
      this.#receive(peer, frame.room, frame.events, frame.owner_sig, frame.state),
    )
  }

  #enqueue(peer: string, room: string, work: () => Promise<void>): void {
    // Only a room's owner speaks for its log (FED-2).
    if (parseRoomId(room)?.server !== peer)
      return this.#o.fault(peer, 'not_owner', `${room} is not ${peer}'s`)
    if (this.#stopped.has(room)) return
    // Verification may wait on a key fetch: a peer that piles frames up meanwhile is paused.
    const queued = (this.#queued.get(peer) ?? 0) + 1
    this.#queued.set(peer, queued)
    if (queued > MAX_QUEUED_PER_PEER) this.#o.links.linkTo(peer)?.pauseFor(1000)
    const next = (this.#queues.get(room) ?? Promise.resolve())
      .then(work)
      .catch((err: unknown) => this.#o.log.error({ peer, room, err: String(err) }, 'replication failed'))
      .finally(() => {
        const n = (this.#queued.get(peer) ?? 1) - 1
        if (n === 0) this.#queued.delete(peer)
        else this.#queued.set(peer, n)
      })
    this.#queues.set(room, next)
    void next.then(() => {
      if (this.#queues.get(room) === next) this.#queues.delete(room)
    })
  }

  /** The server whose event stopped a room here (policy), if it stopped. */
  stoppedBy(room: string): string | undefined {
    return this.#stopped.get(room)
  }

  #isLocal(userId: string): boolean {
    return parseUserId(userId)?.server === this.#o.serverName
  }

  #head(room: string): Head | null {
    const known = this.#heads.get(room)
    if (known) return known
    const row = this.#o.repos.rooms.get(room)
    return row ? { seq: row.last_seq, hash: row.head_hash } : null
  }

  async #receive(
    peer: string,
    room: string,
    items: readonly ReplicatedEvent[],
    ownerSig: KeyedSignature,
    snapshot: SnapshotState | null,
  ): Promise<void> {
    const { repos, links } = this.#o
    const held = this.#head(room)
    // A snapshot of a room we hold is just events; a snapshot starts a room we do not.
    const fresh = held === null
    if (fresh && !snapshot)
      return this.#o.fault(peer, 'unknown_room', `events for ${room}, which we do not hold`)
    // A server gets a room because one of its users is in it or invited: nobody else's rooms.
    const ours = (m: SnapshotState['members'][number]) =>
      this.#isLocal(m.user_id) && (m.membership === 'join' || m.membership === 'invite')
    if (fresh && !snapshot!.members.some(ours))
      return this.#o.fault(peer, 'unsolicited_snapshot', `${room} has none of our users`)
    const head = held ?? { seq: items[0]!.envelope.seq - 1, hash: items[0]!.envelope.prev }
    // What we hold already must be identical (idempotent by event id); a difference is equivocation.
    let skip = 0
    while (skip < items.length && items[skip]!.envelope.seq <= head.seq) {
      const mine = repos.events.atSeq(room, items[skip]!.envelope.seq)
      if (mine && mine.event_id !== items[skip]!.envelope.event_id) {
        return this.#o.equivocation(peer, room, mine.seq)
      }
      skip++
    }
    const incoming = items.slice(skip)
    if (incoming.length === 0) {
      // All repeats. With no commit of this room in flight, everything we hold is durable: say so.
      if (!this.#applying.has(room))
        links.send(peer, { type: 'ack', room, upto_seq: repos.rooms.get(room)?.last_seq ?? 0 })
      return
    }
    const first = incoming[0]!.envelope.seq
    if (first !== head.seq + 1) {
      // A gap: ask for what is missing (once at a time) and drop this frame; the answer repeats it.
      if (!this.#fetching.has(room)) {
        this.#fetching.add(room)
        links.send(peer, { type: 'fetch', room, from: head.seq + 1, to: first - 1 })
      }
      return
    }
    this.#fetching.delete(room)
    const verified = await this.#verify(peer, room, head, incoming, ownerSig)
    if ('stop' in verified) {
      this.#stopped.set(room, verified.stop)
      this.#o.log.warn(
        { peer, room, origin: verified.stop },
        'room stopped: it has events of a server our policy refuses',
      )
      return
    }
    if ('retry' in verified) {
      // Not the owner's fault (a key we could not fetch just now): ask for the same events again later.
      this.#fetching.add(room)
      setTimeout(() => {
        this.#fetching.delete(room)
        links.send(peer, { type: 'fetch', room, from: head.seq + 1, to: head.seq + 1 })
      }, RETRY_MS).unref()
      return
    }
    if ('code' in verified) return this.#o.fault(peer, verified.code, verified.detail)
    this.#heads.set(room, { seq: incoming.at(-1)!.envelope.seq, hash: verified.head })
    this.#applying.set(room, (this.#applying.get(room) ?? 0) + 1)
    const settled = () => {
      const n = this.#applying.get(room)! - 1
      if (n === 0) this.#applying.delete(room)
      else this.#applying.set(room, n)
    }
    this.#o.sequencer
      .run((ctx) => this.#apply(ctx, room, incoming, ownerSig, fresh ? snapshot : null))
      .then(
        (upto) => {
          settled()
          this.#o.applied(incoming.length)
          links.send(peer, { type: 'ack', room, upto_seq: upto })
        },
        (err: unknown) => {
          settled()
          this.#heads.delete(room)
          if (err instanceof EquivocationError) return this.#o.equivocation(peer, room, err.seq)
          if (err instanceof ReplicaRefusal) this.#o.fault(peer, err.code, err.message)
          else this.#o.log.error({ peer, room, err: String(err) }, 'applying replicated events failed')
          // Frames verified behind this one assumed it would apply: ask again from what we hold.
          const held = repos.rooms.get(room)
          if (held && !this.#fetching.has(room)) {
            this.#fetching.add(room)
            links.send(peer, { type: 'fetch', room, from: held.last_seq + 1, to: held.last_seq + 1 })
          }
        },
      )
  }

  /** Everything about a batch that does not need the database: a verdict, or the chain's new head. */
  async #verify(
    peer: string,
    room: string,
    head: Head,
    items: readonly ReplicatedEvent[],
    ownerSig: KeyedSignature,
  ): Promise<{ code: string; detail: string } | { head: string } | { stop: string } | { retry: true }> {
    const { maxContentBytes } = this.#o
    for (const item of items) {
      const { header, content, envelope } = item
      if (parseUserId(header.sender)?.server !== header.origin)
        return { code: 'spoofed_sender', detail: `${header.sender} from origin ${header.origin}` }
      // Own properties only: a type named like an Object.prototype member is no type of ours.
      if (!Object.hasOwn(CONTENT_SCHEMAS, header.type)) return { code: 'unknown_type', detail: header.type }
      const schema = CONTENT_SCHEMAS[header.type as keyof typeof CONTENT_SCHEMAS]
      // Shapes the owner's own checks guarantee; breaking them would break our state rules.
      if (STATE_KEYED.has(header.type) !== (header.state_key !== undefined))
        return { code: 'bad_state_key', detail: envelope.event_id }
      if (STATE_TYPES.has(header.type) && content === null)
        return { code: 'bad_content', detail: `${envelope.event_id}: state without content` }
      if (header.type === 'm.room.create' && envelope.seq !== 1)
        return { code: 'bad_create', detail: `${room} created again at seq ${envelope.seq}` }
      if (content !== null) {
        if (!schema.safeParse(content).success) return { code: 'bad_content', detail: envelope.event_id }
        if (canonicalJson(content).length > maxContentBytes)
          return { code: 'too_large', detail: envelope.event_id }
      }
    }
    const chained = verifyChain(room, head.seq, head.hash, items.map(linkOf))
    if (!chained.ok) return { code: chained.fault, detail: `${room} at index ${chained.index}` }
    const last = items.at(-1)!.envelope
    const ownerSigned = await this.#signed(peer, ownerSig, last.owner_ts, envelopeSigningBytes(last))
    if (ownerSigned === 'unavailable') return { retry: true }
    if (!ownerSigned) return { code: 'bad_owner_sig', detail: `${room} seq ${last.seq}` }
    for (const item of items) {
      const { header } = item
      // The owner's chain and signature vouch for its own users' events; others carry their origin's.
      if (header.origin === peer) continue
      // A server our policy refuses is never contacted (not even for its keys) and never shown: the
      // room stops at its first event for us. Not the owner's fault, so not counted against it.
      if (header.origin !== this.#o.serverName && !this.#o.links.isAllowed(header.origin))
        return { stop: header.origin }
      if (!item.origin_sig) return { code: 'missing_origin_sig', detail: item.envelope.event_id }
      const signed = await this.#signed(
        header.origin,
        item.origin_sig,
        header.origin_ts,
        eventSigningBytes(header),
      )
      if (signed === 'unavailable') return { retry: true }
      if (!signed) return { code: 'bad_origin_sig', detail: item.envelope.event_id }
    }
    return { head: chained.head }
  }

  /** Whether `sig` is `server`'s over `bytes`; 'unavailable' when its key cannot be looked up right now. */
  async #signed(
    server: string,
    sig: KeyedSignature,
    atTs: number,
    bytes: Uint8Array,
  ): Promise<boolean | 'unavailable'> {
    const key = await this.#o.peerKeys.keyFor(server, sig.kid, atTs)
    if (!key.ok && TRANSIENT_KEY_FAULTS.has(key.error.code)) return 'unavailable'
    const signature = fromBase64Url(sig.sig)
    return key.ok && signature !== null && this.#o.verify(key.value, bytes, signature)
  }

  /**
   * What an event may do to the state we keep, beyond what its signatures prove (inside the
   * transaction, so earlier events of the batch count): no second copy of an event id; edits,
   * reactions and redactions only of events of the same room; only our own server (it signed it)
   * can make one of our users join a room; and once a room is end-to-end encrypted, no plaintext
   * (the owner's rules refuse it: an owner that sequences it anyway is not followed).
   */
  #checkEffects(room: string, item: ReplicatedEvent, encrypted: boolean): void {
    const { repos, serverName } = this.#o
    const { header, content, envelope } = item
    if (repos.events.get(envelope.event_id))
      throw new ReplicaRefusal('duplicate_event', `${envelope.event_id} is already stored`)
    if (encrypted && !STATE_TYPES.has(header.type) && !ENCRYPTED_ROOM_TYPES.has(header.type))
      throw new ReplicaRefusal('plaintext_in_encrypted_room', `${envelope.event_id} is ${header.type}`)
    const target = content?.target
    if (typeof target === 'string') {
      const held = repos.events.get(target)
      if (held && held.room_id !== room) throw new ReplicaRefusal('cross_room_target', envelope.event_id)
    }
    const membership = (content as { membership?: unknown } | null)?.membership
    if (header.type === 'm.member' && membership === 'join' && this.#isLocal(header.state_key!)) {
      if (header.origin !== serverName)
        throw new ReplicaRefusal('forged_join', `${header.state_key} in ${room}`)
    }
  }

  /**
   * A snapshot's members, with our own users' state checked against what we know: only we can say that
   * one of our users joined (we signed the join and the owner acknowledged it), so an unproven `join`
   * of a local user counts as an invite: the owner cannot put our users into rooms they never entered.
   */
  #snapshotMembers(room: string, snapshot: SnapshotState): SnapshotState['members'] {
    return snapshot.members.map((m) => {
      if (m.membership !== 'join' || !this.#isLocal(m.user_id)) return m
      const joined = this.#o.repos.replication.acknowledgedJoin(room, m.user_id)
      return joined ? m : { ...m, membership: 'invite' as const, level: 0 }
    })
  }

  /** Inside the sequencer's transaction: store and apply a verified batch; returns the new head seq. */
  #apply(
    ctx: JobContext,
    room: string,
    items: readonly ReplicatedEvent[],
    ownerSig: KeyedSignature,
    snapshot: SnapshotState | null,
  ): number {
    const { repos, rules, clock } = this.#o
    let row = repos.rooms.get(room)
    const fresh = !row
    if (!row) {
      if (!snapshot) throw new ParleyError('P_NOT_FOUND', `no replica of ${room}`)
      const first = items[0]!.envelope
      repos.rooms.insertReplica(
        {
          room_id: room,
          kind: snapshot.kind,
          creator: snapshot.creator,
          encrypted: snapshot.encrypted ? 1 : 0,
          name: snapshot.name,
          topic: snapshot.topic,
          last_seq: first.seq - 1,
          head_hash: first.prev,
          base_seq: first.seq - 1,
        },
        clock.now(),
      )
      row = repos.rooms.get(room)!
    }
    let seq = row.last_seq
    let hash = row.head_hash
    let stream = 0
    let lastInserted: string | null = null
    const memberStream = new Map<string, number>()
    for (const item of items) {
      const { header, envelope } = item
      if (envelope.seq <= seq) {
        const held = repos.events.atSeq(room, envelope.seq)
        if (held && held.event_id !== envelope.event_id) throw new EquivocationError(room, envelope.seq)
        continue
      }
      if (envelope.seq !== seq + 1 || envelope.prev !== hash)
        throw new ParleyError('P_CONFLICT', `${room}: batch does not continue at seq ${seq}`)
      // A snapshot's events are history from before its state: only later events are held to it.
      this.#checkEffects(room, item, !fresh && repos.rooms.get(room)?.encrypted === 1)
      stream = ctx.nextStream()
      const contentJson = item.content === null ? null : canonicalJson(item.content)
      const target = item.content?.target ?? item.relates_to
      const row = eventRowOf({
        stream,
        header,
        envelope,
        contentJson,
        relatesTo: typeof target === 'string' ? target : null,
        originSig: item.origin_sig ?? null,
      })
      repos.events.insert(row)
      if (item.content === null && item.redacted_by) repos.events.redact(envelope.event_id, item.redacted_by)
      const event: CommittedEvent = clientRowOf(
        row,
        item.content === null ? (item.redacted_by ?? null) : null,
      )
      // A snapshot's events are history: the state it carries is already the result of them.
      if (fresh) {
        if (header.type === 'm.member') memberStream.set(header.state_key!, stream)
      } else {
        const draft: Draft = {
          room,
          type: header.type,
          stateKey: header.state_key,
          sender: header.sender,
          content: (item.content ?? {}) as JsonObject,
        }
        rules.apply(event, draft)
      }
      ctx.committed(event)
      seq = envelope.seq
      hash = hashOfEnvelope(envelope)
      lastInserted = envelope.event_id
    }
    if (fresh && snapshot) {
      for (const m of this.#snapshotMembers(room, snapshot)) {
        repos.memberships.set(room, m.user_id, m.membership, memberStream.get(m.user_id) ?? stream)
        if (m.level > 0 && m.membership === 'join') repos.memberships.setLevel(room, m.user_id, m.level)
      }
    }
    repos.rooms.setHead(room, seq, hash)
    if (lastInserted === items.at(-1)!.envelope.event_id)
      repos.events.setOwnerSig(lastInserted, ownerSig.kid, ownerSig.sig)
    return seq
  }
}

function linkOf(item: ReplicatedEvent): ChainLink {
  return { header: item.header, content: item.content as JsonObject | null, envelope: item.envelope }
}

function hashOfEnvelope(envelope: ReplicatedEvent['envelope']): string {
  return hashCanonicalText(canonicalJson(envelope))
}
