/**
 * Downloaded attachments kept in memory, least recently used first out (renderer process; no DOM).
 * The timeline is virtualised: an image row mounts each time it scrolls into view, and must not
 * download its image again each time. The cache holds the bytes (Blobs), not object URLs: a row makes
 * its own `blob:` URL when it mounts and revokes it when it leaves the DOM, so no URL outlives the
 * element showing it. Concurrent requests for one key share one download; failures are not kept.
 */

/** What the cache needs of a value: its size in bytes. */
export interface Sized {
  readonly size: number
}

export class MediaCache<V extends Sized> {
  /** Most recently used last. */
  readonly #entries = new Map<string, { value: Promise<V>; size: number }>()
  #bytes = 0

  constructor(
    readonly maxEntries: number,
    readonly maxBytes: number,
  ) {}

  /** The value for `key`, loading it with `load` unless it is cached or being loaded. */
  get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.#entries.get(key)
    if (hit) {
      this.#entries.delete(key)
      this.#entries.set(key, hit)
      return hit.value
    }
    const entry = { value: load(), size: 0 }
    this.#entries.set(key, entry)
    entry.value.then(
      (v) => {
        if (this.#entries.get(key) !== entry) return
        entry.size = v.size
        this.#bytes += v.size
        this.#evict()
      },
      () => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key)
      },
    )
    return entry.value
  }

  /** Entries held (loaded or loading). */
  get count(): number {
    return this.#entries.size
  }

  /** Bytes held by loaded entries. */
  get bytes(): number {
    return this.#bytes
  }

  clear(): void {
    this.#entries.clear()
    this.#bytes = 0
  }

  /** Drops the least recently used entries while over either bound, keeping at least the newest. */
  #evict(): void {
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= 1 || (this.#entries.size <= this.maxEntries && this.#bytes <= this.maxBytes))
        return
      this.#entries.delete(key)
      this.#bytes -= entry.size
    }
  }
}
