/**
 * Main process. The key of the renderer's encrypted local cache: 32 random bytes (base64url), created
 * on first request and kept, encrypted by the OS keychain, in the secret store; the same key on every
 * later call and run. Without a real keychain there is no key (null): the renderer then falls back to
 * its web-mode key, rather than the shell writing a key to disk that anyone could read.
 */
import { randomBytes } from 'node:crypto'
import { isCacheKey } from '../shared/bridge-values.ts'
import type { SecretStore } from './secret-store.ts'

/**
 * The cache key's name in the secret store. The colon keeps it out of the names the renderer may read
 * or overwrite with secretGet/secretSet (`[a-z0-9_.-]`).
 */
export const CACHE_KEY_SECRET = 'shell:cache-key'

export interface KeychainState {
  /** `safeStorage.isEncryptionAvailable()` */
  readonly encryptionAvailable: boolean
  readonly platform: NodeJS.Platform
  /** `safeStorage.getSelectedStorageBackend()` on Linux; ignored elsewhere. */
  readonly linuxBackend?: string
}

/**
 * Whether safeStorage really protects what it encrypts. On Linux without a keyring (or with
 * `--password-store=basic`) it reports itself available but uses `basic_text`, a fixed password in
 * Chromium's source: as good as plaintext. `unknown` means the app is not ready yet.
 */
export function keychainUsable(state: KeychainState): boolean {
  if (!state.encryptionAvailable) return false
  if (state.platform !== 'linux') return true
  return (
    state.linuxBackend !== undefined &&
    state.linuxBackend !== 'basic_text' &&
    state.linuxBackend !== 'unknown'
  )
}

/**
 * `cacheKey()` for the IPC handler. Concurrent first calls share one creation, so they cannot each
 * store a different key. A stored key the keychain cannot decrypt (a locked or replaced keyring) is
 * left alone and null returned, since a new key would make the cache unreadable for good; a stored value
 * that decrypts but is no key is replaced.
 */
export function cacheKeyProvider(
  store: SecretStore,
  keychainReady: () => boolean,
  random: (size: number) => Uint8Array = randomBytes,
): () => Promise<string | null> {
  let key: Promise<string | null> | null = null

  async function loadOrCreate(): Promise<string | null> {
    let stored: string | null
    try {
      stored = await store.get(CACHE_KEY_SECRET)
    } catch {
      return null
    }
    if (isCacheKey(stored)) return stored
    const bytes = random(32)
    if (bytes.length !== 32) throw new Error('cache key: need 32 random bytes')
    const fresh = Buffer.from(bytes).toString('base64url')
    await store.set(CACHE_KEY_SECRET, fresh)
    return fresh
  }

  return () => {
    if (!keychainReady()) return Promise.resolve(null)
    if (key === null) {
      const pending = loadOrCreate()
      key = pending
      // Only a key is remembered: after a null or a failure the next call tries again.
      pending.then(
        (value) => {
          if (value === null && key === pending) key = null
        },
        () => {
          if (key === pending) key = null
        },
      )
    }
    return key
  }
}
