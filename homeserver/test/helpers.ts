/** Test helpers: real homeservers on port 0 with temp data dirs, real HTTP and WebSocket clients. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { startServer, type RunningServer, type StartOptions } from '../src/server.ts'
import type { ConfigInput } from '../src/config.ts'

export interface TestServer extends RunningServer {
  readonly dataDir: string
  /** Closes the server and removes its data directory. */
  stop(): Promise<void>
}

/** Cheap argon2 for speed; auth tests that check hashing use the production defaults. */
export const FAST_ARGON2 = { memoryKiB: 1024, iterations: 1 }

export async function tempDir(prefix = 'parley-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

export async function startTestServer(
  overrides: Partial<ConfigInput> = {},
  options: StartOptions = {},
): Promise<TestServer> {
  const dataDir = overrides.dataDir ?? (await tempDir())
  const server = await startServer(
    {
      serverName: 'acme.localhost',
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      argon2: FAST_ARGON2,
      ...overrides,
      // Tests sign up many users from one address; the sign-up limit has its own test.
      limits: { registrationsPerIp: 100_000, ...overrides.limits },
      dataDir,
    },
    options,
  )
  return Object.assign(server, {
    dataDir,
    async stop() {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    },
  })
}

export interface HttpResult<T = Record<string, unknown>> {
  status: number
  body: T
  headers: Headers
}

/** A JSON REST call. */
export async function http<T = Record<string, unknown>>(
  server: { url: string },
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<HttpResult<T>> {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(server.url + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T, headers: res.headers }
}

export interface TestUser {
  user_id: string
  device_id: string
  access_token: string
  refresh_token: string
}

let counter = 0
/** Registers a fresh user (unique name unless given). */
export async function register(
  server: { url: string },
  name?: string,
  password = 'correct horse battery',
): Promise<TestUser> {
  const username = name ?? `user${process.pid}x${++counter}`
  const res = await http<TestUser>(server, 'POST', '/api/v1/register', { username, password })
  if (res.status !== 201) throw new Error(`register ${username}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

export const roomPath = (room: string, rest = '') => `/api/v1/rooms/${encodeURIComponent(room)}${rest}`

/** Creates a room and returns its id. */
export async function createRoom(
  server: { url: string },
  user: TestUser,
  body: Record<string, unknown>,
): Promise<string> {
  const res = await http<{ room_id: string }>(server, 'POST', '/api/v1/rooms', body, user.access_token)
  if (res.status !== 201) throw new Error(`create room: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.room_id
}

/** A group room with `members` invited and joined. */
export async function groupWith(
  server: { url: string },
  owner: TestUser,
  members: TestUser[],
  kind = 'group',
): Promise<string> {
  const room = await createRoom(server, owner, {
    kind,
    name: 'test room',
    invite: members.map((m) => m.user_id),
  })
  for (const m of members) {
    const res = await http(server, 'POST', roomPath(room, '/join'), undefined, m.access_token)
    if (res.status !== 200) throw new Error(`join: ${res.status} ${JSON.stringify(res.body)}`)
  }
  return room
}

export type Frame = Record<string, unknown> & { type: string }

/** A raw WebSocket client that queues frames and waits for them by predicate: no sleeps. */
export class TestSocket {
  readonly frames: Frame[] = []
  #waiters: Array<{
    pred: (f: Frame) => boolean
    resolve: (f: Frame) => void
    reject: (e: Error) => void
    timer: ReturnType<typeof setTimeout>
  }> = []
  #closeWaiters: Array<(info: { code: number; reason: string }) => void> = []
  closeInfo: { code: number; reason: string } | null = null
  readonly ws: WebSocket

  constructor(url: string, options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url.replace(/^http/, 'ws') + '/api/v1/ws', {
      perMessageDeflate: false,
      ...options,
    })
    this.ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Frame
      this.frames.push(frame)
      for (const w of [...this.#waiters]) {
        if (w.pred(frame)) {
          clearTimeout(w.timer)
          this.#waiters.splice(this.#waiters.indexOf(w), 1)
          w.resolve(frame)
        }
      }
    })
    this.ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() }
      for (const w of this.#closeWaiters) w(this.closeInfo)
      for (const w of this.#waiters) {
        clearTimeout(w.timer)
        w.reject(new Error(`socket closed ${code} ${reason.toString()} while waiting`))
      }
      this.#waiters = []
    })
    this.ws.on('error', () => {})
  }

  opened(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return Promise.resolve()
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve())
      this.ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`upgrade refused: ${res.statusCode}`)),
      )
      this.ws.once('error', reject)
    })
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }

  /** Resolves with the first frame (already received or future) matching `pred`. */
  next(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const have = this.frames.find(pred)
    if (have) {
      this.frames.splice(this.frames.indexOf(have), 1)
      return Promise.resolve(have)
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.timer !== timer)
        reject(new Error(`timed out waiting for a frame; have: ${JSON.stringify(this.frames.slice(-5))}`))
      }, timeoutMs)
      this.#waiters.push({
        pred,
        resolve: (f) => {
          this.frames.splice(this.frames.indexOf(f), 1)
          resolve(f)
        },
        reject,
        timer,
      })
    })
  }

  type(type: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.type === type, timeoutMs)
  }

  closed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    if (this.closeInfo) return Promise.resolve(this.closeInfo)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('socket did not close')), timeoutMs)
      this.#closeWaiters.push((info) => {
        clearTimeout(timer)
        resolve(info)
      })
    })
  }

  close(): void {
    this.ws.terminate()
  }
}

