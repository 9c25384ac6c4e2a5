import { describe, expect, it } from 'vitest'
import { deriveCacheKeys, generateSecret, importSecret, openValue, recordName, sealValue } from './seal.ts'

const secret = () => Uint8Array.from({ length: 32 }, (_, i) => i)

describe('cache sealing', () => {
  it('opens what it sealed, for the same slot only', async () => {
    const keys = await deriveCacheKeys(await importSecret(secret()))
    const value = { body: 'hello', n: 1 }
    const sealed = await sealValue(keys, 'timeline:!a', value)
    expect(await openValue(keys, 'timeline:!a', sealed)).toEqual(value)
    expect(await openValue(keys, 'timeline:!b', sealed)).toBeUndefined()
  })

  it('refuses a flipped bit, another key, and things that are not records', async () => {
    const keys = await deriveCacheKeys(await importSecret(secret()))
    const sealed = await sealValue(keys, 'session', { token: 'x' })
    const ct = new Uint8Array(sealed.ct.slice(0))
    ct[3]! ^= 1
    expect(await openValue(keys, 'session', { iv: sealed.iv, ct: ct.buffer })).toBeUndefined()
    const iv = sealed.iv.slice()
    iv[0]! ^= 1
    expect(await openValue(keys, 'session', { iv, ct: sealed.ct })).toBeUndefined()
    const other = await deriveCacheKeys(await generateSecret())
    expect(await openValue(other, 'session', sealed)).toBeUndefined()
    for (const junk of [null, 'x', {}, { iv: new Uint8Array(11), ct: sealed.ct }, { iv: sealed.iv, ct: 'x' }])
      expect(await openValue(keys, 'session', junk)).toBeUndefined()
  })

  it('never writes plaintext and uses a fresh nonce per write', async () => {
    const keys = await deriveCacheKeys(await importSecret(secret()))
    const a = await sealValue(keys, 'item:draft', 'canary-plaintext')
    const b = await sealValue(keys, 'item:draft', 'canary-plaintext')
    expect(Buffer.from(a.iv).equals(Buffer.from(b.iv))).toBe(false)
    expect(Buffer.from(a.ct).includes('canary')).toBe(false)
  })

  it('names records by a keyed MAC: stable for one key, unlinkable across keys, no slot text', async () => {
    const keys = await deriveCacheKeys(await importSecret(secret()))
    const again = await deriveCacheKeys(await importSecret(secret()))
    const other = await deriveCacheKeys(await generateSecret())
    const name = await recordName(keys, 'timeline:!room:acme.example')
    expect(name).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(await recordName(again, 'timeline:!room:acme.example')).toBe(name)
    expect(await recordName(other, 'timeline:!room:acme.example')).not.toBe(name)
    expect(await recordName(keys, 'timeline:!other:acme.example')).not.toBe(name)
  })

  it('zeroes the secret bytes once imported and refuses a wrong length', async () => {
    const bytes = secret()
    await importSecret(bytes)
    expect(bytes.every((b) => b === 0)).toBe(true)
    await expect(importSecret(new Uint8Array(16))).rejects.toThrow(/32 bytes/)
  })
})
