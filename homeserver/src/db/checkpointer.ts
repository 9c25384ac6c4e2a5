/**
 * Schedules WAL checkpoints in a worker thread (see checkpoint-worker.mjs). A worker that dies is
 * replaced on the next tick; until then the inline autocheckpoint bounds the WAL.
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from '../logger.ts'

export class Checkpointer {
  #worker: Worker | null = null
  readonly #timer: ReturnType<typeof setInterval>
  #dirty = false
  #busy = false
  #closing = false
  #closed: Promise<void> | null = null

  constructor(
    private readonly dbPath: string,
    intervalMs: number,
    private readonly log: Logger,
  ) {
    this.#spawn()
    this.#timer = setInterval(() => this.#tick(), intervalMs)
    this.#timer.unref()
  }

  #spawn(): Worker {
    const worker = new Worker(new URL('./checkpoint-worker.mjs', import.meta.url), {
      workerData: { path: this.dbPath },
    })
    worker.on('message', (m: { ok: boolean; error?: string }) => {
      this.#busy = false
      if (!m.ok) this.log.warn({ error: m.error }, 'checkpoint failed')
    })
    worker.on('error', (err) => this.log.error({ err: String(err) }, 'checkpoint worker failed'))
    worker.on('exit', () => {
      if (this.#worker !== worker) return
      this.#worker = null
      this.#busy = false
      if (!this.#closing) this.log.error('checkpoint worker exited; restarting it on the next tick')
    })
    worker.unref()
    this.#worker = worker
    return worker
  }

  /** Something was committed since the last checkpoint. */
  markDirty(): void {
    this.#dirty = true
  }

  #tick(): void {
    if (!this.#dirty || this.#busy || this.#closing) return
    const worker = this.#worker ?? this.#spawn()
    this.#dirty = false
    this.#busy = true
    worker.postMessage('checkpoint')
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#closing = true
      clearInterval(this.#timer)
      const worker = this.#worker
      if (!worker) return resolve()
      worker.once('exit', () => resolve())
      // Keep the process alive until the worker has closed its connection.
      worker.ref()
      worker.postMessage('close')
    })
    return this.#closed
  }
}
