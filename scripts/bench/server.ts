/**
 * The homeserver under test: a child process started through its public CLI (DESIGN.md section 11),
 * pinned to its own core, plus an optional V8 inspector session. The inspector reads what /proc
 * cannot (heap usage after a forced GC, event-loop delay, a CPU profile of the measured window)
 * without changing a line of the server.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { parseConfig } from '../../homeserver/src/config.ts'
import { pinned, raiseFdLimit, track } from './procs.ts'

export type SyncMode = 'FULL' | 'NORMAL'

const BIN = fileURLToPath(new URL('../../homeserver/bin/parley-homeserver.mjs', import.meta.url))

/** Limits that only some versions of the homeserver know; set where the config schema accepts them. */
const OPTIONAL_LIMITS: Record<string, number> = {
  // Set-up registers up to 1,000 users from one address.
  registrationsPerIp: 1_000_000,
  registrationIpRefillMs: 1,
  loginAttemptsPerIp: 1_000_000,
  loginIpRefillMs: 1,
  // The federation catch-up polls a replica's room list every 20 ms.
  restBurst: 1_000_000,
  restRequestsPerSecond: 1_000_000,
}

/** Federation limits that only some versions know (config `federation`). */
const OPTIONAL_FEDERATION_LIMITS: Record<string, number> = {
  framesPerSecond: 1e6,
  frameBurst: 1e6,
}

/** The homeserver configuration every scenario uses: cheap argon2, limits out of the way. */
export function benchConfig(sync: SyncMode): Record<string, unknown> {
  const limits: Record<string, number> = {
    messagesPerSecond: 1e6,
    messageBurst: 1e6,
    framesPerSecond: 1e6,
    frameBurst: 1e6,
    maxConnectionsPerIp: 50_000,
    maxConnectionsPerUser: 50_000,
    // Fan-out to 1,000 sockets must never trip the slow-consumer cut-off of a healthy reader.
    sendBufferBytes: 64 * 1024 * 1024,
  }
  const config = { synchronous: sync, argon2: { memoryKiB: 1024, iterations: 1 }, logLevel: 'warn', limits }
  // Checked with the server's own schema, so the file never carries a key this version refuses.
  const accepts = (l: Record<string, number>) => {
    try {
      parseConfig({ ...config, limits: l, serverName: 'bench.localhost', dataDir: '.' })
      return true
    } catch {
      return false
    }
  }
  if (!accepts(limits)) throw new Error('the homeserver refuses the bench configuration (config.ts changed?)')
  for (const [key, value] of Object.entries(OPTIONAL_LIMITS)) {
    if (accepts({ ...limits, [key]: value })) limits[key] = value
  }
  // The per-peer frame rate of a federation link, out of the way like the per-device limits.
  const federation: Record<string, number> = {}
  for (const [key, value] of Object.entries(OPTIONAL_FEDERATION_LIMITS)) {
    try {
      parseConfig({
        ...config,
        federation: { ...federation, [key]: value },
        serverName: 'b.localhost',
        dataDir: '.',
      })
      federation[key] = value
    } catch {
      // this version has no such limit
    }
  }
  return Object.keys(federation).length > 0 ? { ...config, federation } : config
}

/** Last lines of a stream, for error messages, and how many were warnings or errors. */
class Tail {
  readonly lines: string[] = []
  problems = 0
  #partial = ''

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Buffer): void {
    const parts = (this.#partial + chunk.toString('utf8')).split('\n')
    this.#partial = parts.pop() ?? ''
    for (const line of parts) {
      if (/"level":(40|50|60)\b/.test(line)) this.problems++
      this.lines.push(line)
      if (this.lines.length > 40) this.lines.shift()
      this.onLine(line)
    }
  }
}

