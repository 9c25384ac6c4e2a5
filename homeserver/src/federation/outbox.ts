/**
 * The origin's half of replication (docs/federation.md, "Replication"): our users' writes to rooms
 * another server owns. Each is signed here (origin signature), stored durably in the outbox and
 * answered `pending`; SUBMITs go out in order over the owner's link (all of them again on every new
 * link: the owner is idempotent by event id) and the owner's SUBMIT_ACK settles the row and tells the
 * device `sent` (or the error).
 */
import {
  buildHeader,
  canonicalJson,
  eventIdOfCanonical,
  ERROR_STATUS,
  eventSigningBytes,
  ParleyError,
  parseRoomId,
  toBase64Url,
  type ErrorCode,
  type JsonObject,
} from '@parley/protocol'
import { SubmitFrame, type SubmitAckFrame } from '@parley/protocol/federation'
import type { Signer } from '@parley/protocol/signing'
import type { Clock } from '../clock.ts'
import type { OutboxRow, Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'
import type { Hub } from '../services/hub.ts'
import type { RemoteResult, RemoteRooms, RemoteSendCallbacks } from '../services/remote-rooms.ts'
import { notMember } from '../services/room-rules.ts'
import type { Draft, Sequencer } from '../services/sequencer.ts'
import type { LinkManager } from './link-manager.ts'

/** How long an answered submission stays, so a device retrying its txn still gets the answer. */
const ANSWERED_KEPT_MS = 7 * 24 * 3600_000
/** Refusals that mean "not now" rather than "no". */
const RETRY_LATER: ReadonlySet<string> = new Set([
  'P_STORAGE',
  'P_UNAVAILABLE',
  'P_UNKNOWN',
  'P_LIMIT_EXCEEDED',
])
/** How long a REST change waits for our replica to apply it after the owner's answer. */
const APPLY_WAIT_MS = 5000
/** How long after a "not now" a submission goes again. */
const RETRY_MS = 5000
/** SUBMITs in flight per owner. */
const WINDOW = 500
/** How long a REST change to a remote room waits for the owner before answering 503. */
const SUBMIT_WAIT_MS = 20_000

interface Flight {
  /** Highest outbox row id sent on the current link. */
  afterId: number
  count: number
}

interface Waiter {
  resolve(result: RemoteResult): void
  reject(err: unknown): void
}

export interface OutboxOptions {
  readonly serverName: string
  readonly signer: Signer
  readonly repos: Repos
  readonly sequencer: Sequencer
  readonly links: LinkManager
  readonly hub: Hub
  readonly clock: Clock
  readonly log: Logger
  readonly fault: (peer: string, code: string, detail: string) => void
}

export class Outbox implements RemoteRooms {
  readonly #o: OutboxOptions
  readonly #flights = new Map<string, Flight>()
  readonly #waiters = new Map<string, Waiter>()
  /** REST changes acknowledged by the owner, waiting to be applied by our replica. */
  readonly #applied = new Map<string, () => void>()
  /**
   * Highest outbox id known durable: a row is committed a moment before its fsync ends, and nothing
   * may leave before it is durable (a crash would forget a submission the owner already sequenced).
   */
  #durableId: number

  constructor(options: OutboxOptions) {
    this.#o = options
    this.#durableId = options.repos.replication.outboxMaxId()
  }

  /**
   * Read-your-writes for REST changes (join, leave, ...): answer once our replica has the event too,
   * so what the user does next (type, send, open the room) already sees it. The owner's EVENTS frame
   * precedes its SUBMIT_ACK on the link, so this is a short wait; a bounded one all the same.
   */
  #whenApplied(result: RemoteResult, waiter: Waiter): void {
    if (this.#o.repos.events.get(result.event_id)) return waiter.resolve(result)
    const timer = setTimeout(() => {
      this.#applied.delete(result.event_id)
      waiter.resolve(result)
    }, APPLY_WAIT_MS)
    timer.unref()
    this.#applied.set(result.event_id, () => {
      clearTimeout(timer)
      waiter.resolve(result)
    })
  }

  /** Replicated events became visible here (sequencer delivery). */
  applied(eventIds: Iterable<string>): void {
    if (this.#applied.size === 0) return
    for (const id of eventIds) {
      const done = this.#applied.get(id)
      if (!done) continue
      this.#applied.delete(id)
      done()
    }
  }

  /** Housekeeping: forgets submissions answered more than a week ago. */
  purgeAnswered(): number {
    return this.#o.repos.replication.outboxPurge(this.#o.clock.now() - ANSWERED_KEPT_MS)
  }

  /** Owners we owe submissions (dialled at start-up). */
  owners(): string[] {
    return this.#o.repos.replication.outboxOwners()
  }

  send(draft: Draft & { readonly txn: NonNullable<Draft['txn']> }, callbacks: RemoteSendCallbacks): void {
    const known = this.#o.repos.replication.outboxByTxn(draft.txn.deviceId, draft.txn.txnId)
    if (known) {
      answerKnown(known, callbacks)
      // A device asking again is a good moment to try the owner again.
      if (known.state === 'pending') this.pump(known.owner)
      return
    }
    const me = this.#o.repos.memberships.get(draft.room, draft.sender)
    if (me?.membership !== 'join') return callbacks.reject(notMember())
    this.#queue(draft, draft.txn.deviceId, draft.txn.txnId).then((row) => {
      if (row.state !== 'pending') return answerKnown(row, callbacks)
      callbacks.pending(row.event_id)
      // Only now: its `sent` must come after its `pending`.
      this.pump(row.owner)
    }, callbacks.reject)
  }

  submit(draft: Draft): Promise<RemoteResult> {
    // Only rooms we hold a copy of (we were invited or are in them): no probing of arbitrary room ids.
    if (!this.#o.repos.rooms.get(draft.room)) return Promise.reject(notMember())
    return this.#queue(draft, '', null).then(
      (row) =>
        new Promise<RemoteResult>((resolve, reject) => {
          if (row.state !== 'pending') {
            if (row.state === 'acked') return resolve({ event_id: row.event_id, seq: row.seq! })
            return reject(remoteError(row.errcode ?? 'P_FORBIDDEN', row.error ?? 'refused'))
          }
          const timer = setTimeout(() => {
            this.#waiters.delete(row.event_id)
            reject(
              new ParleyError(
                'P_UNAVAILABLE',
                "the room's server has not answered yet; the change stays queued and applies when it does",
              ),
            )
          }, SUBMIT_WAIT_MS)
          timer.unref()
          this.#waiters.set(row.event_id, {
            resolve: (result) => {
              clearTimeout(timer)
              resolve(result)
            },
            reject: (err) => {
              clearTimeout(timer)
              reject(err)
            },
          })
          this.pump(row.owner)
        }),
    )
  }

  /** Signs the event and stores it in the outbox (group-committed); then sends what is pending. */
  #queue(draft: Draft, deviceId: string, txnId: string | null): Promise<OutboxRow> {
    const { serverName, signer, repos, clock } = this.#o
    const owner = parseRoomId(draft.room)!.server
    const contentJson = draft.contentJson ?? canonicalJson(draft.content)
    const header = buildHeader({
      room: draft.room,
      type: draft.type,
      stateKey: draft.stateKey,
      sender: draft.sender,
      origin: serverName,
      originTs: clock.now(),
      content: draft.content,
      contentJson,
    })
    const headerJson = canonicalJson(header)
    const eventId = eventIdOfCanonical(headerJson)
    const sig = toBase64Url(signer.sign(eventSigningBytes(header)))
    // The intent of a leave (kick / unban) is not part of the event; it travels beside it.
    const stored = draft.intent
      ? canonicalJson({ ...JSON.parse(headerJson), intent: draft.intent })
      : headerJson
    return this.#o.sequencer
      .run(() => {
        if (txnId !== null) {
          const known = repos.replication.outboxByTxn(deviceId, txnId)
          if (known) return known
        }
        repos.replication.outboxInsert({
          owner,
          room_id: draft.room,
          event_id: eventId,
          device_id: deviceId,
          txn_id: txnId ?? eventId,
          header: stored,
          content: contentJson,
          origin_kid: signer.kid,
          origin_sig: sig,
          created_ts: clock.now(),
        })
        return repos.replication.outboxByEvent(eventId)!
      })
      .then((row) => {
        // Jobs resolve in commit order, after their fsync: every id up to this one is durable.
        this.#durableId = Math.max(this.#durableId, row.id)
        return row
      })
  }

  /** Sends pending submissions to an owner, oldest first, up to the window; dials if there is no link. */
  pump(owner: string): void {
    const { links, repos } = this.#o
    if (!links.linkTo(owner)) {
      links.ensureLink(owner).catch(() => {}) // its `link up` pumps
      return
    }
    const flight = this.#flights.get(owner)
    if (!flight) return // the link is up but its start (linkUp) has not run yet
    while (flight.count < WINDOW) {
      // Durable rows only (committed is not enough): the job of a newer row pumps again once it is.
      const rows = repos.replication.outboxPending(
        owner,
        flight.afterId,
        this.#durableId,
        WINDOW - flight.count,
      )
      if (rows.length === 0) return
      for (const row of rows) {
        const frame = submitFrameOf(row)
        if (!frame) {
          // Unreadable (a damaged row): it can never be sent; say so once and settle it as refused.
          this.#o.log.error({ owner, event_id: row.event_id }, 'outbox row unreadable: dropped')
          repos.replication.outboxSettle(row.event_id, {
            errcode: 'P_UNKNOWN',
            error: 'unreadable outbox row',
          })
          continue
        }
        if (!links.send(owner, frame as unknown as JsonObject)) return
        flight.afterId = row.id
        flight.count++
      }
    }
  }

  linkUp(owner: string): void {
    // Everything unanswered goes again: the owner answers repeats with the seq it already gave.
    this.#flights.set(owner, { afterId: 0, count: 0 })
    this.pump(owner)
  }

  linkDown(owner: string): void {
    this.#flights.delete(owner)
  }

  onSubmitAck(peer: string, frame: SubmitAckFrame): void {
    const { repos, hub } = this.#o
    const row = repos.replication.outboxByEvent(frame.event_id)
    if (!row || row.owner !== peer) return this.#o.fault(peer, 'unknown_submit', frame.event_id)
    const flight = this.#flights.get(peer)
    if (flight && flight.count > 0) flight.count--
    // A passing failure on the owner's side (storage, a key it could not fetch) is not an answer:
    // the row stays pending and goes again on the next link.
    if (!('seq' in frame) && RETRY_LATER.has(frame.errcode)) {
      setTimeout(() => {
        const current = this.#flights.get(peer)
        if (!current) return // a new link sends everything pending anyway
        current.afterId = Math.min(current.afterId, row.id - 1)
        this.pump(peer)
      }, RETRY_MS).unref()
      return
    }
    const answer = 'seq' in frame ? { seq: frame.seq } : { errcode: frame.errcode, error: frame.error }
    if (repos.replication.outboxSettle(frame.event_id, answer)) {
      const sender = submitFrameOf(row)?.header.sender ?? ''
      const result = 'seq' in frame ? { event_id: frame.event_id, seq: frame.seq } : null
      const error = 'seq' in frame ? null : remoteError(frame.errcode, frame.error)
      if (row.device_id !== '') {
        const text = result
          ? JSON.stringify({ type: 'sent', txn_id: row.txn_id, ...result })
          : JSON.stringify({
              type: 'error',
              txn_id: row.txn_id,
              errcode: error!.errcode,
              error: error!.message,
            })
        for (const conn of hub.connectionsOf(sender)) if (conn.deviceId === row.device_id) conn.send(text)
      }
      const waiter = this.#waiters.get(frame.event_id)
      this.#waiters.delete(frame.event_id)
      if (waiter) {
        if (result) this.#whenApplied(result, waiter)
        else waiter.reject(error)
      }
    }
    this.pump(peer)
  }
}

