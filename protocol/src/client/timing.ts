/** Time, timers and reconnection backoff, injectable so tests never sleep. */

/** Opaque handle of a scheduled timer. */
export type TimerHandle = unknown

/** The clock and timers the client uses; tests pass a fake one. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
  /** Calls `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle
  /** Cancels a timer; a handle that already fired or was cleared is ignored. */
  clearTimeout(handle: TimerHandle): void
}

/** The platform's clock and timers (`Date.now`, `setTimeout`, `clearTimeout`). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
}

/** Parameters of exponential backoff. */
export interface BackoffOptions {
  /** Ceiling of the first delay, in ms. */
  readonly baseMs: number
  /** Largest ceiling, in ms. */
  readonly capMs: number
}

/** Reconnection backoff of the client WebSocket: 500 ms doubling, capped at 30 s. */
export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000 }

/**
 * "Full jitter" exponential backoff (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015):
 * a delay drawn uniformly from `[0, min(cap, base * 2^attempt))`.
 *
 * @param attempt - Failures so far since the last success, from 0.
 * @param random - Uniform in `[0, 1)`, like `Math.random`.
 * @returns The delay in whole milliseconds.
 */
export function backoffDelay(attempt: number, random: () => number, options = DEFAULT_BACKOFF): number {
  if (!Number.isInteger(attempt) || attempt < 0)
    throw new RangeError('attempt must be a non-negative integer')
  // 2^31 exceeds any sane cap; clamping the exponent keeps the product finite.
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(attempt, 31))
  const r = Math.min(Math.max(random(), 0), 1)
  return Math.min(Math.floor(r * ceiling), Math.max(ceiling - 1, 0))
}
