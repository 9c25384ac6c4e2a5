/**
 * The secret store and the cache key (secret-store.ts, cache-key.ts) on a real temp directory, with a
 * stand-in keychain (the real one is Electron's safeStorage).
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { IPC, IPC_ARGS } from '../shared/desktop-api.ts'
import { CACHE_KEY_SECRET, cacheKeyProvider, keychainUsable } from './cache-key.ts'
import { SecretStore, type Keychain } from './secret-store.ts'

/** "Encrypts" by XOR with a byte: enough to tell ciphertext from plaintext on disk. */
const xorKeychain = (mask = 0x5a): Keychain => ({
  encrypt: (plain) => Buffer.from(plain, 'utf8').map((b) => b ^ mask),
  decrypt: (cipher) => Buffer.from(cipher.map((b) => b ^ mask)).toString('utf8'),
})
const brokenKeychain: Keychain = {
  encrypt: () => {
    throw new Error('keyring locked')
  },
  decrypt: () => {
    throw new Error('keyring locked')
  },
}

let dir: string
let file: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-secrets-'))
  file = join(dir, 'secrets.json')
})
afterEach(() => rm(dir, { recursive: true, force: true }))

describe('keychain check', () => {
  it('trusts safeStorage on macOS and Windows when it is available', () => {
    expect(keychainUsable({ encryptionAvailable: true, platform: 'darwin' })).toBe(true)
    expect(keychainUsable({ encryptionAvailable: true, platform: 'win32' })).toBe(true)
    expect(keychainUsable({ encryptionAvailable: false, platform: 'darwin' })).toBe(false)
  })
  it('on Linux only with a real keyring, not basic_text or before ready', () => {
    for (const backend of ['gnome_libsecret', 'kwallet', 'kwallet5', 'kwallet6'])
      expect(
        keychainUsable({ encryptionAvailable: true, platform: 'linux', linuxBackend: backend }),
        backend,
      ).toBe(true)
    for (const backend of ['basic_text', 'unknown', undefined])
      expect(
        keychainUsable({ encryptionAvailable: true, platform: 'linux', linuxBackend: backend }),
        backend,
      ).toBe(false)
    expect(keychainUsable({ encryptionAvailable: false, platform: 'linux', linuxBackend: 'kwallet5' })).toBe(
      false,
    )
  })
})

describe('secret store', () => {
  it('round-trips secrets through the keychain, with only ciphertext in a 0600 file', async () => {
    const store = new SecretStore(file, xorKeychain())
    expect(await store.get('session')).toBeNull()
    await store.set('session', 'token-abc')
    await store.set('other', 'value-xyz')
    expect(await store.get('session')).toBe('token-abc')
    const text = await readFile(file, 'utf8')
    expect(text).not.toContain('token-abc')
    expect(text).not.toContain('value-xyz')
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect(await new SecretStore(file, xorKeychain()).get('other')).toBe('value-xyz')
  })

  it('starts empty from an unreadable or malformed file', async () => {
    for (const text of ['not json', '[1,2]', '{"a":1}', 'null']) {
      await writeFile(file, text)
      expect(await new SecretStore(file, xorKeychain()).get('a'), text).toBeNull()
    }
  })

  it('does not keep in use a secret it failed to write, and leaves no temp file behind on success', async () => {
    const store = new SecretStore(file, xorKeychain())
    await store.set('kept', 'old')
    expect(await readdir(dir)).toEqual(['secrets.json'])
    await rm(dir, { recursive: true, force: true }) // the directory is gone: the write fails
    await expect(store.set('kept', 'new')).rejects.toThrow()
    await expect(store.set('fresh', 'x')).rejects.toThrow()
    expect(await store.get('kept')).toBe('old')
    expect(await store.get('fresh')).toBeNull()
  })

  it('keeps every secret when writes overlap', async () => {
    const store = new SecretStore(file, xorKeychain())
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.set(`k${i}`, `v${i}`)))
    const reread = new SecretStore(file, xorKeychain())
    for (let i = 0; i < 10; i++) expect(await reread.get(`k${i}`)).toBe(`v${i}`)
  })
})

describe('cache key', () => {
  it('is 32 random bytes as base64url, created once, kept encrypted, the same on later calls and runs', async () => {
    const random = vi.fn((size: number): Uint8Array => randomBytes(size))
    const cacheKey = cacheKeyProvider(new SecretStore(file, xorKeychain()), () => true, random)
    const key = await cacheKey()
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(Buffer.from(key!, 'base64url')).toHaveLength(32)
    expect(await cacheKey()).toBe(key)
    expect(random).toHaveBeenCalledOnce()
    expect(await readFile(file, 'utf8')).not.toContain(key)
    // The next run: a new store and provider on the same file.
    const nextRun = cacheKeyProvider(new SecretStore(file, xorKeychain()), () => true, random)
    expect(await nextRun()).toBe(key)
    expect(random).toHaveBeenCalledOnce()
  })

  it('creates one key for concurrent first calls', async () => {
    const random = vi.fn((size: number): Uint8Array => randomBytes(size))
    const cacheKey = cacheKeyProvider(new SecretStore(file, xorKeychain()), () => true, random)
    const keys = await Promise.all([cacheKey(), cacheKey(), cacheKey()])
    expect(new Set(keys).size).toBe(1)
    expect(random).toHaveBeenCalledOnce()
  })

  it('is null without a usable keychain, and nothing is written', async () => {
    const random = vi.fn((size: number): Uint8Array => randomBytes(size))
    const cacheKey = cacheKeyProvider(new SecretStore(file, xorKeychain()), () => false, random)
    expect(await cacheKey()).toBeNull()
    expect(random).not.toHaveBeenCalled()
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('is null while the stored key cannot be decrypted, and keeps that key for when it can', async () => {
    const key = await cacheKeyProvider(new SecretStore(file, xorKeychain()), () => true)()
    const before = await readFile(file, 'utf8')
    const locked = cacheKeyProvider(new SecretStore(file, brokenKeychain), () => true)
    expect(await locked()).toBeNull()
    expect(await readFile(file, 'utf8')).toBe(before)
    expect(await cacheKeyProvider(new SecretStore(file, xorKeychain()), () => true)()).toBe(key)
  })

  it('replaces a stored value that decrypts but is not a key', async () => {
    await new SecretStore(file, xorKeychain()).set(CACHE_KEY_SECRET, 'not-a-key')
    const key = await cacheKeyProvider(new SecretStore(file, xorKeychain()), () => true)()
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(await new SecretStore(file, xorKeychain()).get(CACHE_KEY_SECRET)).toBe(key)
  })

  it('is stored under a name the renderer cannot read or overwrite with secretGet/secretSet', () => {
    expect(IPC_ARGS[IPC.secretGet].safeParse([CACHE_KEY_SECRET]).success).toBe(false)
    expect(IPC_ARGS[IPC.secretSet].safeParse([CACHE_KEY_SECRET, 'x']).success).toBe(false)
  })
})
