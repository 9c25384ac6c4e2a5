/**
 * Which keys we trust for each peer server (DESIGN.md section 6). Transport-free: the peer's raw key
 * document comes from an injected fetcher, and every document is verified by `verifyKeyDocument`
 * (schema, server name, self-signature, validity) before it is considered.
 *
 * Trust rules, in order:
 * 1. A quarantined peer: every lookup fails, nothing is fetched, until an admin runs `peers trust`.
 * 2. `federation.pinnedKeys` names the peer: the document must carry a valid signature by one of the
 *    configured keys, or it is refused (nothing is stored; fix the configuration or the peer). If it
 *    does, its keys are pinned as listed.
 * 3. First contact: trust on first use; every key the document lists is pinned (old keys with their
 *    `expired_ts`).
 * 4. Later documents: a new current key is accepted only if the document is also signed by a key we
 *    hold as the peer's *current* key (the peer signs its new document with the key it replaced). A key
 *    we saw retired cannot vouch (so a leaked old key cannot take over), a retired key cannot become
 *    current again, and a key id cannot change its key. Anything else quarantines the peer, with the
 *    reason stored and a warning logged.
 * Pinned keys are never deleted (only `peers forget` does): a retired key still verifies what was
 * signed before its `expired_ts` ({@link PeerKeys.keyFor}).
 *
 * Fetches are rate-limited per peer: one in flight (concurrent callers share it) and at most one per
 * `minFetchIntervalMs` (a minute) unless forced; failed fetches count too.
 */
