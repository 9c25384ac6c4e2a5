import { describe, expect, it } from 'vitest'
import { sodium, sodiumReady } from '../sodium.ts'
import { E2eError } from './errors.ts'
import { runSelfTest } from './self-test.ts'

await sodiumReady()

// E2E.md section 3 row 1: the vectors themselves are checked one by one in primitives.test.ts; this is
// the start-up check every client runs (also in the renderer: desktop/test/e2e-ui.test.ts).
describe('known-answer self-test', () => {
  it('passes on a correct libsodium', () => {
    expect(() => runSelfTest()).not.toThrow()
  })

  it('fails closed, naming the primitive, when one gives a wrong answer', () => {
    const lib = sodium()
    const real = lib.crypto_generichash
    const wrong = (length: number, message: Uint8Array, key: Uint8Array | null) => {
      const out = real(length, message, key)
      out[0]! ^= 1
      return out
    }
    lib.crypto_generichash = wrong as unknown as typeof real
    try {
      let caught: unknown
      try {
        runSelfTest()
      } catch (error) {
        caught = error
      }
      expect(caught).toBeInstanceOf(E2eError)
      expect((caught as E2eError).code).toBe('self_test_failed')
      expect((caught as E2eError).message).toContain('BLAKE2b-512')
    } finally {
      lib.crypto_generichash = real
    }
  })
})
