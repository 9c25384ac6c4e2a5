/**
 * The link between the bench orchestrator and its load workers: Node IPC (structured clone).
 * The orchestrator calls a worker method and waits for its result; while a method runs, the worker
 * asks the orchestrator to `mark` the start and end of the measured window, so server CPU, event-loop
 * delay and the CPU profile cover exactly that window.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { LoadMethods } from './load.ts'
import { pinned, raiseFdLimit, track } from './procs.ts'

export type MarkName = 'start' | 'end'

type ToWorker =
  { kind: 'call'; id: number; method: string; params: unknown } | { kind: 'mark-done'; id: number }
type FromWorker =
  | { kind: 'ready'; id: 0 }
  | { kind: 'result'; id: number; ok: true; value: unknown }
  | { kind: 'result'; id: number; ok: false; error: string }
  | { kind: 'mark'; id: number; name: MarkName }

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null
}

function isFromWorker(v: unknown): v is FromWorker {
  if (!isObject(v) || typeof v.id !== 'number') return false
  if (v.kind === 'mark') return v.name === 'start' || v.name === 'end'
  return v.kind === 'ready' || (v.kind === 'result' && typeof v.ok === 'boolean')
}

function isToWorker(v: unknown): v is ToWorker {
  if (!isObject(v) || typeof v.id !== 'number') return false
  return (v.kind === 'call' && typeof v.method === 'string') || v.kind === 'mark-done'
}

export type Params<M extends keyof LoadMethods> = Parameters<LoadMethods[M]>[0]
export type Result<M extends keyof LoadMethods> = Awaited<ReturnType<LoadMethods[M]>>

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url))

/** Orchestrator side: one load-generator process. */
export class LoadWorker {
  #nextId = 1
  readonly #calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()
  /** Called when the running method marks its measured window; the method waits for it. */
  onMark: (name: MarkName) => Promise<void> = async () => {}
  #exited: string | null = null
  #ready: () => void = () => {}
  /** Resolves once the worker serves calls (IPC sent before that could be lost). */
  readonly ready = new Promise<void>((resolve) => (this.#ready = resolve))

  private constructor(readonly child: ChildProcess) {
    child.on('message', (msg) => this.#message(msg))
    child.on('exit', (code, signal) => {
      this.#exited = `load worker exited (${signal ?? code})`
      for (const c of this.#calls.values()) c.reject(new Error(this.#exited))
      this.#calls.clear()
    })
  }

  /** Starts a worker pinned to `core` (when taskset exists). */
  static spawn(core: number | null): LoadWorker {
    const cmd = pinned(core, [process.execPath, '--import', 'tsx', WORKER])
    const child = spawn('sh', raiseFdLimit(cmd), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
    })
    track(child)
    return new LoadWorker(child)
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  call<M extends keyof LoadMethods>(method: M, params: Params<M>, timeoutMs: number): Promise<Result<M>> {
    if (this.#exited) return Promise.reject(new Error(this.#exited))
    const id = this.#nextId++
    return new Promise<Result<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#calls.delete(id)
        reject(new Error(`load worker: ${method} did not finish within ${Math.round(timeoutMs / 1000)} s`))
      }, timeoutMs)
      this.#calls.set(id, {
        // The worker is our own child running the typed method table: its structured-clone result
        // has the method's return type by construction.
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v as Result<M>)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.ready.then(
        () => this.#send({ kind: 'call', id, method, params }),
        () => {},
      )
    })
  }

  /** Ends the worker (it closes its sockets on disconnect). */
  stop(): void {
    if (this.child.connected) this.child.disconnect()
    setTimeout(() => this.child.kill('SIGKILL'), 2000).unref()
  }

  #send(msg: ToWorker): void {
    if (this.child.connected) this.child.send(msg)
  }

  #message(msg: unknown): void {
    if (!isFromWorker(msg)) return
    if (msg.kind === 'ready') return this.#ready()
    if (msg.kind === 'mark') {
      this.onMark(msg.name).then(
        () => this.#send({ kind: 'mark-done', id: msg.id }),
        (err: unknown) => {
          console.error(`mark ${msg.name} failed: ${String(err)}`)
          this.#send({ kind: 'mark-done', id: msg.id })
        },
      )
      return
    }
    const call = this.#calls.get(msg.id)
    if (!call) return
    this.#calls.delete(msg.id)
    if (msg.ok) call.resolve(msg.value)
    else call.reject(new Error(msg.error))
  }
}

// ---- worker side ----

let markId = 0
const markWaiters = new Map<number, () => void>()

/** Worker side: asks the orchestrator to mark the measured window; resolves once it has. */
export function mark(name: MarkName): Promise<void> {
  if (!process.send) return Promise.resolve()
  const id = ++markId
  return new Promise((resolve) => {
    markWaiters.set(id, resolve)
    process.send!({ kind: 'mark', id, name } satisfies FromWorker)
  })
}

/** Worker side: answers calls with `methods` until the orchestrator disconnects. */
export function serve(
  methods: Record<string, (params: never) => Promise<unknown>>,
  onExit: () => void,
): void {
  process.on('message', (msg: unknown) => {
    if (!isToWorker(msg)) return
    if (msg.kind === 'mark-done') {
      markWaiters.get(msg.id)?.()
      markWaiters.delete(msg.id)
      return
    }
    const method = methods[msg.method]
    const reply = (r: FromWorker) => process.send?.(r)
    if (!method) return reply({ kind: 'result', id: msg.id, ok: false, error: `no method ${msg.method}` })
    // params come from the orchestrator's typed `call`.
    method(msg.params as never).then(
      (value) => reply({ kind: 'result', id: msg.id, ok: true, value }),
      (err: unknown) =>
        reply({
          kind: 'result',
          id: msg.id,
          ok: false,
          error: err instanceof Error ? (err.stack ?? err.message) : String(err),
        }),
    )
  })
  process.on('disconnect', () => {
    onExit()
    process.exit(0)
  })
  process.send?.({ kind: 'ready', id: 0 } satisfies FromWorker)
}
