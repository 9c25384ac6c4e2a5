/**
 * End-to-end encryption in the app (docs/e2e.md): the device's {@link EndToEnd} over the app's sealed
 * store, what each encrypted event says once decrypted, and what the user must be told about keys
 * (warnings, a verified contact whose identity changed). Chat owns one; components read its state.
 *
 * Encrypted sends wait in a queue of their own (kept in the sealed store, so they survive a reload)
 * until they can be encrypted: encrypting needs the room's members and their device keys, which the
 * app cannot get offline or while a member's server is away. Each room's queue goes in order; a send
 * the server refuses for good, or one blocked by a changed identity, leaves it with the reason.
 *
 * Decrypted events are handed to the timeline as the events they carry (`m.message`, `m.edit`,
 * `m.reaction`), so folding, previews, mentions and notifications work as in plain rooms; an event
 * that cannot be decrypted (yet) stays `m.encrypted` and shows as a placeholder.
 */
import {
  ApiError,
  ClientClosedError,
  EndToEnd,
  IdentityChangedError,
  KeysUnavailableError,
  NetworkError,
  newTxnId,
  OutboxEntry,
  type ClientStore,
  type E2eWarning,
  type ParleyClient,
} from '@parley/protocol/client'
import { e2e } from '@parley/protocol/crypto'
import { CONTENT_SCHEMAS, type ClientEvent } from '@parley/protocol/schema'
import { z } from 'zod'
import { workerPassphraseKdf } from './passphrase-kdf.ts'

/**
 * The store item of the rooms this device knows are encrypted, each with the room order from which
 * it is (0: created encrypted; else the first `m.room.encryption` or `m.encrypted` event seen).
 * Remembered so that a server later calling the room unencrypted gets no plaintext, and a plaintext
 * message it slips in after that point is not shown as the sender's.
 */
const ROOMS_ITEM = 'e2e-rooms'
const Rooms = z.record(z.string(), z.number().int().min(0))
/** The type a refused plaintext event is shown as (a placeholder saying why). */
export const UNENCRYPTED_EVENT = 'm.unencrypted'
/** Why such an event shows no text. */
export const UNENCRYPTED_REASON = 'sent unencrypted in an encrypted room'

/** The store item holding sends that wait to be encrypted (plain content: the store is sealed). */
const QUEUE_ITEM = 'e2e-queue'
const Queue = z.array(OutboxEntry)
/** Retries of a waiting queue: soon at first, then every 30 s at most (or on reconnection). */
const RETRY_MS = [2_000, 5_000, 10_000, 30_000]

/** What the app hears from {@link Encryption}. */
export interface EncryptionHooks {
  /** A room key arrived: events of `room` waiting for it can show now. */
  keyArrived(room: string): void
  /** The queue of waiting sends changed (pending rows). */
  queueChanged(): void
  /** A queued send was refused for good (after a reload nobody else is waiting for it). */
  unsent(entry: OutboxEntry, reason: string): void
  /** Room keys were restored from the backup: every room may decrypt more now. */
  keysRestored(): void
}

/** What may travel inside `m.encrypted`. Deletions stay visible to the server, which checks who may delete. */
const INNER_TYPES = new Set(['m.message', 'm.edit', 'm.reaction'] as const)
type InnerType = typeof INNER_TYPES extends Set<infer T> ? T : never

/** Why an encrypted event shows no text. */
export type Undecrypted =
  { readonly status: 'waiting' } | { readonly status: 'failed'; readonly reason: string }

const isInner = (type: string): type is InnerType => INNER_TYPES.has(type as InnerType)

export class Encryption {
  /** Encryption works on this device (keys loaded, self-test passed). */
  ready = $state(false)
  /** Why it does not, for the user; null when it does or is starting. */
  error = $state<string | null>(null)
  /** Key changes and refusals to show (newest last; one per kind and user). */
  warnings = $state<E2eWarning[]>([])
  /** Verified contacts whose identity key changed: sending to them waits for the user (blocking). */
  blocked = $state<string[]>([])
  /** Encrypted events shown without text, by event id. */
  undecrypted = $state.raw<Readonly<Record<string, Undecrypted>>>({})
  /** Bumped when a verification changes (components re-read `isVerified`). */
  trustVersion = $state(0)

