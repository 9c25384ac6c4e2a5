import { describe, expect, it, vi } from 'vitest'
import { MemoryAppStore } from './memory-store.ts'
import { forgetLegacyStorage, openAppStore } from './open-store.ts'

/** A Storage over a Map (Node has no localStorage). */
function storage(entries: Record<string, string>): Storage {
  const map = new Map(Object.entries(entries))
  return {
    get length() {
      return map.size
    },
    key: (i) => [...map.keys()][i] ?? null,
    getItem: (k) => map.get(k) ?? null,
    setItem: (k, v) => void map.set(k, v),
    removeItem: (k) => void map.delete(k),
    clear: () => map.clear(),
  }
}

describe('legacy localStorage', () => {
  it('revokes the old plaintext session and deletes every parley: key, leaving others alone', async () => {
    const s = storage({
      'parley:session': JSON.stringify({ base_url: 'http://127.0.0.1:8008', access_token: 'old-token' }),
      'parley:outbox': '[]',
      'parley:item:draft:!x': 'draft',
      'other-app': 'keep',
    })
    const fetchFn = vi.fn(async () => ({}))
    await forgetLegacyStorage(s, fetchFn)
    expect(fetchFn).toHaveBeenCalledWith('http://127.0.0.1:8008/api/v1/logout', {
      method: 'POST',
      headers: { authorization: 'Bearer old-token' },
    })
    expect(s.length).toBe(1)
    expect(s.getItem('other-app')).toBe('keep')
  })

  it('deletes without calling anyone when the session is unreadable or points elsewhere than http(s)', async () => {
    for (const session of [
      'not json',
      JSON.stringify({ base_url: 'javascript:alert(1)', access_token: 't' }),
    ]) {
      const s = storage({ 'parley:session': session })
      const fetchFn = vi.fn(async () => ({}))
      await forgetLegacyStorage(s, fetchFn)
      expect(fetchFn).not.toHaveBeenCalled()
      expect(s.length).toBe(0)
    }
    const failing = storage({ 'parley:session': JSON.stringify({ base_url: 'http://x', access_token: 't' }) })
    await forgetLegacyStorage(failing, async () => Promise.reject(new Error('offline')))
    expect(failing.length).toBe(0)
  })
})

describe('openAppStore', () => {
  it('keeps nothing on a desktop without a keychain, and says so', async () => {
    const opened = await openAppStore({ platform: 'desktop', cacheKey: async () => null })
    expect(opened.persistent).toBe(false)
    expect(opened.store).toBeInstanceOf(MemoryAppStore)
  })

  it('falls back to memory when the cache cannot be opened (no IndexedDB here)', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const opened = await openAppStore({ platform: 'web', cacheKey: async () => null })
    expect(opened.persistent).toBe(false)
    expect(warn).toHaveBeenCalledOnce()
    warn.mockRestore()
  })
})
