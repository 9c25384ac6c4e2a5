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
import { CONTENT_SCHEMAS } from '@parley/protocol/schema'
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
import type { PeerKeys } from './peer-keys.ts'

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
    const next = (this.#queues.get(room) ?? Promise.resolve())
      .then(work)
      .catch((err: unknown) => this.#o.log.error({ peer, room, err: String(err) }, 'replication failed'))
    this.#queues.set(room, next)
    void next.then(() => {
      if (this.#queues.get(room) === next) this.#queues.delete(room)
    })
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
          if (err instanceof EquivocationError) this.#o.equivocation(peer, room, err.seq)
          else this.#o.log.error({ peer, room, err: String(err) }, 'applying replicated events failed')
        },
      )
  }

  /** Everything about a batch that does not need the database: a fault, or the chain's new head. */
  async #verify(
    peer: string,
    room: string,
    head: Head,
    items: readonly ReplicatedEvent[],
    ownerSig: KeyedSignature,
  ): Promise<{ code: string; detail: string } | { head: string }> {
    const { maxContentBytes } = this.#o
    for (const item of items) {
      const { header, content } = item
      if (parseUserId(header.sender)?.server !== header.origin)
        return { code: 'spoofed_sender', detail: `${header.sender} from origin ${header.origin}` }
      const schema = CONTENT_SCHEMAS[header.type as keyof typeof CONTENT_SCHEMAS] as
        (typeof CONTENT_SCHEMAS)[keyof typeof CONTENT_SCHEMAS] | undefined
      if (!schema) return { code: 'unknown_type', detail: header.type }
      if (content !== null) {
        if (!schema.safeParse(content).success) return { code: 'bad_content', detail: item.envelope.event_id }
        if (canonicalJson(content).length > maxContentBytes)
          return { code: 'too_large', detail: item.envelope.event_id }
      }
    }
    const chained = verifyChain(room, head.seq, head.hash, items.map(linkOf))
    if (!chained.ok) return { code: chained.fault, detail: `${room} at index ${chained.index}` }
    const last = items.at(-1)!.envelope
    if (!(await this.#signed(peer, ownerSig, last.owner_ts, envelopeSigningBytes(last))))
      return { code: 'bad_owner_sig', detail: `${room} seq ${last.seq}` }
    for (const item of items) {
      const { header } = item
      // The owner's chain and signature vouch for its own users' events; others carry their origin's.
      if (header.origin === peer) continue
      // A server our policy refuses is never contacted (not even for its keys) and never shown: its
      // events are refused, so a room with its users stops here (docs/federation.md, "Policy").
      if (header.origin !== this.#o.serverName && !this.#o.links.isAllowed(header.origin))
        return { code: 'origin_not_allowed', detail: `${header.origin} in ${room}` }
      if (!item.origin_sig) return { code: 'missing_origin_sig', detail: item.envelope.event_id }
      if (!(await this.#signed(header.origin, item.origin_sig, header.origin_ts, eventSigningBytes(header))))
        return { code: 'bad_origin_sig', detail: item.envelope.event_id }
    }
    return { head: chained.head }
  }

  async #signed(server: string, sig: KeyedSignature, atTs: number, bytes: Uint8Array): Promise<boolean> {
    const key = await this.#o.peerKeys.keyFor(server, sig.kid, atTs)
    const signature = fromBase64Url(sig.sig)
    return key.ok && signature !== null && this.#o.verify(key.value, bytes, signature)
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
      stream = ctx.nextStream()
      const contentJson = item.content === null ? null : canonicalJson(item.content)
      const target = item.content?.target
      repos.events.insert({
        stream_pos: stream,
        room_id: room,
        seq: envelope.seq,
        event_id: envelope.event_id,
        type: header.type,
        state_key: header.state_key ?? null,
        sender: header.sender,
        origin_ts: header.origin_ts,
        v: header.v,
        origin: header.origin,
        nonce: header.nonce,
        content_hash: header.content_hash,
        prev: envelope.prev,
        owner_ts: envelope.owner_ts,
        content: contentJson,
        relates_to: typeof target === 'string' ? target : null,
        origin_kid: item.origin_sig?.kid ?? null,
        origin_sig: item.origin_sig?.sig ?? null,
      })
      const event: CommittedEvent = {
        stream_pos: stream,
        room_id: room,
        seq: envelope.seq,
        event_id: envelope.event_id,
        type: header.type,
        state_key: header.state_key ?? null,
        sender: header.sender,
        origin_ts: header.origin_ts,
        content: contentJson ?? '{}',
        redacted_by: null,
      }
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