  /**
   * This device is in no signed device list of its user yet (a further device): it cannot read or be
   * sent anything encrypted until it is restored from the key backup.
   */
  needsVerification = $state(false)
  /** The key backup this device uploads to (null: none set up or restored here). */
  backupVersion = $state<string | null>(null)
  /** This device holds the user's identity key (it can set up a backup). */
  holdsIdentityKey = $state(false)

  /** Sends waiting to be encrypted, oldest first (shown as pending). */
  queued = $state.raw<readonly OutboxEntry[]>([])

  #e2e: EndToEnd | null = null
  #store: ClientStore | null = null
  /** Encrypted rooms and the order from which they are (see ROOMS_ITEM). */
  #since = new Map<string, number>()
  /**
   * Events this device decrypted (or cached after decrypting them): shown again, they are what they
   * carry, not plaintext the server slipped in.
   */
  readonly #decryptedIds = new Set<string>()
  /** What an encrypted send in the outbox says, by txn id (for its "Sending…" row). */
  readonly #plain = new Map<string, { type: string; content: Record<string, unknown> }>()
  /** Callers waiting for their queued send, by txn id. */
  readonly #waiters = new Map<string, { resolve(): void; reject(error: unknown): void }>()
  /** Rooms whose queue is being sent. */
  readonly #flushing = new Set<string>()
  #retryTimer: ReturnType<typeof setTimeout> | null = null
  #retries = 0

  constructor(private readonly hooks: EncryptionHooks) {}