/** An event as REST history returns it (the fields tests look at). */
export interface HistoryEvent {
  event_id: string
  type: string
  sender: string
  seq: number
  stream_pos: number
  content: { body?: string } & Record<string, unknown>
  redacted_by?: string
}

/** Every event of a room that `token` may page through, oldest first (fails on a non-200 page). */
export async function fullHistory(
  server: { url: string },
  token: string,
  room: string,
  pageSize = 200,
): Promise<HistoryEvent[]> {
  const all: HistoryEvent[] = []
  let before: number | undefined
  for (;;) {
    const query = before === undefined ? `?limit=${pageSize}` : `?limit=${pageSize}&before=${before}`
    const res = await http<{ events: HistoryEvent[]; next_before?: number }>(
      server,
      'GET',
      roomPath(room, `/messages${query}`),
      undefined,
      token,
    )
    if (res.status !== 200) throw new Error(`history page: ${res.status} ${JSON.stringify(res.body)}`)
    all.push(...res.body.events)
    if (res.body.next_before === undefined) break
    before = res.body.next_before
  }
  return all.reverse()
}

/** Opens a socket, authenticates and completes the catch-up sync (so live events flow). */
export async function connect(server: { url: string }, user: TestUser, since = 0): Promise<TestSocket> {
  const sock = new TestSocket(server.url)
  await sock.opened()
  sock.send({ type: 'auth', token: user.access_token })
  await sock.type('ready')
  let cursor = since
  for (;;) {
    sock.send({ type: 'sync', since: cursor })
    const page = await sock.type('sync')
    cursor = page.next as number
    if (page.done) break
  }
  return sock
}

/** Sends a text message and waits for its `sent` ack. */
export async function sendText(
  sock: TestSocket,
  room: string,
  body: string,
  txnId = `t${++counter}`,
): Promise<Frame> {
  sock.send({ type: 'send', txn_id: txnId, room, event_type: 'm.message', content: { body } })
  return sock.next((f) => (f.type === 'sent' || f.type === 'error') && f.txn_id === txnId)
}

// ---- Security-test helpers (AUTH, AC, IN rows of TESTPLAN.md) ----
// Imports of this section live here so the section can be appended without touching the file head.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { pino } from 'pino'
import type { Logger } from '../src/logger.ts'

/** A pino logger that keeps every line in memory, so tests can grep the logs for secrets. */
export function memoryLogger(level = 'debug'): { logger: Logger; text(): string } {
  const lines: string[] = []
  const logger = pino({ level }, { write: (line: string) => void lines.push(line) })
  return { logger, text: () => lines.join('') }
}

let barrierIds = 0
/**
 * Round-trips a ping on `sock`. The server handles a socket's frames in order, so once the pong is
 * back every frame sent before the ping has been processed and its synchronous replies received.
 */
