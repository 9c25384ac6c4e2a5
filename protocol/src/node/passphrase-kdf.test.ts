import { beforeAll, describe, expect, it } from 'vitest'
import * as e2e from '../crypto/e2e/index.ts'
import { sodiumReady } from '../crypto/sodium.ts'
import { nodePassphraseKdf } from './passphrase-kdf.ts'

/** The lowest cost the crypto core accepts: 1 pass, 64 MiB. */
const cheap = () => e2e.newPassphraseKdfParams({ opslimit: 1, memlimit: e2e.MIN_PWHASH_MEMLIMIT })

describe('nodePassphraseKdf', () => {
  beforeAll(() => sodiumReady())

  it('derives the same key as the crypto core (NFKC passphrase, argon2id13)', async () => {
    const params = cheap()
    // "ﬁ" (U+FB01) normalises to "fi" under NFKC: both spellings give one key.
    const key = await nodePassphraseKdf().derive('ﬁne passphrase', params)
    expect(key).toEqual(e2e.derivePassphraseKey('fine passphrase', params))
    expect(key).not.toEqual(e2e.derivePassphraseKey('fine passphrasf', params))
  })

  it('runs off the calling thread: the event loop keeps turning while argon2id works', async () => {
    const params = cheap()
    let turns = 0
    let spinning = true
    const spin = () => {
      turns++
      if (spinning) setImmediate(spin)
    }
    setImmediate(spin)
    const started = performance.now()
    await nodePassphraseKdf().derive('passphrase', params)
    const ms = performance.now() - started
    spinning = false
    // Inline, the loop could not turn at all until the derivation returned.
    expect(turns).toBeGreaterThan(10)
    console.info(`worker argon2id (1 pass, 64 MiB): ${ms.toFixed(0)} ms, ${turns} event-loop turns meanwhile`)
  })

  it('refuses parameters outside the accepted range before starting a worker', async () => {
    const params = { ...cheap(), memlimit: 32 * 1024 * 1024 }
    await expect(nodePassphraseKdf().derive('passphrase', params)).rejects.toMatchObject({
      code: 'bad_input',
    })
    await expect(nodePassphraseKdf().derive('', cheap())).rejects.toMatchObject({ code: 'bad_input' })
  })
})