  /** Loads (or creates) this device's keys and the waiting sends; call before the first connection. */
  async start(client: ParleyClient): Promise<void> {
    this.#store = client.store
    try {
      const rooms = Rooms.safeParse(JSON.parse((await client.store.getItem(ROOMS_ITEM)) ?? '{}'))
      if (rooms.success) for (const [room, since] of Object.entries(rooms.data)) this.#since.set(room, since)
    } catch {
      // Unreadable: relearned from the rooms and their events.
    }
    try {
      const stored = Queue.safeParse(JSON.parse((await client.store.getItem(QUEUE_ITEM)) ?? '[]'))
      if (stored.success && stored.data.length > 0) this.#setQueue(stored.data)
    } catch {
      // An unreadable queue counts as empty.
    }
    try {
      const e2e = await EndToEnd.start(client, { passphraseKdf: workerPassphraseKdf() })
      e2e.on('warning', (w) => this.#warn(w))
      e2e.on('room_key', ({ room }) => this.hooks.keyArrived(room))
      e2e.on('verification', () => this.#syncDevice())
      this.#e2e = e2e
      this.#syncDevice()
      this.ready = true
      this.error = null
      client.on('ready', () => this.#flushAll())
      this.#flushAll()
    } catch (error) {
      this.error = error instanceof Error ? error.message : String(error)
      // A device that never published its keys and started offline: try again once connected.
      if (error instanceof NetworkError) client.once('ready', () => void this.start(client))
    }
  }

  /** Forgets everything of the signed-out account. */
  reset(): void {
    this.#e2e = null
    this.#store = null
    this.ready = false
    this.error = null
    this.needsVerification = false
    this.backupVersion = null
    this.holdsIdentityKey = false
    this.warnings = []
    this.blocked = []
    this.undecrypted = {}
    this.queued = []
    this.#since.clear()
    this.#decryptedIds.clear()
    this.#plain.clear()
    for (const waiter of this.#waiters.values()) waiter.reject(new ClientClosedError('closed'))
    this.#waiters.clear()
    if (this.#retryTimer) clearTimeout(this.#retryTimer)
    this.#retryTimer = null
  }

  /**
   * Events read back from this device's sealed cache: what it decrypted before is stored decrypted
   * (a plaintext the server slipped in was stored as refused), so they are taken as they are.
   */
  trustCached(events: readonly ClientEvent[]): void {
    for (const e of events) if (isInner(e.type)) this.#decryptedIds.add(e.event_id)
  }

  /** This device created `room` encrypted: every event of it is encrypted from the start. */
  createdEncrypted(room: string): void {
    this.learn(room, [
      { type: 'm.room.create', content: { encrypted: true }, seq: 1 } as unknown as ClientEvent,
    ])
  }

  /** Whether this device knows `room` is end-to-end encrypted (whatever the server says now). */
  isEncrypted(room: string): boolean {
    return this.#since.has(room)
  }

  /**
   * Learns which rooms are encrypted, and from when: from the room list (`encrypted`, order unknown:
   * everything counts), and from events (creation, `m.room.encryption`, `m.encrypted`). Call with a
   * batch before revealing it: a page of history comes newest first.
   */
  learn(room: string, events: readonly ClientEvent[], summaryEncrypted = false): void {
    let since = this.#since.get(room)
    const before = since
    for (const e of events) {
      const from =
        e.type === 'm.room.create' && e.content.encrypted === true
          ? 0
          : e.type === 'm.room.encryption' || e.type === 'm.encrypted'
            ? e.seq
            : null
      if (from !== null) since = Math.min(since ?? from, from)
    }
    if (since === undefined && summaryEncrypted) since = Number.MAX_SAFE_INTEGER
    if (since === undefined || since === before) return
    this.#since.set(room, since)
    void this.#store?.setItem(ROOMS_ITEM, JSON.stringify(Object.fromEntries(this.#since))).catch(() => {})
  }

  /**
   * The event as the timeline should see it: an `m.encrypted` event becomes the event it carries once
   * decrypted and checked (its inner content validated like any content); otherwise it stays as it is
   * and {@link undecrypted} says why.
   */
  reveal(event: ClientEvent): ClientEvent {
    if (event.type !== 'm.encrypted') {
      // Plaintext where the room was already encrypted: the server cannot have accepted it from a
      // client, so it is the server's own: never shown as what it claims to be.
      const since = this.#since.get(event.room)
      if (!isInner(event.type) || since === undefined || event.seq <= since) return event
      if (this.#decryptedIds.has(event.event_id)) return event
      if (!this.undecrypted[event.event_id])
        this.undecrypted = {
          ...this.undecrypted,
          [event.event_id]: { status: 'failed', reason: UNENCRYPTED_REASON },
        }
      return { ...event, type: UNENCRYPTED_EVENT }
    }
    const result = this.#e2e?.decrypt(event) ?? { status: 'waiting' as const, sessionId: '' }
    let why: Undecrypted
    if (result.status === 'decrypted') {
      if (!isInner(result.type)) why = { status: 'failed', reason: `unexpected ${result.type} inside` }
      else if (!CONTENT_SCHEMAS[result.type].safeParse(result.content).success)
        why = { status: 'failed', reason: 'malformed content' }
      else {
        this.#decryptedIds.add(event.event_id)
        if (this.undecrypted[event.event_id]) {
          const { [event.event_id]: _, ...rest } = this.undecrypted
          this.undecrypted = rest
        }
        return { ...event, type: result.type, content: result.content }
      }
    } else if (result.status === 'plain') return event
    else
      why = result.status === 'waiting' ? { status: 'waiting' } : { status: 'failed', reason: result.reason }
    const known = this.undecrypted[event.event_id]
    if (known?.status !== why.status) this.undecrypted = { ...this.undecrypted, [event.event_id]: why }
    return event
  }

  /**
   * Queues a send for encryption and resolves once the server has it. Refused when a verified
   * contact's identity changed (that contact is then {@link blocked}) or the server refuses it.
   */
  async send(room: string, type: string, content: Record<string, unknown>): Promise<void> {
    // Not started (or failed to): refused now, with the reason, rather than queued with nobody to send it.
    if (!this.#e2e) throw new Error(this.error ?? 'encryption is not ready on this device')
    const entry: OutboxEntry = { txn_id: newTxnId(), room, event_type: type, content, created_ts: Date.now() }
    const done = new Promise<void>((resolve, reject) => this.#waiters.set(entry.txn_id, { resolve, reject }))
    this.#setQueue([...this.queued, entry])
    await this.#saveQueue()
    this.#flush(room)
    return done
  }

  /**
   * What the pending rows show: the queue, then the outbox's encrypted sends as their plain text (an
   * entry in both shows once; after a reload an encrypted entry's text is unknown: `content` empty).
   */
  pendingView(outbox: readonly OutboxEntry[]): OutboxEntry[] {
    const queued = new Set(this.queued.map((e) => e.txn_id))
    const sent = outbox
      .filter((e) => !queued.has(e.txn_id))
      .map((entry) => {
        if (entry.event_type !== 'm.encrypted') return entry
        const plain = this.#plain.get(entry.txn_id)
        return plain
          ? { ...entry, event_type: plain.type, content: plain.content }
          : { ...entry, content: {} }
      })
    return [...sent, ...this.queued]
  }

  #flushAll(): void {
    for (const room of new Set(this.queued.map((e) => e.room))) this.#flush(room)
  }

  /** Sends a room's queue in order; stops at the first that must wait, and retries later. */
  #flush(room: string): void {
    if (this.#flushing.has(room) || !this.#e2e) return
    this.#flushing.add(room)
    void this.#flushRoom(this.#e2e, room).finally(() => this.#flushing.delete(room))
  }

  async #flushRoom(e2e: EndToEnd, room: string): Promise<void> {
    for (let entry = this.#next(room); entry; entry = this.#next(room)) {
      this.#plain.set(entry.txn_id, { type: entry.event_type, content: entry.content })
      try {
        const sent = e2e.send(room, entry.event_type, entry.content as never, { txnId: entry.txn_id })
        await sent
        this.#retries = 0
        await this.#settle(entry, null)
      } catch (error) {
        if (this.#e2e !== e2e) return // signed out meanwhile
        // Worth another try later: keys out of reach, no network, our server busy or restarting.
        if (
          error instanceof KeysUnavailableError ||
          error instanceof NetworkError ||
          (error instanceof ApiError && (error.status >= 500 || error.status === 429))
        ) {
          this.#retryLater()
          return
        }
        if (error instanceof ClientClosedError) return
        if (error instanceof IdentityChangedError && !this.blocked.includes(error.userId))
          this.blocked = [...this.blocked, error.userId]
        await this.#settle(entry, error)
      } finally {
        this.#plain.delete(entry.txn_id)
      }
    }
  }

  #next(room: string): OutboxEntry | undefined {
    return this.queued.find((e) => e.room === room)
  }

  async #settle(entry: OutboxEntry, error: unknown): Promise<void> {
    this.#setQueue(this.queued.filter((e) => e.txn_id !== entry.txn_id))
    await this.#saveQueue()
    const waiter = this.#waiters.get(entry.txn_id)
    this.#waiters.delete(entry.txn_id)
    if (error === null) waiter?.resolve()
    else if (waiter) waiter.reject(error)
    else this.hooks.unsent(entry, error instanceof Error ? error.message : String(error))
  }

  #retryLater(): void {
    if (this.#retryTimer) return
    const delay = RETRY_MS[Math.min(this.#retries++, RETRY_MS.length - 1)]
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null
      this.#flushAll()
    }, delay)
  }

  #setQueue(queue: readonly OutboxEntry[]): void {
    this.queued = queue
    this.hooks.queueChanged()
  }

  #saveQueue(): Promise<void> {
    const store = this.#store
    if (!store) return Promise.resolve()
    const queue = this.queued
    return queue.length === 0
      ? store.removeItem(QUEUE_ITEM)
      : store.setItem(QUEUE_ITEM, JSON.stringify(queue))
  }

  #syncDevice(): void {
    this.needsVerification = this.#e2e?.needsVerification ?? false
    this.backupVersion = this.#e2e?.backupVersion ?? null
    this.holdsIdentityKey = this.#e2e?.holdsIdentityKey ?? false
  }

  /**
   * Sets up the key backup (E2E.md section 2.5) and returns the recovery key to show once. With a
   * passphrase, the recovery key is also wrapped under argon2id (in a Web Worker).
   */
  async enableBackup(passphrase?: string): Promise<string> {
    const { recoveryKey } = await this.membership().enableBackup(passphrase ? { passphrase } : {})
    this.#syncDevice()
    return recoveryKey
  }

  /**
   * Makes this device one of the user's (E2E.md sections 2.1, 2.5): opens the backup with what the
   * user typed (a recovery key if it reads as one, else the passphrase), signs it into the device
   * list and imports the backed-up room keys. Returns how many were imported.
   */
  async restore(secret: string): Promise<number> {
    const e2eLayer = this.membership()
    let recoveryKey: string | null = null
    try {
      e2e.decodeRecoveryKey(secret)
      recoveryKey = secret
    } catch {
      // Not a recovery key: a passphrase.
    }
    const report = await e2eLayer.restoreFromBackup(recoveryKey ? { recoveryKey } : { passphrase: secret })
    this.#syncDevice()
    // Keys for what is already on screen arrived: each room redecrypts what waited for them.
    this.hooks.keysRestored()
    return report.imported
  }

  /**
   * This device's end-to-end layer, for membership changes of encrypted rooms: they must carry its
   * signature (E2E.md section 2.3). Throws while encryption is not available.
   */
  membership(): EndToEnd {
    if (!this.#e2e) throw new Error(this.error ?? 'encryption is not ready on this device')
    return this.#e2e
  }

  safetyNumber(userId: string): string | null {
    return this.#e2e?.safetyNumber(userId) ?? null
  }

  safetyQr(userId: string): Uint8Array | null {
    return this.#e2e?.safetyQr(userId) ?? null
  }

  /** Fetches and pins `userId`'s identity if none is pinned yet (before showing a safety number). */
  async loadIdentity(userId: string): Promise<void> {
    await this.#e2e?.loadIdentity(userId)
  }

  isVerified(userId: string): boolean {
    void this.trustVersion
    return this.#e2e?.isVerified(userId) ?? false
  }

  /** The safety numbers matched: `userId`'s identity is verified (a later change blocks sending). */
  async markVerified(userId: string, verified = true): Promise<void> {
    await this.#e2e?.markVerified(userId, verified)
    this.trustVersion++
  }

  /** Accepts `userId`'s new identity key after a change (unverified until compared again). */
  async acceptIdentity(userId: string): Promise<void> {
    await this.#e2e?.acceptIdentity(userId)
    this.blocked = this.blocked.filter((u) => u !== userId)
    this.warnings = this.warnings.filter((w) => !(w.kind === 'identity_changed' && w.user_id === userId))
    this.trustVersion++
  }

  dismissWarning(warning: E2eWarning): void {
    this.warnings = this.warnings.filter((w) => w !== warning)
  }

  #warn(warning: E2eWarning): void {
    // A verified contact's new identity key: messages to them wait for the user (blocking dialog).
    if (
      warning.kind === 'identity_changed' &&
      this.#e2e?.isVerified(warning.user_id) &&
      !this.blocked.includes(warning.user_id)
    )
      this.blocked = [...this.blocked, warning.user_id]
    const rest = this.warnings.filter((w) => !(w.kind === warning.kind && w.user_id === warning.user_id))
    this.warnings = [...rest, warning].slice(-20)
  }
}