import {
  bytesEqual,
  err,
  keyDocumentKeys,
  ok,
  toBase64Url,
  verifyKeyDocument,
  type Result,
  type ServerKeyInfo,
  type VerifiedKeyDocument,
  type VerifyFunction,
} from '@parley/protocol'
import { verifySignature } from '@parley/protocol/signing'
import type { Clock } from '../clock.ts'
import type { PeerKeyRow, PeerState, Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'

/** Returns the peer's key document as parsed JSON (untrusted), or throws if it cannot be had. */
export type KeyFetcher = (serverName: string) => Promise<unknown>

export type PeerKeyFaultCode =
  /** The peer is quarantined: an admin must run `peers trust` (or `peers forget`). */
  | 'quarantined'
  /** The document is not signed by any key configured in `federation.pinnedKeys`. */
  | 'pin_mismatch'
  /** The document could not be fetched (network, HTTP status, not JSON, too large). */
  | 'fetch_failed'
  /** The document failed verification (shape, server name, signatures, expiry). */
  | 'bad_document'
  /** A fetch was needed but the peer was fetched less than a minute ago. */
  | 'rate_limited'
  /** The peer has no such key id. */
  | 'unknown_key'
  /** The key had expired at the time asked about. */
  | 'expired_key'

export interface PeerKeyFault {
  readonly code: PeerKeyFaultCode
  readonly message: string
}

/** A pinned key, for listings. */
export interface PinnedKey {
  readonly kid: string
  /** Unpadded base64url public key. */
  readonly key: string
  readonly pinnedTs: number
  /** `null` while current. */
  readonly expiredTs: number | null
}

/** A peer and its pinned keys. */
export interface PeerInfo {
  readonly serverName: string
  readonly state: PeerState
  readonly reason: string | null
  readonly firstSeenTs: number
  readonly updatedTs: number
  readonly keys: readonly PinnedKey[]
}

export interface PeerKeysOptions {
  /** Our own server name: its keys come from `ownKeys`, never from a fetch. */
  readonly serverName: string
  readonly ownKeys: { keyFor(kid: string, atTs: number): Uint8Array | null }
  /** `federation.pinnedKeys`: server -> base64url public keys, one of which must sign its document. */
  readonly pinnedKeys: Readonly<Record<string, readonly string[]>>
  readonly fetch: KeyFetcher
  /** Least time between two fetches of one peer's document, unless forced. Default one minute. */
  readonly minFetchIntervalMs?: number
  /** Ed25519 verification (default: Node's crypto). */
  readonly verify?: VerifyFunction
}

const fault = (code: PeerKeyFaultCode, message: string) => err<PeerKeyFault>({ code, message })

/** Above this many remembered fetch times, entries older than the interval are dropped. */
const MAX_REMEMBERED_FETCHES = 10_000

export class PeerKeys {
  readonly #repos: Repos
  readonly #clock: Clock
  readonly #log: Logger
  readonly #options: PeerKeysOptions
  readonly #interval: number
  readonly #verify: VerifyFunction
  readonly #inflight = new Map<string, Promise<Result<VerifiedKeyDocument, PeerKeyFault>>>()
  readonly #lastFetch = new Map<string, number>()

  constructor(repos: Repos, clock: Clock, log: Logger, options: PeerKeysOptions) {
    this.#repos = repos
    this.#clock = clock
    this.#log = log
    this.#options = options
    this.#interval = options.minFetchIntervalMs ?? 60_000
    this.#verify = options.verify ?? verifySignature
  }

  /** A peer and its pinned keys, or `null` if we never trusted it. */
  peer(server: string): PeerInfo | null {
    const row = this.#repos.peers.get(server)
    return row ? this.#info(server) : null
  }

  /** Every known peer, by name. */
  list(): PeerInfo[] {
    return this.#repos.peers.list().map((row) => this.#info(row.server_name))
  }

  /**
   * The public key `kid` of `server` if it may have signed something at `atTs` (ms): a current key
   * always, a retired one only before its `expired_ts`. An unknown kid (or peer) triggers a
   * rate-limited fetch of the peer's document, so a rotation is picked up by the first event signed
   * with the new key.
   */
  async keyFor(server: string, kid: string, atTs: number): Promise<Result<Uint8Array, PeerKeyFault>> {
    if (server === this.#options.serverName) {
      const own = this.#options.ownKeys.keyFor(kid, atTs)
      return own ? ok(own) : fault('unknown_key', `${kid} is not a key of ours valid at ${atTs}`)
    }
    const row = this.#repos.peers.get(server)
    if (row?.state === 'quarantined') return fault('quarantined', `${server} is quarantined: ${row.reason}`)
    let key = row ? this.#repos.peers.key(server, kid) : undefined
    if (!key) {
      const refreshed = await this.refresh(server)
      if (!refreshed.ok) return refreshed
      key = this.#repos.peers.key(server, kid)
      if (!key) return fault('unknown_key', `${server} has no key ${kid}`)
    }
    if (key.expired_ts !== null && atTs >= key.expired_ts) {
      return fault('expired_key', `${kid} of ${server} expired at ${key.expired_ts}, before ${atTs}`)
    }
    return ok(key.public_key)
  }

  /**
   * Fetches the peer's document (rate-limited unless `force`) and applies the trust rules of this
   * module's comment. A quarantined peer is not fetched.
   */
  async refresh(server: string, options: { force?: boolean } = {}): Promise<Result<PeerInfo, PeerKeyFault>> {
    if (server === this.#options.serverName) throw new TypeError('our own keys are not fetched')
    const row = this.#repos.peers.get(server)
    if (row?.state === 'quarantined') return fault('quarantined', `${server} is quarantined: ${row.reason}`)
    const fetched = await this.#fetchDocument(server, options.force ?? false)
    if (!fetched.ok) return fetched
    return this.#accept(server, fetched.value)
  }

  /**
   * Admin action (`peers trust`): fetches the peer's current document now and pins its keys, whatever
   * was pinned before, clearing a quarantine. The document must still verify, and match
   * `federation.pinnedKeys` if the peer is listed there.
   */
  async trust(server: string): Promise<Result<PeerInfo, PeerKeyFault>> {
    if (server === this.#options.serverName) throw new TypeError('our own keys are not fetched')
    const fetched = await this.#fetchDocument(server, true)
    if (!fetched.ok) return fetched
    const mismatch = this.#configMismatch(server, fetched.value)
    if (mismatch) return mismatch
    const now = this.#clock.now()
    this.#repos.db.transaction(() => {
      this.#repos.peers.setState(server, 'trusted', null, now)
      this.#pin(server, keyDocumentKeys(fetched.value.document), now)
    })()
    this.#log.info({ peer: server, kids: fetched.value.signedBy }, 'peer keys pinned by an admin')
    return ok(this.#info(server))
  }

  /** Admin action (`peers forget`): drops the peer and its pins; the next contact is a first contact. */
  forget(server: string): boolean {
    this.#lastFetch.delete(server)
    return this.#repos.peers.forget(server)
  }

  #configMismatch(server: string, verified: VerifiedKeyDocument): Result<never, PeerKeyFault> | null {
    const configured = this.#options.pinnedKeys[server]
    if (!configured) return null
    const doc = verified.document
    const signedByConfigured = verified.signedBy.some((kid) =>
      configured.includes(doc.verify_keys[kid] ?? doc.old_verify_keys[kid]?.key ?? ''),
    )
    if (signedByConfigured) return null
    this.#log.warn(
      { peer: server, kids: verified.signedBy },
      'peer key document is not signed by a key in federation.pinnedKeys: refused',
    )
    return fault('pin_mismatch', `${server}'s document is not signed by a key in federation.pinnedKeys`)
  }

  #accept(server: string, verified: VerifiedKeyDocument): Result<PeerInfo, PeerKeyFault> {
    const mismatch = this.#configMismatch(server, verified)
    if (mismatch) return mismatch
    const docKeys = keyDocumentKeys(verified.document)
    const now = this.#clock.now()
    const peers = this.#repos.peers
    // Read and decide inside the transaction: an admin command may change the peer meanwhile.
    const outcome = this.#repos.db.transaction((): Result<true, PeerKeyFault> => {
      const row = peers.get(server)
      if (row?.state === 'quarantined') return fault('quarantined', `${server} is quarantined: ${row.reason}`)
      if (!row) {
        peers.setState(server, 'trusted', null, now)
        this.#pin(server, docKeys, now)
        this.#log.info({ peer: server, kids: docKeys.map((k) => k.kid) }, 'pinned peer keys on first use')
        return ok(true)
      }
      const pinned = peers.keys(server)
      // Configured pins are the admin's word: no rotation rule on top of them.
      const refusal = this.#options.pinnedKeys[server]
        ? null
        : judgeChange(pinned, docKeys, verified.signedBy)
      if (refusal) {
        peers.setState(server, 'quarantined', refusal, now)
        this.#log.warn({ peer: server, reason: refusal }, 'peer quarantined: its keys changed unexpectedly')
        return fault('quarantined', `${server} is quarantined: ${refusal}`)
      }
      if (this.#pin(server, docKeys, now, pinned)) peers.setState(server, 'trusted', row.reason, now)
      return ok(true)
    })()
    return outcome.ok ? ok(this.#info(server)) : outcome
  }

  /**
   * Pins what a document lists: new keys, retirements (at the document's `expired_ts`, never later
   * than now), and retires current pins the document no longer lists as current. Returns whether
   * anything changed.
   */
  #pin(
    server: string,
    docKeys: readonly ServerKeyInfo[],
    now: number,
    pinned: readonly PeerKeyRow[] = this.#repos.peers.keys(server),
  ): boolean {
    const peers = this.#repos.peers
    const byKid = new Map(pinned.map((k) => [k.kid, k]))
    const listed = new Set(docKeys.map((k) => k.kid))
    let changed = false
    for (const key of docKeys) {
      const expiredTs = key.expiredTs === null ? null : Math.min(key.expiredTs, now)
      const have = byKid.get(key.kid)
      if (
        !have ||
        !bytesEqual(have.public_key, key.publicKey) ||
        (have.expired_ts !== null && expiredTs === null)
      ) {
        peers.pinKey(server, key.kid, key.publicKey, expiredTs, now)
        changed = true
      } else if (have.expired_ts === null && expiredTs !== null) {
        peers.expireKey(server, key.kid, expiredTs)
        changed = true
      }
    }
    for (const have of pinned) {
      // A current key the document no longer lists at all stops verifying new signatures now.
      if (have.expired_ts === null && !listed.has(have.kid)) {
        peers.expireKey(server, have.kid, now)
        changed = true
      }
    }
    return changed
  }

  /** One shared, rate-limited fetch per peer, verified. */
  #fetchDocument(server: string, force: boolean): Promise<Result<VerifiedKeyDocument, PeerKeyFault>> {
    const inflight = this.#inflight.get(server)
    if (inflight) return inflight
    const now = this.#clock.now()
    const last = this.#lastFetch.get(server)
    if (!force && last !== undefined && now >= last && now - last < this.#interval) {
      return Promise.resolve(
        fault(
          'rate_limited',
          `${server} was fetched ${now - last} ms ago; next fetch in ${last + this.#interval - now} ms`,
        ),
      )
    }
    this.#remember(server, now)
    const attempt = (async (): Promise<Result<VerifiedKeyDocument, PeerKeyFault>> => {
      let raw: unknown
      try {
        raw = await this.#options.fetch(server)
      } catch (error) {
        const why = describeError(error)
        this.#log.warn({ peer: server, err: why }, 'fetching the peer key document failed')
        return fault('fetch_failed', `fetching ${server}'s key document failed: ${why}`)
      }
      const verified = verifyKeyDocument(raw, {
        serverName: server,
        now: this.#clock.now(),
        verify: this.#verify,
      })
      if (!verified.ok) {
        this.#log.warn({ peer: server, fault: verified.error }, 'peer key document refused')
        return fault(
          'bad_document',
          `${server}'s key document: ${verified.error.code}: ${verified.error.message}`,
        )
      }
      return verified
    })().finally(() => this.#inflight.delete(server))
    this.#inflight.set(server, attempt)
    return attempt
  }

  #remember(server: string, now: number): void {
    if (this.#lastFetch.size >= MAX_REMEMBERED_FETCHES) {
      for (const [name, ts] of this.#lastFetch) if (now - ts >= this.#interval) this.#lastFetch.delete(name)
    }
    this.#lastFetch.set(server, now)
  }

  #info(server: string): PeerInfo {
    const row = this.#repos.peers.get(server)!
    return {
      serverName: row.server_name,
      state: row.state,
      reason: row.reason,
      firstSeenTs: row.first_seen_ts,
      updatedTs: row.updated_ts,
      keys: this.#repos.peers.keys(server).map((k) => ({
        kid: k.kid,
        key: toBase64Url(k.public_key),
        pinnedTs: k.pinned_ts,
        expiredTs: k.expired_ts,
      })),
    }
  }
}