export async function barrier(sock: TestSocket, timeoutMs?: number): Promise<void> {
  const id = `barrier-${++barrierIds}`
  sock.send({ type: 'ping', id })
  await sock.next((f) => f.type === 'pong' && f.id === id, timeoutMs)
}

/** `POST /login`; returns the raw result (status and body) so tests can check refusals. */
export function login(
  server: { url: string },
  username: string,
  password = 'correct horse battery',
  deviceName?: string,
): Promise<HttpResult<TestUser & { errcode?: string; error?: string }>> {
  const body: Record<string, string> = { username, password }
  if (deviceName !== undefined) body.device_name = deviceName
  return http(server, 'POST', '/api/v1/login', body)
}

/** A request with the path sent byte for byte (fetch would normalise `..` and some escapes). */
export function rawRequest(
  server: { port: number },
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

// ---- Reliability-test helpers (WS and FLT rows of TESTPLAN.md) ----

/**
 * Polls `cond` every `intervalMs` until it holds. Only for state that has no event to wait on (server
 * internals, RSS); everything on the wire is awaited with `next`/`closed` instead.
 */
export async function waitUntil(cond: () => boolean, timeoutMs = 5000, intervalMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** The TCP socket under a `ws` client, to stop reading (slow consumer) or resume. */
export function tcpOf(sock: TestSocket): Socket {
  return (sock.ws as unknown as { _socket: Socket })._socket
}

export interface ChildServer {
  readonly url: string
  readonly port: number
  readonly pid: number
  readonly dataDir: string
  /** Resident set size of the server process now (bytes), from /proc. */
  rss(): number
  /** SIGTERM, wait for exit, remove the data directory. */
  stop(): Promise<void>
}

/** The base URL a `parley-homeserver start` child prints once listening; rejects if it exits first. */
export function listeningUrl(proc: ChildProcess, exited: Promise<void>): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = ''
    const onData = (chunk: Buffer) => {
      out += chunk.toString()
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (!m) return
      proc.stdout!.off('data', onData)
      proc.stdout!.resume()
      resolve(m[1]!)
    }
    proc.stdout!.on('data', onData)
    void exited.then(() => reject(new Error(`homeserver exited before listening: ${out}`)))
  })
}

export interface ChildServerOptions {
  /** Wraps the server command, e.g. to run it in its own mount namespace. Gets the full argv. */
  readonly wrap?: (argv: readonly string[], dataDir: string) => readonly string[]
}

/**
 * A homeserver in its own process (`parley-homeserver start`), for measurements the test process must
 * not disturb, such as RSS, and for faults that need a process of their own. Same defaults as
 * {@link startTestServer}; the config file lives outside the data directory.
 */
export async function startChildServer(
  overrides: Partial<ConfigInput> = {},
  options: ChildServerOptions = {},
): Promise<ChildServer> {
  const dataDir = await tempDir()
  const configDir = await tempDir('parley-config-')
  const configPath = join(configDir, 'config.json')
  await writeFile(configPath, JSON.stringify({ logLevel: 'silent', argon2: FAST_ARGON2, ...overrides }))
  const bin = new URL('../bin/parley-homeserver.mjs', import.meta.url).pathname
  const args = ['start', '--server-name', 'acme.localhost', '--host', '127.0.0.1', '--port', '0']
  const argv = [process.execPath, bin, ...args, '--data-dir', dataDir, '--config', configPath]
  const [command, ...rest] = options.wrap ? options.wrap(argv, dataDir) : argv
  const proc = spawn(command!, rest, { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const url = await listeningUrl(proc, exited).catch(async (error: unknown) => {
    await rm(dataDir, { recursive: true, force: true })
    await rm(configDir, { recursive: true, force: true })
    throw error
  })
  return {
    url,
    port: Number(new URL(url).port),
    pid: proc.pid!,
    dataDir,
    rss() {
      const kib = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))
      return Number(kib?.[1] ?? 0) * 1024
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      await exited
      await rm(dataDir, { recursive: true, force: true })
      await rm(configDir, { recursive: true, force: true })
    },
  }
}
