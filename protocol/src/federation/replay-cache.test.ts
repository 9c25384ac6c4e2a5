import { describe, expect, it } from 'vitest'
import { MAX_CLOCK_SKEW_MS } from './constants.ts'
import { MemoryReplayCache, REPLAY_TTL_MS } from './replay-cache.ts'

const T = 1_000_000

describe('MemoryReplayCache', () => {
  it('accepts a nonce once and then reports it as replayed', () => {
    const cache = new MemoryReplayCache()
    expect(cache.has('n1', T)).toBe(false)
    expect(cache.add('n1', T)).toBe('added')
    expect(cache.has('n1', T)).toBe(true)
    expect(cache.add('n1', T + 1)).toBe('replayed')
    expect(cache.add('n2', T + 1)).toBe('added')
  })

  it('remembers for the full width of the timestamp window, through the last millisecond inclusive', () => {
    expect(REPLAY_TTL_MS).toBe(2 * MAX_CLOCK_SKEW_MS)
    const cache = new MemoryReplayCache()
    cache.add('n', T)
    expect(cache.has('n', T + REPLAY_TTL_MS)).toBe(true)
    expect(cache.add('n', T + REPLAY_TTL_MS)).toBe('replayed')
    expect(cache.has('n', T + REPLAY_TTL_MS + 1)).toBe(false)
    expect(cache.size).toBe(0)
    expect(cache.add('n', T + REPLAY_TTL_MS + 1)).toBe('added')
  })

  it('is bounded: when full of live nonces it refuses instead of forgetting one', () => {
    const cache = new MemoryReplayCache({ maxEntries: 2 })
    expect(cache.add('a', T)).toBe('added')
    expect(cache.add('b', T + 1)).toBe('added')
    expect(cache.add('c', T + 2)).toBe('full')
    expect(cache.has('a', T + 2)).toBe(true)
    // Once the oldest expires there is room again.
    expect(cache.add('c', T + REPLAY_TTL_MS + 1)).toBe('added')
    expect(cache.has('a', T + REPLAY_TTL_MS + 1)).toBe(false)
    expect(cache.has('b', T + REPLAY_TTL_MS + 1)).toBe(true)
  })

  it('keeps entries longer, never shorter, when the clock steps back', () => {
    const cache = new MemoryReplayCache()
    cache.add('late', T + 1000)
    cache.add('early', T)
    expect(cache.has('late', T + 1000 + REPLAY_TTL_MS)).toBe(true)
    expect(cache.has('early', T + REPLAY_TTL_MS)).toBe(true)
    expect(cache.has('early', T + REPLAY_TTL_MS + 1)).toBe(false)
  })

  it('refuses a TTL shorter than the timestamp window and other bad options (caller bugs)', () => {
    expect(() => new MemoryReplayCache({ ttlMs: REPLAY_TTL_MS - 1 })).toThrow(RangeError)
    expect(() => new MemoryReplayCache({ maxEntries: 0 })).toThrow(RangeError)
    expect(() => new MemoryReplayCache({ maxEntries: 1.5 })).toThrow(RangeError)
    expect(() => new MemoryReplayCache().add('', T)).toThrow(TypeError)
    expect(() => new MemoryReplayCache().has('n', Number.NaN)).toThrow(TypeError)
  })
})
