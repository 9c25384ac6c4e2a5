/**
 * The owner's half of replication (docs/federation.md, "Replication"): which peers replicate each room
 * we own, paging the log out to them from their cursors (snapshot for a server new to the room),
 * cumulative ACKs into durable cursors, FETCH for gaps, and SUBMITs from other servers' users.
 */
import {
  canonicalJson,
  eventIdOfCanonical,
  eventSigningBytes,
  fromBase64Url,
  hashCanonicalText,
  ParleyError,
  parseRoomId,
  parseUserId,
  type JsonObject,
} from '@parley/protocol'
import { CONTENT_SCHEMAS } from '@parley/protocol/schema'
import {
  MAX_EVENTS_PER_FRAME,
  MAX_SNAPSHOT_MEMBERS,
  type AckFrame,
  type FetchFrame,
  type CursorsFrame,
  type SubmitFrame,
} from '@parley/protocol/federation'
import type { Signer } from '@parley/protocol/signing'
import type { EventRow, MembershipRow, Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'
import type { CommittedEvent, Sequencer } from '../services/sequencer.ts'
import type { LinkManager } from './link-manager.ts'
import type { PeerKeys } from './peer-keys.ts'
import { ownerSignatureOf, replicatedEventOf } from './wire.ts'

/** Events sent and not yet acknowledged, per (peer, room): the replica's commit rate sets the pace. */
const WINDOW = 2000
/** Bytes of JSON one frame aims to stay under (the sealed frame limit is 1 MiB). */
const FRAME_BUDGET = 900_000
/** Per-event overhead of header, envelope and signatures in a frame, roughly. */
const EVENT_OVERHEAD = 700

/** SUBMITs of one peer waiting for verification, beyond which its link stops being read for a while. */
const MAX_QUEUED_SUBMITS = 512

/** Event types another server's users may submit (rooms are created by their owner). */
const SUBMITTABLE: ReadonlySet<string> = new Set([
  'm.message',
  'm.edit',
  'm.redaction',
  'm.reaction',
  'm.member',
  'm.room.name',
  'm.room.topic',
  'm.power_levels',
  'm.encrypted',
  'm.room.encryption',
])
const STATE_KEYED: ReadonlySet<string> = new Set(['m.member', 'm.power_levels'])
/** Key lookup failures that say nothing about the signature: try again later. */
export const TRANSIENT_KEY_FAULTS: ReadonlySet<string> = new Set([
  'rate_limited',
  'fetch_failed',
  'unreachable',
])

interface RoomState {
  /** Highest seq sent on the current link. */
  sent: number
  /** Highest seq the peer acknowledged. */
  acked: number
  /** The peer gets the room up to here only (its last member left). */
  until: number | null
  /** A snapshot is being built: nothing else goes out for the room until it has. */
  snapshotting: boolean
}

interface PeerSession {
  /** The replica's resume list has arrived in full. */
  ready: boolean
  readonly listed: Map<string, number>
  readonly rooms: Map<string, RoomState>
  /** SUBMITs are verified one after another, so they are sequenced in the order they came. */
  submits: Promise<void>
  /** SUBMITs waiting in that chain (bounded: see MAX_QUEUED_SUBMITS). */
  queuedSubmits: number
}

export interface OwnerSideOptions {
  readonly serverName: string
  readonly signer: Signer
  readonly repos: Repos
  readonly sequencer: Sequencer
  readonly links: LinkManager
  readonly peerKeys: Pick<PeerKeys, 'keyFor'>
  readonly verify: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean
  readonly maxContentBytes: number
  readonly log: Logger
  /** A peer misbehaved (counted; repeat offenders lose their link). */
  readonly fault: (peer: string, code: string, detail: string) => void
}

export class OwnerSide {
  readonly #o: OwnerSideOptions
  /** room -> peers that replicate it (mirrors `peer_cursors`). */
  readonly #peersOf = new Map<string, Set<string>>()
  /** peer -> rooms it replicates. */
  readonly #roomsOf = new Map<string, Set<string>>()
  readonly #sessions = new Map<string, PeerSession>()

  constructor(options: OwnerSideOptions) {
    this.#o = options
    for (const row of options.repos.replication.cursors()) this.#track(row.peer, row.room_id)
  }

  /** Peers that have not acknowledged everything of some room (dialled at start-up). */
  peersBehind(): string[] {
    const behind = new Set<string>()
    for (const row of this.#o.repos.replication.cursors()) {
      const last = this.#o.repos.rooms.get(row.room_id)?.last_seq ?? 0
      if (row.acked_seq < Math.min(row.until_seq ?? last, last)) behind.add(row.peer)
    }
    return [...behind]
  }

  /** Rooms a peer replicates (tests and the admin view). */
  roomsOf(peer: string): ReadonlySet<string> {
    return this.#roomsOf.get(peer) ?? new Set()
  }

  /** Peers that replicate a room. */
  peersOf(room: string): ReadonlySet<string> {
    return this.#peersOf.get(room) ?? new Set()
  }

  #track(peer: string, room: string): void {
    let peers = this.#peersOf.get(room)
    if (!peers) this.#peersOf.set(room, (peers = new Set()))
    peers.add(peer)
    let rooms = this.#roomsOf.get(peer)
    if (!rooms) this.#roomsOf.set(peer, (rooms = new Set()))
    rooms.add(room)
  }

  #untrack(peer: string, room: string): void {
    this.#peersOf.get(room)?.delete(peer)
    if (this.#peersOf.get(room)?.size === 0) this.#peersOf.delete(room)
    this.#roomsOf.get(peer)?.delete(room)
    if (this.#roomsOf.get(peer)?.size === 0) this.#roomsOf.delete(peer)
    this.#sessions.get(peer)?.rooms.delete(room)
  }

  linkUp(peer: string): void {
    this.#sessions.set(peer, {
      ready: false,
      listed: new Map(),
      rooms: new Map(),
      submits: Promise.resolve(),
      queuedSubmits: 0,
    })
  }

  linkDown(peer: string): void {
    this.#sessions.delete(peer)
  }

  /** The replica's resume list: start (or snapshot) every room it replicates once the list is complete. */
  onCursors(peer: string, frame: CursorsFrame): void {
    const session = this.#sessions.get(peer)
    if (!session || session.ready) return this.#o.fault(peer, 'unexpected_cursors', 'cursors after start')
    const mine = this.#roomsOf.get(peer)
    for (const [room, seq] of frame.rooms) if (mine?.has(room)) session.listed.set(room, seq)
    if (!frame.done) return
    session.ready = true
    for (const room of mine ?? []) this.#start(peer, session, room, session.listed.get(room))
    session.listed.clear()
  }

  #start(peer: string, session: PeerSession, room: string, have: number | undefined): void {
    const cursor = this.#o.repos.replication.cursor(peer, room)
    if (!cursor) return
    // The peer's users were invited and removed again while it was away (it never held the room), or
    // it already holds everything up to its users' departure: nothing to send, forget the cursor.
    if (cursor.until_seq !== null && (have === undefined || have >= cursor.until_seq)) {
      this.#o.repos.replication.dropIfDone(peer, room, have ?? cursor.until_seq)
      if (!this.#o.repos.replication.cursor(peer, room)) this.#untrack(peer, room)
      return
    }
    if (have === undefined) return this.#snapshot(peer, session, room, cursor.until_seq)
    // The replica's word is what it holds (it may have been restored from an older backup).
    if (have !== cursor.acked_seq) this.#o.repos.replication.setAcked(peer, room, have)
    session.rooms.set(room, { sent: have, acked: have, until: cursor.until_seq, snapshotting: false })
    this.#pump(peer, room)
  }

  /**
   * The room's state and its latest events, read inside a sequencer job so state and events are of the
   * same moment and durable by the time they leave.
   */
  #snapshot(peer: string, session: PeerSession, room: string, until: number | null): void {
    const state: RoomState = { sent: 0, acked: 0, until, snapshotting: true }
    session.rooms.set(room, state)
    const { repos, signer } = this.#o
    this.#o.sequencer
      .run(() => {
        const row = repos.rooms.get(room)
        if (!row || row.last_seq === 0) return null
        const last = until === null ? row.last_seq : Math.min(until, row.last_seq)
        const from = Math.max(row.base_seq + 1, last - MAX_EVENTS_PER_FRAME + 1)
        const tail = takeTail(repos.events.range(room, from, last, MAX_EVENTS_PER_FRAME))
        const members = snapshotMembers(repos.memberships.forRoom(room))
        return {
          type: 'snapshot',
          room,
          state: {
            kind: row.kind,
            creator: row.creator,
            encrypted: row.encrypted === 1,
            name: row.name,
            topic: row.topic,
            members,
          },
          events: tail.map(replicatedEventOf),
          owner_sig: ownerSignatureOf(tail.at(-1)!, signer),
          last,
        }
      })
      .then(
        (snapshot) => {
          if (this.#sessions.get(peer) !== session || session.rooms.get(room) !== state) return
          state.snapshotting = false
          if (!snapshot) return
          const { last, ...frame } = snapshot
          if (!this.#o.links.send(peer, frame as unknown as JsonObject)) return
          // The window counts from what the snapshot brings; the replica's ACK or FETCH corrects it.
          state.sent = state.acked = last
          this.#pump(peer, room)
        },
        (err: unknown) => this.#o.log.error({ peer, room, err: String(err) }, 'snapshot failed'),
      )
      .catch((err: unknown) => this.#o.log.error({ peer, room, err: String(err) }, 'snapshot failed'))
  }

  /** After each durable batch (stream order): follow membership changes, then send what is new. */
  committed(events: readonly CommittedEvent[]): void {
    const { serverName } = this.#o
    let touched: Set<string> | null = null
    for (const event of events) {
      if (parseRoomId(event.room_id)?.server !== serverName) continue
      ;(touched ??= new Set()).add(event.room_id)
      if (event.type !== 'm.member') continue
      const peer = parseUserId(event.state_key!)?.server
      if (peer && peer !== serverName) this.#refreshInterest(peer, event.room_id)
    }
    if (!touched) return
    for (const room of touched) for (const peer of this.#peersOf.get(room) ?? []) this.#pump(peer, room)
  }

  #refreshInterest(peer: string, room: string): void {
    const cursor = this.#o.repos.replication.cursor(peer, room)
    if (!cursor) return this.#untrack(peer, room)
    const known = this.#roomsOf.get(peer)?.has(room) ?? false
    this.#track(peer, room)
    const session = this.#sessions.get(peer)
    if (!session?.ready) {
      if (!known) this.#o.links.ensureLink(peer).catch(() => {})
      return
    }
    const state = session.rooms.get(room)
    if (state) state.until = cursor.until_seq
    else this.#snapshot(peer, session, room, cursor.until_seq)
  }

  /** Sends what the peer lacks of a room, up to the window. */
  #pump(peer: string, room: string): void {
    const session = this.#sessions.get(peer)
    const state = session?.ready ? session.rooms.get(room) : undefined
    if (!state || state.snapshotting) return
    const { repos, sequencer, signer, links } = this.#o
    const streamHead = sequencer.streamHead
    for (;;) {
      const limit = Math.min(state.until ?? Infinity, state.acked + WINDOW)
      if (state.sent >= limit) return
      const to = Math.min(limit, state.sent + MAX_EVENTS_PER_FRAME)
      // Durable events only: what a crash could still undo must never reach a replica.
      const rows = fitFrame(repos.events.range(room, state.sent + 1, to, MAX_EVENTS_PER_FRAME)).filter(
        (r) => r.stream_pos <= streamHead,
      )
      if (rows.length === 0 || rows[0]!.seq !== state.sent + 1) return
      const consecutive = takeConsecutive(rows)
      const frame = {
        type: 'events',
        room,
        events: consecutive.map(replicatedEventOf),
        owner_sig: ownerSignatureOf(consecutive.at(-1)!, signer),
      }
      if (!links.send(peer, frame as unknown as JsonObject)) return
      state.sent = consecutive.at(-1)!.seq
    }
  }

  onAck(peer: string, frame: AckFrame): void {
    const state = this.#sessions.get(peer)?.rooms.get(frame.room)
    if (!state) return // a room dropped meanwhile, or an ACK of a previous link
    if (frame.upto_seq > state.sent)
      return this.#o.fault(peer, 'ack_ahead', `${frame.room} ${frame.upto_seq}`)
    if (frame.upto_seq <= state.acked) return
    state.acked = frame.upto_seq
    this.#o.repos.replication.ack(peer, frame.room, frame.upto_seq)
    if (state.until !== null && state.acked >= state.until) {
      // Conditional on the stored row: a re-invite may have re-opened it since `until` was read.
      this.#o.repos.replication.dropIfDone(peer, frame.room, state.acked)
      if (!this.#o.repos.replication.cursor(peer, frame.room)) {
        this.#untrack(peer, frame.room)
        return
      }
      state.until = this.#o.repos.replication.cursor(peer, frame.room)!.until_seq
    }
    this.#pump(peer, frame.room)
  }

  onFetch(peer: string, frame: FetchFrame): void {
    const state = this.#sessions.get(peer)?.rooms.get(frame.room)
    if (!state) return this.#o.fault(peer, 'fetch_not_replica', frame.room)
    if (state.snapshotting) return
    // The replica says what it holds: everything before `from`.
    state.sent = Math.min(state.sent, frame.from - 1)
    state.acked = frame.from - 1
    this.#pump(peer, frame.room)
  }

  /** A peer's user wrote to one of our rooms: verify, sequence, answer after commit. */
  onSubmit(peer: string, frame: SubmitFrame): void {
    const session = this.#sessions.get(peer)
    if (!session) return
    // Verification may wait on a key fetch: a peer that piles SUBMITs up meanwhile is paused.
    if (++session.queuedSubmits > MAX_QUEUED_SUBMITS) this.#o.links.linkTo(peer)?.pauseFor(1000)
    session.submits = session.submits.then(() =>
      this.#submit(peer, frame)
        .catch((err: unknown) => this.#o.log.error({ peer, err: String(err) }, 'submit handling failed'))
        .finally(() => session.queuedSubmits--),
    )
  }

  async #submit(peer: string, frame: SubmitFrame): Promise<void> {
    const { header, content, origin_sig: sig } = frame
    const headerJson = canonicalJson(header)
    const eventId = eventIdOfCanonical(headerJson)
    const answer = (body: JsonObject): void => {
      this.#o.links.send(peer, { type: 'submit_ack', event_id: eventId, ...body })
    }
    const refuse = (err: ParleyError): void => answer({ errcode: err.errcode, error: err.message })
    const faulty = (code: string, why: string) => {
      this.#o.fault(peer, code, why)
      refuse(new ParleyError('P_FORBIDDEN', why))
    }
    // A server speaks for its own users only (FED-2).
    if (header.origin !== peer) return faulty('spoofed_origin', `origin ${header.origin} over ${peer}'s link`)
    if (parseUserId(header.sender)?.server !== peer)
      return faulty('spoofed_sender', `sender ${header.sender} over ${peer}'s link`)
    if (parseRoomId(header.room)?.server !== this.#o.serverName)
      return refuse(new ParleyError('P_NOT_FOUND', 'this server does not own that room'))
    let contentJson: string
    try {
      contentJson = canonicalJson(content)
    } catch {
      return faulty('bad_content', 'content has no canonical form')
    }
    if (hashCanonicalText(contentJson) !== header.content_hash)
      return faulty('bad_content_hash', 'content does not match its hash')
    if (!SUBMITTABLE.has(header.type))
      return refuse(new ParleyError('P_BAD_REQUEST', `cannot submit ${header.type}`))
    if (STATE_KEYED.has(header.type) !== (header.state_key !== undefined))
      return refuse(new ParleyError('P_BAD_REQUEST', 'state_key does not fit the event type'))
    const schema = CONTENT_SCHEMAS[header.type as keyof typeof CONTENT_SCHEMAS]
    if (!schema.safeParse(content).success) return refuse(new ParleyError('P_BAD_REQUEST', 'invalid content'))
    if (Buffer.byteLength(contentJson) > this.#o.maxContentBytes)
      return refuse(new ParleyError('P_TOO_LARGE', 'content too large'))
    const key = await this.#o.peerKeys.keyFor(peer, sig.kid, header.origin_ts)
    // A key we cannot look up right now (rate-limited fetch, peer unreachable) is not a forgery:
    // the origin keeps the event pending and sends it again.
    if (!key.ok && TRANSIENT_KEY_FAULTS.has(key.error.code))
      return refuse(new ParleyError('P_UNAVAILABLE', `key ${sig.kid} of ${peer} is unavailable right now`))
    const signature = fromBase64Url(sig.sig)
    if (!key.ok || !signature || !this.#o.verify(key.value, eventSigningBytes(header), signature))
      return faulty('bad_origin_sig', `origin signature of ${eventId} does not verify`)
    this.#o.sequencer
      .submit({
        room: header.room,
        type: header.type,
        stateKey: header.state_key,
        sender: header.sender,
        content: content as JsonObject,
        contentJson,
        intent: frame.intent,
        remote: { header, originSig: sig },
      })
      .then(
        (event) => answer({ seq: event.seq }),
        (err: unknown) =>
          refuse(err instanceof ParleyError ? err : new ParleyError('P_UNKNOWN', 'internal error')),
      )
  }
}

/**
 * A snapshot's members: joined and invited first (they matter to the replica), then the rest, at most
 * MAX_SNAPSHOT_MEMBERS rows and about half a frame of JSON. A bigger room's snapshot leaves out
 * former members first (paged snapshots are not built yet).
 */
function snapshotMembers(
  rows: readonly MembershipRow[],
): Array<{ user_id: string; membership: string; level: number }> {
  const current = rows.filter((m) => m.membership === 'join' || m.membership === 'invite')
  const former = rows.filter((m) => m.membership !== 'join' && m.membership !== 'invite')
  const out: Array<{ user_id: string; membership: string; level: number }> = []
  let bytes = 0
  for (const m of [...current, ...former]) {
    bytes += m.user_id.length + 48
    if (out.length >= MAX_SNAPSHOT_MEMBERS || bytes > FRAME_BUDGET / 2) break
    out.push({ user_id: m.user_id, membership: m.membership, level: m.level })
  }
  return out
}

/** The longest prefix of rows that fits one frame (at least one row). */
function fitFrame(rows: EventRow[]): EventRow[] {
  let bytes = 0
  for (let i = 0; i < rows.length; i++) {
    bytes += (rows[i]!.content?.length ?? 4) * 3 + EVENT_OVERHEAD
    if (bytes > FRAME_BUDGET && i > 0) return rows.slice(0, i)
  }
  return rows
}

/** The longest suffix of rows that fits one frame (a snapshot keeps the newest events). */
function takeTail(rows: EventRow[]): EventRow[] {
  let bytes = 0
  for (let i = rows.length - 1; i >= 0; i--) {
    bytes += (rows[i]!.content?.length ?? 4) * 3 + EVENT_OVERHEAD
    if (bytes > FRAME_BUDGET / 2 && i < rows.length - 1) return rows.slice(i + 1)
  }
  return rows
}

/** Rows up to the first hole in seq (there is none on an owner; a guard all the same). */
function takeConsecutive(rows: EventRow[]): EventRow[] {
  let n = 1
  while (n < rows.length && rows[n]!.seq === rows[n - 1]!.seq + 1) n++
  return rows.slice(0, n)
}
