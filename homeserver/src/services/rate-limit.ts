/** Token buckets keyed by a string (device, account, address), on an injectable clock. */
import type { Clock } from '../clock.ts'

interface Bucket {
  tokens: number
  updated: number
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>()
  readonly #perMs: number

  /** `capacity` tokens, refilled at `refillPerSecond`. */
  constructor(
    private readonly clock: Clock,
    private readonly capacity: number,
    refillPerSecond: number,
  ) {
    this.#perMs = refillPerSecond / 1000
  }

  #bucket(key: string): Bucket {
    const now = this.clock.now()
    let b = this.#buckets.get(key)
    if (!b) {
      b = { tokens: this.capacity, updated: now }
      // Bound memory under key spraying: full buckets carry no information and can be dropped.
      if (this.#buckets.size >= 100_000) this.#sweep()
      this.#buckets.set(key, b)
    } else {
      b.tokens = Math.min(this.capacity, b.tokens + (now - b.updated) * this.#perMs)
      b.updated = now
    }
    return b
  }

  /** Takes one token; returns 0 if allowed, else the milliseconds until one is available. */
  take(key: string): number {
    const b = this.#bucket(key)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return Math.ceil((1 - b.tokens) / this.#perMs)
  }

  /** Gives back a token taken by {@link take} (e.g. a reserved login failure that turned out a success). */
  refund(key: string): void {
    const b = this.#bucket(key)
    b.tokens = Math.min(this.capacity, b.tokens + 1)
  }

  #sweep(): void {
    const now = this.clock.now()
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.updated) * this.#perMs >= this.capacity) this.#buckets.delete(key)
    }
  }
}

/** One token bucket (per connection, say): nothing to clean up when its owner goes away. */
export class TokenBucket {
  #tokens: number
  #updated: number
  readonly #perMs: number

  constructor(
    private readonly clock: Clock,
    private readonly capacity: number,
    refillPerSecond: number,
  ) {
    this.#tokens = capacity
    this.#updated = clock.now()
    this.#perMs = refillPerSecond / 1000
  }

  /** Takes one token; false if none is left. */
  take(): boolean {
    const now = this.clock.now()
    this.#tokens = Math.min(this.capacity, this.#tokens + (now - this.#updated) * this.#perMs)
    this.#updated = now
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }
}

/** Bounds concurrent work (argon2 hashes): at most `limit` at once, the rest queue up to `maxQueue`. */
export class Semaphore {
  #active = 0
  readonly #waiting: Array<() => void> = []

  constructor(
    private readonly limit: number,
    private readonly maxQueue = 256,
  ) {}

  /** Runs `task` when a slot is free. Returns `null` without running it if the queue is full. */
  async run<T>(task: () => Promise<T>): Promise<T | null> {
    if (this.#active >= this.limit) {
      if (this.#waiting.length >= this.maxQueue) return null
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
    } else {
      this.#active++
    }
    try {
      return await task()
    } finally {
      const next = this.#waiting.shift()
      if (next) next()
      else this.#active--
    }
  }
}