export class Homeserver {
  inspector: Inspector | null = null
  #exit: Promise<void>

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    readonly dataDir: string,
    private readonly out: Tail,
    private readonly err: Tail,
  ) {
    this.#exit = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve()
      else child.once('exit', () => resolve())
    })
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  /** Warning and error log lines so far. */
  get logProblems(): number {
    return this.out.problems + this.err.problems
  }

  /**
   * Starts `parley-homeserver start` with `dataDir`, pinned to `core`: `bench.localhost` on a free
   * port unless told otherwise (federation: a name, a port its peers know in advance, `--peer`s).
   */
  static async start(options: {
    dataDir: string
    sync: SyncMode
    core: number | null
    inspect: boolean
    timeoutMs?: number
    serverName?: string
    port?: number
    peers?: Readonly<Record<string, string>>
    /** Merged into the configuration's `federation` section. */
    federation?: Readonly<Record<string, unknown>>
    /** Serve a build of the web client from this directory (`--web-client`: the desktop scenarios). */
    webClientDir?: string
  }): Promise<Homeserver> {
    const { dataDir } = options
    const peers = Object.entries(options.peers ?? {}).flatMap(([name, url]) => ['--peer', `${name}=${url}`])
    const configPath = join(dataDir, 'bench-config.json')
    const config = benchConfig(options.sync)
    if (options.federation) {
      const base = (config.federation ?? {}) as Record<string, unknown>
      config.federation = { ...base, ...options.federation }
    }
    await writeFile(configPath, JSON.stringify(config))
    const node = [process.execPath, ...(options.inspect ? ['--inspect=127.0.0.1:0'] : [])]
    const cmd = pinned(options.core, [
      ...node,
      BIN,
      'start',
      '--server-name',
      options.serverName ?? 'bench.localhost',
      '--host',
      '127.0.0.1',
      '--port',
      String(options.port ?? 0),
      '--data-dir',
      dataDir,
      '--config',
      configPath,
      ...peers,
      ...(options.webClientDir ? ['--web-client', options.webClientDir] : []),
    ])
    const child = spawn('sh', raiseFdLimit(cmd), { stdio: ['ignore', 'pipe', 'pipe'] })
    track(child)
    let url: string | null = null
    let inspectorUrl: string | null = null
    let ready: () => void = () => {}
    const check = () => {
      if (url && (inspectorUrl || !options.inspect)) ready()
    }
    const out = new Tail((line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line)
      if (m && !url) url = m[1]!
      check()
    })
    const err = new Tail((line) => {
      const m = /Debugger listening on (ws:\/\/\S+)/.exec(line)
      if (m && !inspectorUrl) inspectorUrl = m[1]!
      check()
    })
    child.stdout!.on('data', (c: Buffer) => out.push(c))
    child.stderr!.on('data', (c: Buffer) => err.push(c))
    const timeoutMs = options.timeoutMs ?? 60_000
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`homeserver did not print "listening" within ${timeoutMs / 1000} s`)),
          timeoutMs,
        )
        ready = () => {
          clearTimeout(timer)
          resolve()
        }
        child.once('exit', (code, signal) => {
          clearTimeout(timer)
          reject(new Error(`homeserver exited (${signal ?? code}) before listening`))
        })
      })
    } catch (e) {
      child.kill('SIGKILL')
      const tail = [...out.lines, ...err.lines].slice(-20).join('\n')
      throw new Error(`${(e as Error).message}\n${tail}`)
    }
    const server = new Homeserver(child, url!, dataDir, out, err)
    if (inspectorUrl) {
      try {
        server.inspector = await Inspector.connect(inspectorUrl)
      } catch (e) {
        await server.stop()
        throw e
      }
    }
    return server
  }

  /** SIGTERM (graceful: drains, commits, closes the DB); SIGKILL after `graceMs`. */
  async stop(graceMs = 20_000): Promise<void> {
    this.inspector?.close()
    this.inspector = null
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await this.#exit
    clearTimeout(timer)
  }

  /** Recent output, for error reports. */
  output(): string {
    return [...this.out.lines, ...this.err.lines].slice(-20).join('\n')
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A minimal Chrome DevTools Protocol client over the server's `--inspect` WebSocket. */
export class Inspector {
  #nextId = 1
  readonly #pending = new Map<number, { resolve(v: Record<string, unknown>): void; reject(e: Error): void }>()

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      let msg: unknown
      try {
        msg = JSON.parse(data.toString('utf8'))
      } catch {
        return
      }
      if (!isRecord(msg) || typeof msg.id !== 'number') return // events
      const p = this.#pending.get(msg.id)
      if (!p) return
      this.#pending.delete(msg.id)
      if (isRecord(msg.error)) p.reject(new Error(`inspector: ${String(msg.error.message)}`))
      else p.resolve(isRecord(msg.result) ? msg.result : {})
    })
    ws.on('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error('inspector connection closed'))
      this.#pending.clear()
    })
    ws.on('error', () => {})
  }

  static connect(url: string): Promise<Inspector> {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1024 * 1024 * 1024 })
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Inspector(ws)))
      ws.once('error', reject)
    })
  }

  call(
    method: string,
    params: Record<string, unknown> = {},
    timeoutMs = 30_000,
  ): Promise<Record<string, unknown>> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`inspector: ${method} timed out`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.ws.send(JSON.stringify({ id, method, params }))
    })
  }

  /** Evaluates an expression that returns a JSON string in the server's main context; returns it parsed. */
  async evaluateJson(expression: string): Promise<Record<string, unknown>> {
    const r = await this.call('Runtime.evaluate', { expression, returnByValue: true })
    if (isRecord(r.exceptionDetails)) throw new Error(`inspector: ${JSON.stringify(r.exceptionDetails)}`)
    const value = isRecord(r.result) ? r.result.value : undefined
    if (typeof value !== 'string') throw new Error('inspector: expression did not return a string')
    const parsed: unknown = JSON.parse(value)
    if (!isRecord(parsed)) throw new Error('inspector: expression did not return a JSON object')
    return parsed
  }

  /** Full garbage collection in the server. */
  async gc(): Promise<void> {
    await this.call('HeapProfiler.collectGarbage')
    await this.call('HeapProfiler.collectGarbage')
  }

  /** `process.memoryUsage()` of the server, in bytes. */
  async memory(): Promise<{ rss: number; heapUsed: number; heapTotal: number; external: number }> {
    const m = await this.evaluateJson('JSON.stringify(process.memoryUsage())')
    const num = (k: string) => (typeof m[k] === 'number' ? m[k] : NaN)
    return {
      rss: num('rss'),
      heapUsed: num('heapUsed'),
      heapTotal: num('heapTotal'),
      external: num('external'),
    }
  }

  /** Starts (or restarts) an event-loop delay histogram in the server. */
  async eldStart(): Promise<void> {
    await this.evaluateJson(
      `(() => { const h = (globalThis.__parleyBenchEld ??= process.getBuiltinModule('node:perf_hooks')
        .monitorEventLoopDelay({ resolution: 10 })); h.disable(); h.reset(); h.enable(); return '{}' })()`,
    )
  }

  /** Event-loop delay since {@link eldStart}, in ms (sampled every 10 ms). */
  async eldStop(): Promise<{ p50: number; p99: number; max: number }> {
    const r = await this.evaluateJson(
      `(() => { const h = globalThis.__parleyBenchEld; h.disable();
        return JSON.stringify({ p50: h.percentile(50), p99: h.percentile(99), max: h.max }) })()`,
    )
    const ms = (k: string) => (typeof r[k] === 'number' ? Math.round(r[k] / 1000) / 1000 : NaN)
    return { p50: ms('p50'), p99: ms('p99'), max: ms('max') }
  }

  async profileStart(intervalUs = 200): Promise<void> {
    await this.call('Profiler.enable')
    await this.call('Profiler.setSamplingInterval', { interval: intervalUs })
    await this.call('Profiler.start')
  }

  /** The CPU profile since {@link profileStart} (a `.cpuprofile` object). */
  async profileStop(): Promise<unknown> {
    const r = await this.call('Profiler.stop', {}, 120_000)
    await this.call('Profiler.disable')
    return r.profile
  }

  close(): void {
    this.ws.terminate()
  }
}
