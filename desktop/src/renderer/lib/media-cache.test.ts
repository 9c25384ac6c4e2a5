import { describe, expect, it } from 'vitest'
import { MediaCache } from './media-cache.ts'

const blob = (size: number) => ({ size })

describe('MediaCache', () => {
  it('loads once per key, also for concurrent requests', async () => {
    const cache = new MediaCache<{ size: number }>(10, 1000)
    let loads = 0
    const load = async () => (loads++, blob(10))
    const [a, b] = await Promise.all([cache.get('k', load), cache.get('k', load)])
    expect(a).toBe(b)
    await cache.get('k', load)
    expect(loads).toBe(1)
    expect(cache.bytes).toBe(10)
  })

  it('forgets failures, so the next request loads again', async () => {
    const cache = new MediaCache<{ size: number }>(10, 1000)
    await expect(cache.get('k', () => Promise.reject(new Error('offline')))).rejects.toThrow('offline')
    expect(cache.count).toBe(0)
    expect(await cache.get('k', async () => blob(5))).toEqual(blob(5))
  })

  it('evicts the least recently used entries beyond its count and byte bounds', async () => {
    const cache = new MediaCache<{ size: number }>(3, 100)
    for (const key of ['a', 'b', 'c']) await cache.get(key, async () => blob(30))
    await cache.get('a', async () => blob(999)) // a hit: now the most recently used
    await cache.get('d', async () => blob(30)) // over 100 bytes: b goes
    const reloaded: string[] = []
    const probe = (key: string) => cache.get(key, async () => (reloaded.push(key), blob(1)))
    await probe('a')
    await probe('b')
    expect(reloaded).toEqual(['b'])
    expect(cache.count).toBeLessThanOrEqual(3)
    expect(cache.bytes).toBeLessThanOrEqual(100)
  })

  it('keeps one entry larger than the whole budget until the next arrives', async () => {
    const cache = new MediaCache<{ size: number }>(3, 100)
    await cache.get('big', async () => blob(500))
    expect(cache.count).toBe(1)
    await cache.get('small', async () => blob(1))
    expect(cache.count).toBe(1)
    expect(cache.bytes).toBe(1)
  })
})
