/**
 * Which store the app gets. The desktop app keeps its cache only under a key from the OS keychain: if
 * the shell has none (Linux without a keyring, a locked keychain), nothing is persisted at all and
 * the user is told so, rather than keeping tokens under a key stored next to them. The web client
 * uses a key kept in the browser profile (see docs/desktop.md "Local cache" for what that is worth).
 */
import type { AppStore } from '../chat.svelte.ts'
import type { DesktopApi } from '../desktop-api.ts'
import { EncryptedStore } from './encrypted-store.ts'
import { MemoryAppStore } from './memory-store.ts'

export interface OpenedStore {
  readonly store: AppStore
  /** False when nothing survives a restart (no keychain on the desktop, or no IndexedDB). */
  readonly persistent: boolean
}

export async function openAppStore(desktop: Pick<DesktopApi, 'platform' | 'cacheKey'>): Promise<OpenedStore> {
  try {
    if (desktop.platform === 'desktop') {
      const key = await desktop.cacheKey()
      if (key === null) return { store: new MemoryAppStore(), persistent: false }
      return { store: await EncryptedStore.open(async () => key), persistent: true }
    }
    return { store: await EncryptedStore.open(async () => null), persistent: true }
  } catch (error) {
    console.warn('local cache unavailable, nothing will be kept across restarts:', String(error))
    return { store: new MemoryAppStore(), persistent: false }
  }
}

/**
 * Earlier versions of the web client kept the session (tokens), outbox and drafts in plaintext
 * `localStorage` under `parley:`. Revoke that session's device (best effort) and delete all of it.
 */
export async function forgetLegacyStorage(
  storage: Storage,
  fetchFn: (url: string, init: RequestInit) => Promise<unknown> = fetch,
): Promise<void> {
  const keys: string[] = []
  for (let i = 0; i < storage.length; i++) {
    const key = storage.key(i)
    if (key?.startsWith('parley:')) keys.push(key)
  }
  if (keys.length === 0) return
  try {
    const session = JSON.parse(storage.getItem('parley:session') ?? 'null') as unknown
    if (session && typeof session === 'object') {
      const { base_url: base, access_token: token } = session as Record<string, unknown>
      if (typeof base === 'string' && typeof token === 'string' && /^https?:\/\//.test(base))
        await fetchFn(new URL('/api/v1/logout', base).toString(), {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
        }).catch(() => {})
    }
  } catch {
    // Unreadable: nothing to revoke; delete it all the same.
  }
  for (const key of keys) storage.removeItem(key)
}
