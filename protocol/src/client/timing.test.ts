import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import { DEFAULT_BACKOFF, backoffDelay } from './timing.ts'

describe('backoffDelay', () => {
  it('draws from [0, min(cap, base * 2^attempt)) with full jitter', () => {
    const ceilings = [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]
    ceilings.forEach((ceiling, attempt) => {
      expect(backoffDelay(attempt, () => 0)).toBe(0)
      expect(backoffDelay(attempt, () => 0.5)).toBe(ceiling / 2)
      expect(backoffDelay(attempt, () => 0.999_999_9)).toBe(ceiling - 1)
    })
  })

  test.prop([fc.nat({ max: 10_000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })])(
    'stays within bounds for any attempt and random value',
    (attempt, r) => {
      const delay = backoffDelay(attempt, () => r)
      const ceiling = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** Math.min(attempt, 31))
      expect(Number.isInteger(delay)).toBe(true)
      expect(delay).toBeGreaterThanOrEqual(0)
      expect(delay).toBeLessThan(ceiling)
    },
  )

  it('clamps a misbehaving random source and rejects a negative attempt', () => {
    expect(backoffDelay(0, () => 1)).toBe(499)
    expect(backoffDelay(0, () => -3)).toBe(0)
    expect(() => backoffDelay(-1, Math.random)).toThrow(RangeError)
    expect(() => backoffDelay(1.5, Math.random)).toThrow(RangeError)
  })
})
