/**
 * A tiny typed event emitter that runs in Node and browsers alike (no `node:events`).
 * Listeners run synchronously in registration order; one that throws does not stop the others or
 * the emitter's caller: its exception is re-thrown in a microtask, where the platform reports it
 * (like `EventTarget` does).
 */

/** A listener for events whose payload is `T`. */
export type Listener<T> = (payload: T) => void

/**
 * Emitter whose event names and payload types come from `Events` (an interface mapping each event
 * name to its payload type). Subclasses call the protected {@link TypedEmitter.emit}.
 */
export class TypedEmitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>()

  /** Adds a listener; returns a function that removes it again. */
  on<K extends keyof Events>(type: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(type)
    if (!set) {
      set = new Set()
      this.#listeners.set(type, set)
    }
    set.add(listener)
    return () => this.off(type, listener)
  }

  /** Adds a listener that is removed after its first call; returns a function that removes it early. */
  once<K extends keyof Events>(type: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(type, (payload) => {
      off()
      listener(payload)
    })
    return off
  }

  /** Removes a listener added with {@link TypedEmitter.on}. Removing an unknown listener is a no-op. */
  off<K extends keyof Events>(type: K, listener: Listener<Events[K]>): void {
    const set = this.#listeners.get(type)
    if (!set) return
    set.delete(listener)
    if (set.size === 0) this.#listeners.delete(type)
  }

  /** Number of listeners for `type`. */
  listenerCount(type: keyof Events): number {
    return this.#listeners.get(type)?.size ?? 0
  }

  /** Calls every listener of `type` with `payload`, in registration order. */
  protected emit<K extends keyof Events>(type: K, payload: Events[K]): void {
    const set = this.#listeners.get(type)
    if (!set) return
    // Snapshot: listeners added or removed during dispatch take effect from the next emit.
    for (const listener of [...set] as Listener<Events[K]>[]) {
      try {
        listener(payload)
      } catch (error) {
        queueMicrotask(() => {
          throw error
        })
      }
    }
  }
}
