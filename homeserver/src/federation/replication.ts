/**
 * Replication over the links (docs/federation.md, "Replication"): routes each sealed frame, checked
 * against its schema, to the owner side, the replica side or the outbox; starts each side on `link up`;
 * counts every refusal; cuts the link of a peer that keeps misbehaving; and at start-up dials the peers
 * that have data waiting.
 */
import { REPLICATION_FRAMES } from '@parley/protocol/federation'
import type { Signer } from '@parley/protocol/signing'
import type { Clock } from '../clock.ts'
import type { Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'
import type { Hub } from '../services/hub.ts'
import type { RoomRules, Sequencer } from '../services/sequencer.ts'
import type { LinkManager } from './link-manager.ts'
import { LinkError, type AppFrame } from './link-socket.ts'
import { Outbox } from './outbox.ts'
import { OwnerSide } from './owner-side.ts'
import type { PeerKeys } from './peer-keys.ts'
import { ReplicaSide } from './replica-side.ts'

/** A peer that commits this many faults within FAULT_WINDOW_MS loses its link (FED-2). */
const FAULT_LIMIT = 10
const FAULT_WINDOW_MS = 60_000

export interface ReplicationOptions {
  readonly serverName: string
  readonly signer: Signer
  readonly repos: Repos
  readonly sequencer: Sequencer
  readonly rules: RoomRules
  readonly links: LinkManager
  readonly peerKeys: Pick<PeerKeys, 'keyFor'>
  readonly verify: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean
  readonly hub: Hub
  readonly maxContentBytes: number
  readonly clock: Clock
  readonly log: Logger
}

/** Counters for tests, benchmarks and operators. */
export interface ReplicationStats {
  /** Replicated events applied here. */
  applied: number
  /** Refused frames and events, by fault code. */
  readonly faults: Map<string, number>
  /** Different events seen at a seq we hold. */
  equivocations: number
}

export class Replication {
  readonly owner: OwnerSide
  readonly replica: ReplicaSide
  readonly outbox: Outbox
  readonly stats: ReplicationStats = { applied: 0, faults: new Map(), equivocations: 0 }
  readonly #o: ReplicationOptions
  readonly #recentFaults = new Map<string, number[]>()

  constructor(options: ReplicationOptions) {
    this.#o = options
    const fault = (peer: string, code: string, detail: string) => this.#fault(peer, code, detail)
    this.owner = new OwnerSide({ ...options, fault })
    this.replica = new ReplicaSide({
      ...options,
      fault,
      applied: (n) => (this.stats.applied += n),
      equivocation: (peer, room, seq) => {
        this.stats.equivocations++
        options.log.error(
          { peer, room, seq },
          'EQUIVOCATION: the owner sent a different event at a seq we hold',
        )
        this.#fault(peer, 'equivocation', `${room} seq ${seq}`)
      },
    })
    this.outbox = new Outbox({ ...options, fault })
    options.sequencer.onCommit((events) => this.owner.committed(events))
    options.links.on('link up', (link) => {
      const peer = link.peer
      this.owner.linkUp(peer)
      this.replica.linkUp(peer)
      this.outbox.linkUp(peer)
    })
    options.links.on('link down', (peer) => {
      this.owner.linkDown(peer)
      this.outbox.linkDown(peer)
    })
    options.links.onFrame((peer, frame) => this.#onFrame(peer, frame))
  }

  /** Dials every peer we owe events or submissions (DESIGN.md section 6: "pending data at startup"). */
  start(): void {
    for (const peer of new Set([...this.owner.peersBehind(), ...this.outbox.owners()])) {
      this.#o.links.ensureLink(peer).catch(() => {}) // the link manager redials with backoff
    }
  }

  #onFrame(peer: string, frame: AppFrame): void {
    const schema = REPLICATION_FRAMES[frame.type as keyof typeof REPLICATION_FRAMES] as
      (typeof REPLICATION_FRAMES)[keyof typeof REPLICATION_FRAMES] | undefined
    if (!schema) return this.#fault(peer, 'unknown_frame', frame.type.slice(0, 64))
    const parsed = schema.safeParse(frame)
    if (!parsed.success)
      return this.#fault(peer, 'bad_frame', `${frame.type}: ${parsed.error.issues[0]?.message}`)
    const f = parsed.data
    switch (f.type) {
      case 'events':
        return this.replica.onEvents(peer, f)
      case 'snapshot':
        return this.replica.onSnapshot(peer, f)
      case 'ack':
        return this.owner.onAck(peer, f)
      case 'fetch':
        return this.owner.onFetch(peer, f)
      case 'cursors':
        return this.owner.onCursors(peer, f)
      case 'submit':
        return this.owner.onSubmit(peer, f)
      case 'submit_ack':
        return this.outbox.onSubmitAck(peer, f)
      case 'ephemeral':
        return // federated typing, receipts and presence: next
    }
  }

  #fault(peer: string, code: string, detail: string): void {
    this.stats.faults.set(code, (this.stats.faults.get(code) ?? 0) + 1)
    this.#o.log.warn({ peer, fault: code, detail }, 'federation peer sent something we refuse')
    const now = this.#o.clock.now()
    const recent = (this.#recentFaults.get(peer) ?? []).filter((t) => now - t < FAULT_WINDOW_MS)
    recent.push(now)
    this.#recentFaults.set(peer, recent)
    if (recent.length >= FAULT_LIMIT) {
      this.#recentFaults.delete(peer)
      const link = this.#o.links.linkTo(peer)
      if (link) void link.close('too many faults', new LinkError('closed_by_peer', 'too many faults'))
    }
  }
}
