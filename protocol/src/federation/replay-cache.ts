/**
 * Memory of handshake nonces already accepted (docs/federation.md, "Replay protection"). A HELLO is
 * acceptable while `|now - ts| <= 5 min`, so a nonce first accepted at time `t` (with `ts` up to 5
 * minutes ahead) could be replayed until `t + 10 min`: entries are kept {@link REPLAY_TTL_MS} from
 * insertion, which covers the whole window, and then forgotten, because a replay would be stale.
 */
import { MAX_CLOCK_SKEW_MS } from './constants.ts'

/** How long a nonce is remembered after it was accepted: the full width of the timestamp window. */
export const REPLAY_TTL_MS = 2 * MAX_CLOCK_SKEW_MS

/** Default bound on remembered nonces. */
export const DEFAULT_REPLAY_CACHE_ENTRIES = 65_536

/**
 * Where the handshake looks up and records nonces. One cache per server, shared by every link in
 * both roles (nonces are 256-bit random values, so the key space is shared safely).
 */
export interface ReplayCache {
  /** True if `nonce` was recorded and is still remembered at `now`. */
  has(nonce: string, now: number): boolean
  /**
   * Records `nonce` at `now` atomically: `added`, `replayed` if it is already remembered, or `full`
   * if the cache cannot take it (the handshake then fails closed with `busy`).
   */
  add(nonce: string, now: number): 'added' | 'replayed' | 'full'
}

/** Options of {@link MemoryReplayCache}. */
export interface MemoryReplayCacheOptions {
  /** Milliseconds a nonce is remembered; at least {@link REPLAY_TTL_MS}. */
  readonly ttlMs?: number
  /** Most nonces remembered at once. */
  readonly maxEntries?: number
}

/**
 * An in-memory {@link ReplayCache}: a map in insertion order, so expired entries are dropped from
 * the front in amortised constant time. Bounded: when full of live entries it refuses (fail closed)
 * rather than forgetting a nonce that could still be replayed.
 */
export class MemoryReplayCache implements ReplayCache {
  readonly #ttlMs: number
  readonly #maxEntries: number
  /** nonce -> time it was recorded. */
  readonly #entries = new Map<string, number>()

  constructor(options: MemoryReplayCacheOptions = {}) {
    const ttlMs = options.ttlMs ?? REPLAY_TTL_MS
    const maxEntries = options.maxEntries ?? DEFAULT_REPLAY_CACHE_ENTRIES
    if (!Number.isSafeInteger(ttlMs) || ttlMs < REPLAY_TTL_MS)
      throw new RangeError(`ttlMs must be an integer >= ${REPLAY_TTL_MS} (the width of the timestamp window)`)
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1)
      throw new RangeError('maxEntries must be a positive integer')
    this.#ttlMs = ttlMs
    this.#maxEntries = maxEntries
  }

  /** Nonces currently remembered (expired ones may linger until the next call). */
  get size(): number {
    return this.#entries.size
  }

  has(nonce: string, now: number): boolean {
    assertArgs(nonce, now)
    this.#purge(now)
    const at = this.#entries.get(nonce)
    return at !== undefined && !this.#expired(at, now)
  }

  add(nonce: string, now: number): 'added' | 'replayed' | 'full' {
    assertArgs(nonce, now)
    this.#purge(now)
    const at = this.#entries.get(nonce)
    if (at !== undefined && !this.#expired(at, now)) return 'replayed'
    if (at !== undefined) this.#entries.delete(nonce)
    if (this.#entries.size >= this.#maxEntries) return 'full'
    this.#entries.set(nonce, now)
    return 'added'
  }

  // Kept through `now == at + ttl` inclusive, matching the inclusive timestamp window.
  #expired(at: number, now: number): boolean {
    return now > at + this.#ttlMs
  }

  // Entries are in insertion order; with a monotonic clock that is expiry order. If the clock steps
  // back, younger entries simply wait behind an older one: kept longer, never shorter.
  #purge(now: number): void {
    for (const [nonce, at] of this.#entries) {
      if (!this.#expired(at, now)) break
      this.#entries.delete(nonce)
    }
  }
}

function assertArgs(nonce: string, now: number): void {
  if (typeof nonce !== 'string' || nonce.length === 0) throw new TypeError('nonce must be a non-empty string')
  if (!Number.isSafeInteger(now)) throw new TypeError('now must be an integer number of milliseconds')
}