/** The SUBMIT frame of a stored row, read back through its schema (a stored row is input too). */
function submitFrameOf(row: OutboxRow): SubmitFrame | null {
  let stored: unknown
  let content: unknown
  try {
    stored = JSON.parse(row.header)
    content = JSON.parse(row.content)
  } catch {
    return null
  }
  const { intent, ...header } = (stored ?? {}) as Record<string, unknown>
  const frame: Record<string, unknown> = {
    type: 'submit',
    header,
    content,
    origin_sig: { kid: row.origin_kid, sig: row.origin_sig },
  }
  if (intent !== undefined) frame.intent = intent
  const parsed = SubmitFrame.safeParse(frame)
  return parsed.success ? parsed.data : null
}

function answerKnown(row: OutboxRow, callbacks: RemoteSendCallbacks): void {
  if (row.state === 'pending') return callbacks.pending(row.event_id)
  if (row.state === 'acked') return callbacks.sent({ event_id: row.event_id, seq: row.seq! })
  callbacks.reject(remoteError(row.errcode ?? 'P_FORBIDDEN', row.error ?? 'refused'))
}

/** An owner's refusal as our error (an error code we do not know becomes P_FORBIDDEN). */
function remoteError(errcode: string, error: string): ParleyError {
  const code = Object.hasOwn(ERROR_STATUS, errcode) ? (errcode as ErrorCode) : 'P_FORBIDDEN'
  return new ParleyError(code, error)
}
