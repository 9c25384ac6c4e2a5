/**
 * Durability off the event loop. SQLite commits with `synchronous=NORMAL` (no fsync inside COMMIT);
 * the sequencer then `fdatasync`s the WAL on libuv's thread pool before anything is acked. That is
 * the guarantee of `synchronous=FULL` (every acked commit survives power loss) without blocking the
 * loop, and one fsync covers every batch committed before it started. A WAL only grows by appending
 * frames and recovery keeps its valid prefix, so syncing the file after commit N makes 1..N durable.
 */
import { closeSync, fdatasync, fsyncSync, openSync } from 'node:fs'
import { dirname } from 'node:path'

export class WalSync {
  readonly #fd: number
  #pending = 0
  #closed = false

  /** `walPath` must exist (the database has been opened in WAL mode and written). */
  constructor(walPath: string) {
    this.#fd = openSync(walPath, 'r')
    // The WAL's directory entry must be durable too, once.
    const dir = openSync(dirname(walPath), 'r')
    try {
      fsyncSync(dir)
    } finally {
      closeSync(dir)
    }
  }

  /** Resolves once everything written to the WAL before this call is on stable storage. */
  sync(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('WAL sync closed'))
    this.#pending++
    return new Promise((resolve, reject) =>
      fdatasync(this.#fd, (err) => {
        if (--this.#pending === 0 && this.#closed) closeSync(this.#fd)
        if (err) reject(err)
        else resolve()
      }),
    )
  }

  /** Stops accepting syncs; the file closes once the last one finishes. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#pending === 0) closeSync(this.#fd)
  }
}
