/** Schedules WAL checkpoints in a worker thread (see checkpoint-worker.mjs). */
import { Worker } from 'node:worker_threads'
import type { Logger } from '../logger.ts'

export class Checkpointer {
  readonly #worker: Worker
  readonly #timer: ReturnType<typeof setInterval>
  #dirty = false
  #busy = false
  #closed: Promise<void> | null = null

  constructor(dbPath: string, intervalMs: number, log: Logger) {
    this.#worker = new Worker(new URL('./checkpoint-worker.mjs', import.meta.url), {
      workerData: { path: dbPath },
    })
    this.#worker.on('message', (m: { ok: boolean; error?: string }) => {
      this.#busy = false
      if (!m.ok) log.warn({ error: m.error }, 'checkpoint failed')
    })
    this.#worker.on('error', (err) => log.error({ err: String(err) }, 'checkpoint worker failed'))
    this.#worker.unref()
    this.#timer = setInterval(() => this.#tick(), intervalMs)
    this.#timer.unref()
  }

  /** Something was committed since the last checkpoint. */
  markDirty(): void {
    this.#dirty = true
  }

  #tick(): void {
    if (!this.#dirty || this.#busy) return
    this.#dirty = false
    this.#busy = true
    this.#worker.postMessage('checkpoint')
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      clearInterval(this.#timer)
      this.#worker.once('exit', () => resolve())
      // Keep the process alive until the worker has closed its connection.
      this.#worker.ref()
      this.#worker.postMessage('close')
    })
    return this.#closed
  }
}
