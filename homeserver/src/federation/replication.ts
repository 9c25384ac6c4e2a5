/**
 * Replication over the links (docs/federation.md, "Replication"): routes each sealed frame, checked
 * against its schema, to the owner side, the replica side or the outbox; starts each side on `link up`;
 * counts every refusal; cuts the link of a peer that keeps misbehaving; and at start-up dials the peers
 * that have data waiting.
 */
import { ParleyError, parseUserId, type JsonObject } from '@parley/protocol'
import { REPLICATION_FRAMES, type EphemeralFrame } from '@parley/protocol/federation'
import { MemberContent, parseJson, type PresenceStatus } from '@parley/protocol/schema'
import type { Signer } from '@parley/protocol/signing'
import type { Clock } from '../clock.ts'
import type { Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'
import type { EphemeralRelay, EphemeralService } from '../services/ephemeral.ts'
import { RateLimiter } from '../services/rate-limit.ts'
import type { Hub, RoomMembers } from '../services/hub.ts'
import type { CommittedEvent, RoomRules, Sequencer } from '../services/sequencer.ts'
import type { LinkManager } from './link-manager.ts'
import { LinkError, type AppFrame } from './link-socket.ts'
import { Outbox } from './outbox.ts'
import { OwnerSide } from './owner-side.ts'
import type { PeerKeys } from './peer-keys.ts'
import { ReplicaSide } from './replica-side.ts'
import { FederatedToDevice } from './to-device-relay.ts'
import { FederatedMedia } from './media-relay.ts'
import { FederatedKeys } from './keys-relay.ts'
import type { ToDeviceService } from '../services/to-device.ts'
import type { MediaService } from '../services/media.ts'
import type { KeysService } from '../services/keys.ts'

/** A peer that commits this many faults within FAULT_WINDOW_MS loses its link (FED-2). */
const FAULT_LIMIT = 10
const FAULT_WINDOW_MS = 60_000
/** Statuses sent to a remote joiner's server per join: a burst of presence for a big room stays small. */
const PRESENCE_ON_JOIN = 100
/** Statuses sent to a peer when a link to it comes up. */
const PRESENCE_ON_LINK_UP = 1000
/** A join older than this when it commits here (catch-up, snapshot) announces no presence. */
const PRESENCE_JOIN_FRESH_MS = 30_000

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
  readonly members: RoomMembers
  readonly ephemeral: EphemeralService
  readonly toDevice: ToDeviceService
  readonly media: MediaService
  /** Media fetches from one peer at once, and the longest wait for one chunk. */
  readonly mediaFetchesPerPeer: number
  readonly mediaTimeoutMs: number
  /** The E2E key directory, and the longest wait for a peer's answer about its users' keys. */
  readonly keys: KeysService
  readonly keysTimeoutMs: number
  readonly maxContentBytes: number
  /** Frames per second (and burst) a peer may send before its reads are paused. */
  readonly framesPerSecond: number
  readonly frameBurst: number
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

export class Replication implements EphemeralRelay {
  readonly owner: OwnerSide
  readonly replica: ReplicaSide
  readonly outbox: Outbox
  readonly toDevice: FederatedToDevice
  readonly media: FederatedMedia
  readonly keys: FederatedKeys
  readonly stats: ReplicationStats = { applied: 0, faults: new Map(), equivocations: 0 }
  readonly #o: ReplicationOptions
  readonly #recentFaults = new Map<string, number[]>()
  readonly #frameRate: RateLimiter

  constructor(options: ReplicationOptions) {
    this.#o = options
    this.#frameRate = new RateLimiter(options.clock, options.frameBurst, options.framesPerSecond)
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
    this.toDevice = new FederatedToDevice({ ...options, fault })
    this.media = new FederatedMedia({ ...options, fault })
    this.keys = new FederatedKeys({ ...options, fault })
    options.sequencer.onCommit((events) => {
      this.owner.committed(events)
      this.outbox.applied(events.map((e) => e.event_id))
    })
    options.links.on('link up', (link) => {
      const peer = link.peer
      this.owner.linkUp(peer)
      this.replica.linkUp(peer)
      this.outbox.linkUp(peer)
      this.toDevice.linkUp(peer)
      this.media.linkUp(peer)
      this.keys.linkUp(peer)
      this.#presenceToPeer(peer)
    })
    options.links.on('link down', (peer) => {
      this.owner.linkDown(peer)
      this.outbox.linkDown(peer)
      this.toDevice.linkDown(peer)
      this.media.linkDown(peer)
      this.keys.linkDown(peer)
      // Nobody speaks for that server's users now: show them offline rather than frozen as they were.
      options.ephemeral.peerDown(peer)
    })
    options.links.onFrame((peer, frame) => this.#onFrame(peer, frame))
    options.ephemeral.relay = this
    options.sequencer.onCommit((events) => this.#presenceOnJoin(events))
  }

  // ---- ephemeral: typing, receipts, presence (never queued: a peer without a link misses them) ----

  /** Other servers with a joined member in the room. */
  #serversOf(room: string, into = new Set<string>()): Set<string> {
    for (const user of this.#o.members.joined(room)) {
      const server = parseUserId(user)?.server
      if (server && server !== this.#o.serverName) into.add(server)
    }
    return into
  }

  #broadcast(servers: Iterable<string>, frame: JsonObject): void {
    for (const server of servers) this.#o.links.send(server, frame)
  }

  typing(userId: string, room: string, typing: boolean): void {
    this.#broadcast(this.#serversOf(room), {
      type: 'ephemeral',
      kind: 'typing',
      room,
      user_id: userId,
      typing,
    })
  }

  receipt(userId: string, room: string, eventId: string): void {
    this.#broadcast(this.#serversOf(room), {
      type: 'ephemeral',
      kind: 'receipt',
      room,
      user_id: userId,
      event_id: eventId,
    })
  }

  presence(userId: string, status: PresenceStatus): void {
    const servers = new Set<string>()
    for (const m of this.#o.repos.memberships.forUser(userId))
      if (m.membership === 'join') this.#serversOf(m.room_id, servers)
    this.#broadcast(servers, { type: 'ephemeral', kind: 'presence', user_id: userId, status })
  }

  /**
   * Presence travels on change only, so a server that starts sharing a room would not know who in it
   * is online. On a join: our joiner's status goes to the room's other servers; a remote joiner's
   * server gets the status of our members there (the online ones, at most {@link PRESENCE_ON_JOIN}).
   */
  #presenceOnJoin(events: readonly CommittedEvent[]): void {
    const { ephemeral, serverName, members } = this.#o
    for (const e of events) {
      if (e.type !== 'm.member' || e.state_key === null) continue
      // Joins replayed by catch-up or a snapshot are old news: only a join happening now announces, and
      // only while the joiner is still in (a user kicked since must not learn anyone's presence).
      if (this.#o.clock.now() - e.origin_ts > PRESENCE_JOIN_FRESH_MS) continue
      const member = parseJson(MemberContent, e.content)
      if (!member.ok || member.value.membership !== 'join') continue
      const joiner = e.state_key
      if (!members.joined(e.room_id).has(joiner)) continue
      const server = parseUserId(joiner)?.server
      if (!server) continue
      const frame = (user_id: string, status: PresenceStatus) => ({
        type: 'ephemeral',
        kind: 'presence',
        user_id,
        status,
      })
      if (server === serverName) {
        const status = ephemeral.presenceOf(joiner)
        if (status !== 'offline') this.#broadcast(this.#serversOf(e.room_id), frame(joiner, status))
        continue
      }
      let sent = 0
      for (const member of members.joined(e.room_id)) {
        if (sent === PRESENCE_ON_JOIN) break
        if (parseUserId(member)?.server !== serverName) continue
        const status = ephemeral.presenceOf(member)
        if (status === 'offline') continue
        this.#o.links.send(server, frame(member, status))
        sent++
      }
    }
  }

  /**
   * A new link: the peer marked our users offline when the last one went down, and presence travels
   * on change only, so tell it the status of our online users who share a room with it (bounded).
   */
  #presenceToPeer(peer: string): void {
    const { ephemeral, hub, repos } = this.#o
    // Only users joined to a room where the peer has a joined member: the peer refuses (and counts as
    // a fault) presence of anyone else.
    const sharesWithPeer = (user: string) =>
      repos.memberships
        .forUser(user)
        .some((m) => m.membership === 'join' && this.#serversOf(m.room_id).has(peer))
    let sent = 0
    for (const user of hub.onlineUsers()) {
      if (sent === PRESENCE_ON_LINK_UP) break
      const status = ephemeral.presenceOf(user)
      if (status === 'offline' || !sharesWithPeer(user)) continue
      this.#o.links.send(peer, { type: 'ephemeral', kind: 'presence', user_id: user, status })
      sent++
    }
  }

  #onEphemeral(peer: string, f: EphemeralFrame): void {
    // A server speaks for its own users only (FED-2).
    if (parseUserId(f.user_id)?.server !== peer)
      return this.#fault(peer, 'spoofed_user', `${f.kind} for ${f.user_id}`)
    const { ephemeral } = this.#o
    try {
      if (f.kind === 'typing') ephemeral.setTyping(f.user_id, f.room, f.typing, true)
      else if (f.kind === 'receipt') ephemeral.receipt(f.user_id, f.room, f.event_id, true)
      else ephemeral.remotePresence(f.user_id, f.status)
    } catch (err) {
      if (!(err instanceof ParleyError)) throw err
      // A receipt can overtake the event it points at; anything else is a peer speaking out of turn.
      if (err.errcode === 'P_NOT_FOUND' || err.errcode === 'P_LIMIT_EXCEEDED') return
      this.#fault(peer, 'ephemeral_refused', `${f.kind}: ${err.message}`)
    }
  }

  /** Dials every peer we owe events or submissions (DESIGN.md section 6: "pending data at startup"). */
  start(): void {
    const owed = [...this.owner.peersBehind(), ...this.outbox.owners(), ...this.toDevice.peersOwed()]
    for (const peer of new Set(owed)) {
      this.#o.links.ensureLink(peer).catch(() => {}) // the link manager redials with backoff
    }
  }

  #onFrame(peer: string, frame: AppFrame): void {
    const wait = this.#frameRate.take(peer)
    if (wait > 0) {
      // Over its rate: stop reading the peer for a while; one that keeps at it loses the link.
      this.#o.links.linkTo(peer)?.pauseFor(wait)
      this.#fault(peer, 'rate_limited', `${wait} ms`)
    }
    // Own properties only: a type such as "constructor" must not find Object.prototype's.
    if (!Object.hasOwn(REPLICATION_FRAMES, frame.type))
      return this.#fault(peer, 'unknown_frame', frame.type.slice(0, 64))
    const schema = REPLICATION_FRAMES[frame.type as keyof typeof REPLICATION_FRAMES]
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
        return this.#onEphemeral(peer, f)
      case 'to_device':
        return this.toDevice.onMessage(peer, f)
      case 'to_device_ack':
        return this.toDevice.onAck(peer, f)
      case 'media_get':
        return this.media.onGet(peer, f)
      case 'media_part':
        return this.media.onPart(peer, f)
      case 'media_error':
        return this.media.onError(peer, f)
      case 'keys_query':
        return this.keys.onQuery(peer, f)
      case 'keys_answer':
        return this.keys.onAnswer(peer, f)
      case 'keys_changed':
        return this.keys.onKeysChanged(peer, f)
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
