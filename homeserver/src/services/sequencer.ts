/**
 * The room sequencer with group commit (DESIGN.md sections 3, 4 and 7).
 *
 * Drafts queue up during one event-loop turn and are written in one transaction: each is authorised
 * against the state left by the drafts before it, given the room's next `seq` and the server's next
 * stream position, chained to the previous envelope, and stored. The owner signs only the newest
 * envelope of each room in the batch; the hash chain covers the rest. Promises resolve (and acks go
 * out) only after the commit, so an ack is a promise that survives a crash.
 */
import {
  buildHeader,
  canonicalJson,
  envelopeSigningBytes,
  eventIdOfCanonical,
  hashCanonicalText,
  GENESIS_PREV,
  ParleyError,
  parseRoomId,
  toBase64Url,
  type Envelope,
  type EventHeader,
  type JsonObject,
} from '@parley/protocol'
import type { Signer } from '@parley/protocol/signing'
import type { Clock } from '../clock.ts'
import type { Database } from '../db/database.ts'
import type { ClientEventRow, Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'
import { clientRowOf, eventRowOf } from './event-log.ts'

/** Most drafts written in one transaction. */
const MAX_BATCH = 2000

/** The two meanings of setting someone else's membership to `leave`. */
export type LeaveIntent = 'kick' | 'unban'

/** An event to be sequenced. */
export interface Draft {
  readonly room: string
  readonly type: string
  readonly stateKey?: string | undefined
  readonly sender: string
  readonly content: JsonObject
  /** Canonical JSON of `content`, if the caller already computed it. */
  readonly contentJson?: string
  /**
   * What a `leave` of someone else means: a kick (from join or invite) or an unban (from ban). Checked
   * inside the transaction, so a kick racing a ban cannot turn into an unban. Not stored.
   */
  readonly intent?: LeaveIntent | undefined
  /** Makes the send idempotent per device. */
  readonly txn?: { readonly deviceId: string; readonly txnId: string }
  /**
   * An event another server originated and signed (a federation SUBMIT): sequenced with exactly this
   * header, so its id and the origin's signature stay valid. Idempotent by event id.
   */
  readonly remote?: { readonly header: EventHeader; readonly originSig: { kid: string; sig: string } }
}

/** What a {@link Job} may do inside the sequencer's transaction besides plain writes. */
export interface JobContext {
  /** The next server stream position, for an event the job stores. */
  nextStream(): number
  /** An event the job stored: it is delivered with the batch (after durability), in stream order. */
  committed(event: CommittedEvent): void
}

/**
 * A write that rides the sequencer's group commit: it runs inside the batch transaction (in its own
 * savepoint: a throw undoes it alone) and resolves only once the batch is durable. Replication uses
 * it to apply a verified batch from a room's owner and to store outbox rows.
 */
export type Job<T> = (ctx: JobContext) => T

/** A committed event, in the shape clients receive. */
export type CommittedEvent = ClientEventRow & { readonly content: string }

type Outcome =
  CommittedEvent | ParleyError | { dupOf: number } | { txnEventId: string } | { jobResult: unknown }

/** A committed batch on its way to delivery. */
interface Committed {
  readonly stream: number
  readonly committed: readonly CommittedEvent[]
  readonly batch: readonly Pending[]
  readonly outcomes: readonly Outcome[]
}

/** How commits become durable (see db/wal-sync.ts). */
export interface Durability {
  /** Makes every commit so far durable; absent when COMMIT itself is as durable as configured. */
  readonly sync?: () => Promise<void>
  /** A commit happened (checkpoint scheduling). */
  committed(): void
  /** An fsync failed: durability is unknown, so the process must stop (no ack was sent). */
  fatal(err: unknown): void
}

/** Called around the delivery of each committed batch. */
export interface DeliveryHooks {
  start(): void
  end(): void
}

/** Room rules, consulted inside the write transaction. */
export interface RoomRules {
  /** Throws a ParleyError if the draft is not allowed by the current state. */
  check(draft: Draft): void
  /** Applies the state change of a stored event (membership, name, redaction, ...). */
  apply(event: CommittedEvent, draft: Draft): void
}

interface Pending {
  readonly draft: Draft | null
  readonly job?: Job<unknown>
  readonly originTs: number
  resolve(value: never): void
  reject(err: unknown): void
}

interface Head {
  seq: number
  hash: string
  envelope: Envelope | null
}

/** A job threw something other than a ParleyError; `cause` is what it threw. */
export class JobError extends ParleyError {
  constructor(cause: unknown) {
    super('P_UNKNOWN', `job failed: ${String(cause)}`)
    this.cause = cause
  }
}

/** Why a batch failed as a whole: nothing of it was stored. */
function storageError(err: unknown): ParleyError {
  const code = (err as { code?: string }).code ?? ''
  const full = code === 'SQLITE_FULL' || String(err).includes('full')
  return new ParleyError(
    'P_STORAGE',
    full ? 'storage is full: nothing was stored' : 'storage error: nothing was stored',
  )
}

export class Sequencer {
  #queue: Pending[] = []
  #scheduled = false
  #streamHead: number
  /** Stream position of the last committed event; ahead of #streamHead while its fsync runs. */
  #committedHead: number
  #lastDelivery: Promise<void> = Promise.resolve()
  #syncing = false
  /** An fsync failed: nothing more is accepted (the process is expected to stop). */
  #failed = false
  readonly #listeners: Array<(events: readonly CommittedEvent[]) => void> = []
  readonly #deliveryHooks: DeliveryHooks[] = []

  constructor(
    private readonly db: Database,
    private readonly repos: Repos,
    private readonly rules: RoomRules,
    private readonly signer: Signer,
    private readonly serverName: string,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly durability: Durability,
  ) {
    this.#streamHead = repos.events.maxStreamPos()
    this.#committedHead = this.#streamHead
  }

  /** The newest durable (and delivered) stream position: readers never see past it. */
  get streamHead(): number {
    return this.#streamHead
  }

  /** Resolves once everything queued so far is committed, durable and delivered (shutdown). */
  async drain(): Promise<void> {
    for (;;) {
      this.flush()
      if (this.#failed) return
      if (this.#syncing) await this.#lastDelivery
      else if (this.#queue.length === 0) return
    }
  }

  /** Called after every commit with the batch's events in stream order. */
  onCommit(listener: (events: readonly CommittedEvent[]) => void): void {
    this.#listeners.push(listener)
  }

  /** Brackets the delivery of each committed batch (the gateway corks sockets in between). */
  onDelivery(hooks: DeliveryHooks): void {
    this.#deliveryHooks.push(hooks)
  }

  /** Queues a draft; resolves once it is durably committed (or with the earlier event for a repeated txn). */
  submit(draft: Draft): Promise<CommittedEvent> {
    return new Promise((resolve, reject) => this.submitWith(draft, resolve, reject))
  }

  /**
   * Like {@link submit} with callbacks that run synchronously right after the commit, inside the
   * delivery bracket: the hot path uses it so an ack leaves in the same socket write as the batch.
   */
  submitWith(draft: Draft, resolve: (event: CommittedEvent) => void, reject: (err: unknown) => void): void {
    if (this.#failed) return reject(new ParleyError('P_STORAGE', 'storage failure: not accepting writes'))
    this.#queue.push({ draft, originTs: this.clock.now(), resolve, reject })
    this.#schedule()
  }

  /** Runs `job` in the next batch transaction; resolves with its result once the batch is durable. */
  run<T>(job: Job<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      if (this.#failed) return reject(new ParleyError('P_STORAGE', 'storage failure: not accepting writes'))
      this.#queue.push({ draft: null, job, originTs: 0, resolve, reject })
      this.#schedule()
    })
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => this.flush())
  }

  /** Writes everything queued in one transaction. Public for shutdown and tests. */
  flush(): void {
    this.#scheduled = false
    // While an fsync runs, drafts keep queuing; its completion commits them all in one transaction
    // (group commit: one commit and one fsync per round, however many sends arrive meanwhile).
    if (this.#syncing || this.#failed) return
    // A bounded transaction: a backlog after a slow fsync is written in rounds, not in one long stall.
    const batch = this.#queue.length <= MAX_BATCH ? this.#queue : this.#queue.splice(0, MAX_BATCH)
    if (batch === this.#queue) this.#queue = []
    if (batch.length === 0) return

    const outcomes: Outcome[] = []
    const committed: CommittedEvent[] = []
    const heads = new Map<string, Head>()
    const batchTxns = new Map<string, number>()
    let stream = this.#committedHead

    let jobsWrote = false
    const context: JobContext = {
      nextStream: () => ++stream,
      committed: (event) => committed.push(event),
    }
    const write = this.db.transaction(() => {
      for (let i = 0; i < batch.length; i++) {
        const { draft, job, originTs } = batch[i]!
        if (job) {
          const streamBefore = stream
          const committedBefore = committed.length
          try {
            outcomes.push({ jobResult: this.db.transaction(job)(context) })
            jobsWrote = true
          } catch (err) {
            // Whatever a job throws (a refusal, a constraint, bad input from a peer), its savepoint is
            // rolled back and it fails alone: the other writes of the batch are not its hostages.
            stream = streamBefore
            committed.length = committedBefore
            outcomes.push(err instanceof ParleyError ? err : new JobError(err))
          }
          continue
        }
        if (!draft) throw new Error('a queue entry without draft or job')
        if (draft.remote) {
          const eventId = eventIdOfCanonical(canonicalJson(draft.remote.header))
          const earlier = batchTxns.get(eventId)
          if (earlier !== undefined) {
            outcomes.push({ dupOf: earlier })
            continue
          }
          if (this.repos.events.get(eventId)) {
            outcomes.push({ txnEventId: eventId })
            continue
          }
          batchTxns.set(eventId, i)
        }
        if (draft.txn) {
          const key = draft.txn.deviceId + '\0' + draft.txn.txnId
          const earlier = batchTxns.get(key)
          if (earlier !== undefined) {
            outcomes.push({ dupOf: earlier })
            continue
          }
          const existing = this.repos.events.txn(draft.txn.deviceId, draft.txn.txnId)
          if (existing) {
            outcomes.push({ txnEventId: existing.event_id })
            continue
          }
          batchTxns.set(key, i)
        }
        try {
          // Only the owner sequences a room (DESIGN.md section 4); others go through federation.
          if (parseRoomId(draft.room)?.server !== this.serverName)
            throw new ParleyError('P_FORBIDDEN', 'this server does not own that room')
          this.rules.check(draft)
        } catch (err) {
          if (err instanceof ParleyError) {
            outcomes.push(err)
            continue
          }
          throw err
        }
        let head = heads.get(draft.room)
        if (!head) {
          const room = draft.type === 'm.room.create' ? undefined : this.repos.rooms.get(draft.room)
          head = { seq: room?.last_seq ?? 0, hash: room?.head_hash ?? GENESIS_PREV, envelope: null }
          heads.set(draft.room, head)
        }
        const contentJson = draft.contentJson ?? canonicalJson(draft.content)
        const header =
          draft.remote?.header ??
          buildHeader({
            room: draft.room,
            type: draft.type,
            stateKey: draft.stateKey,
            sender: draft.sender,
            origin: this.serverName,
            originTs,
            content: draft.content,
            contentJson,
          })
        const headerJson = canonicalJson(header)
        const eventId = eventIdOfCanonical(headerJson)
        const envelope: Envelope = {
          room: draft.room,
          seq: head.seq + 1,
          event_id: eventId,
          prev: head.hash,
          owner_ts: originTs,
        }
        const envelopeJson = canonicalJson(envelope)
        stream++
        const relatesTo = typeof draft.content.target === 'string' ? draft.content.target : null
        // The draft's header is what the origin signed: the stored row is rebuilt from it.
        const row = eventRowOf({
          stream,
          header,
          envelope,
          contentJson,
          relatesTo,
          originSig: draft.remote?.originSig ?? null,
        })
        this.repos.events.insert(row)
        if (draft.txn) this.repos.events.insertTxn(draft.txn.deviceId, draft.txn.txnId, eventId, originTs)
        const event: CommittedEvent = clientRowOf(row)
        this.rules.apply(event, draft)
        head.seq = envelope.seq
        head.hash = hashCanonicalText(envelopeJson)
        head.envelope = envelope
        outcomes.push(event)
        committed.push(event)
      }
      for (const [room, head] of heads) {
        if (!head.envelope) continue
        this.repos.rooms.setHead(room, head.seq, head.hash)
        this.repos.events.setOwnerSig(
          head.envelope.event_id,
          this.signer.kid,
          toBase64Url(this.signer.sign(envelopeSigningBytes(head.envelope))),
        )
      }
    })

    try {
      write()
    } catch (err) {
      this.log.error({ err: String(err), batch: batch.length }, 'commit failed')
      const failure = storageError(err)
      for (const p of batch) p.reject(failure)
      if (this.#queue.length > 0) this.#schedule()
      return
    }
    this.#committedHead = stream
    const item: Committed = { stream, committed, batch, outcomes }
    const sync = this.durability.sync
    // Nothing written (all refused or repeated txns): nothing to wait for.
    if (!sync || (committed.length === 0 && !jobsWrote)) {
      this.#deliver(item)
      if (this.#queue.length > 0) this.#schedule()
      return
    }
    this.durability.committed()
    // Acks, fan-out and readers wait for the fsync.
    this.#syncing = true
    this.#lastDelivery = sync().then(
      () => {
        this.#syncing = false
        this.#deliver(item)
        if (this.#queue.length > 0) this.flush()
      },
      (err: unknown) => {
        // Durability unknown: never ack, never retry the fsync; refuse everything from now on.
        this.#failed = true
        const failure = new ParleyError('P_STORAGE', 'storage failure: nothing was acknowledged')
        for (const p of [...batch, ...this.#queue.splice(0)]) p.reject(failure)
        this.durability.fatal(err)
      },
    )
  }

  /** Makes a durable batch visible: stream head, fan-out, then acks, all in one delivery bracket. */
  #deliver(item: Committed): void {
    this.#streamHead = item.stream
    for (const hooks of this.#deliveryHooks) hooks.start()
    try {
      for (const listener of this.#listeners) {
        // A failing listener (fan-out, federation) must not keep the batch from being acked.
        try {
          listener(item.committed)
        } catch (err) {
          this.log.error({ err: String(err), stack: (err as Error).stack }, 'commit listener failed')
        }
      }
      this.#settle(item.batch, item.outcomes)
    } finally {
      for (const hooks of this.#deliveryHooks) hooks.end()
    }
  }

  #settle(batch: readonly Pending[], outcomes: readonly Outcome[]): void {
    for (let i = 0; i < batch.length; i++) {
      const outcome = outcomes[i]!
      const p = batch[i]! as Pending & { resolve(value: unknown): void }
      if (outcome instanceof ParleyError) p.reject(outcome)
      else if ('jobResult' in outcome) p.resolve(outcome.jobResult)
      else if ('dupOf' in outcome) {
        const first = outcomes[outcome.dupOf]!
        if (first instanceof ParleyError) p.reject(first)
        else if ('stream_pos' in first) p.resolve(first)
      } else if ('txnEventId' in outcome) {
        const row = this.repos.events.get(outcome.txnEventId)!
        p.resolve({ ...row, content: row.content ?? '{}' })
      } else p.resolve(outcome)
    }
  }
}