/** One line for a fetch error, with its cause (undici hides the useful part in `cause`). */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const cause =
    error.cause instanceof Error
      ? `: ${(error.cause as NodeJS.ErrnoException).code ?? error.cause.message}`
      : ''
  return `${error.message}${cause}`.slice(0, 300)
}

/**
 * The rotation rule for a trusted peer: `null` if the document may replace what we pinned, otherwise
 * the reason to quarantine the peer.
 */
export function judgeChange(
  pinned: readonly PeerKeyRow[],
  docKeys: readonly ServerKeyInfo[],
  signedBy: readonly string[],
): string | null {
  const byKid = new Map(pinned.map((k) => [k.kid, k]))
  for (const key of docKeys) {
    const have = byKid.get(key.kid)
    if (have && !bytesEqual(have.public_key, key.publicKey))
      return `key id ${key.kid} now names a different key`
  }
  const current = docKeys.filter((k) => k.expiredTs === null)
  const revived = current.find((k) => byKid.get(k.kid)?.expired_ts != null)
  if (revived) return `retired key ${revived.kid} is listed as current again`
  const added = current.filter((k) => !byKid.has(k.kid)).map((k) => k.kid)
  if (added.length === 0) return null
  const pinnedCurrent = pinned.filter((k) => k.expired_ts === null).map((k) => k.kid)
  if (signedBy.some((kid) => pinnedCurrent.includes(kid))) return null
  return (
    `new current key ${added.join(', ')} is not signed by a key we hold as current ` +
    `(${pinnedCurrent.join(', ') || 'none'}); signed by ${signedBy.join(', ')}`
  )
}
