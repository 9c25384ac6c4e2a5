/**
 * Test harness, runs in the test process: a WebSocket client on a bare `net.Socket` (TESTPLAN.md
 * section 2, "raw-frame helper"). It does the HTTP upgrade by hand, so any header can be sent (or
 * left out), and it writes hand-built frames (RFC 6455 section 5.2): any opcode, FIN or not, a length
 * field that need not match the bytes that follow. It never answers pings unless asked to, and it
 * records the close code the server sends.
 */
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'

export const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

export interface FrameSpec {
  readonly opcode: number
  readonly payload?: Buffer | string
  /** FIN bit; false starts or continues a fragmented message. Default true. */
  readonly fin?: boolean
  /** Length written in the header; defaults to the payload's. Larger = "more to come" that never comes. */
  readonly declaredLength?: number
}

/** Encodes one client frame (always masked, as RFC 6455 section 5.3 requires of clients). */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload =
    typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0))
  const length = spec.declaredLength ?? payload.length
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + extended + 4)
  head[0] = ((spec.fin ?? true) ? 0x80 : 0) | (spec.opcode & 0x0f)
  head[1] = 0x80 | (extended === 0 ? length : extended === 2 ? 126 : 127)
  if (extended === 2) head.writeUInt16BE(length, 2)
  if (extended === 8) head.writeBigUInt64BE(BigInt(length), 2)
  const mask = randomBytes(4)
  mask.copy(head, 2 + extended)
  const masked = Buffer.allocUnsafe(payload.length)
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i]! ^ mask[i & 3]!
  return Buffer.concat([head, masked])
}

export interface RawUpgradeOptions {
  /** Extra or overriding request headers, e.g. `{ Origin: 'https://evil.example' }`; as pairs, a name may repeat. */
  readonly headers?: Record<string, string> | ReadonlyArray<readonly [string, string]>
  readonly path?: string
  /** Source address, e.g. `127.0.0.2`, to test per-address limits. */
  readonly localAddress?: string
  readonly timeoutMs?: number
}

export interface ServerFrame {
  readonly opcode: number
  readonly fin: boolean
  readonly payload: Buffer
}

export class RawWebSocket {
  /** HTTP status of the upgrade answer (101 when upgraded). */
  status = 0
  readonly responseHeaders = new Map<string, string>()
  readonly frames: ServerFrame[] = []
  /** Close code (and reason) from the server's close frame, if one arrived. */
  closeCode: number | null = null
  closeReason = ''
  /** True once the TCP connection is gone. */
  ended = false
  /** Answer pings with pongs (off: a peer that never answers, for heartbeat tests). */
  answerPings = false
  #buffer: Buffer = Buffer.alloc(0)
  #waiters: Array<() => void> = []

  private constructor(readonly socket: net.Socket) {}

  /** Connects to `baseUrl` (`http://host:port`) and sends an upgrade request; resolves on the answer. */
  static async connect(baseUrl: string, options: RawUpgradeOptions = {}): Promise<RawWebSocket> {
    const url = new URL(baseUrl)
    const socket = net.connect({
      port: Number(url.port),
      host: url.hostname,
      localAddress: options.localAddress,
    })
    const raw = new RawWebSocket(socket)
    const key = randomBytes(16).toString('base64')
    const base: Record<string, string> = {
      Host: url.host,
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
    }
    const extra = Array.isArray(options.headers) ? [] : Object.entries(options.headers ?? {})
    const lines = [...Object.entries({ ...base, ...Object.fromEntries(extra) })]
    if (Array.isArray(options.headers)) lines.push(...(options.headers as Array<[string, string]>))
    const head = lines.map(([k, v]) => `${k}: ${v}`)
    socket.setNoDelay(true)
    socket.on('error', () => {})
    socket.on('close', () => raw.#end())
    socket.write(`GET ${options.path ?? '/api/v1/ws'} HTTP/1.1\r\n${head.join('\r\n')}\r\n\r\n`)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no upgrade answer')), options.timeoutMs ?? 5000)
      const onData = (chunk: Buffer) => {
        raw.#buffer = Buffer.concat([raw.#buffer, chunk])
        const end = raw.#buffer.indexOf('\r\n\r\n')
        if (end < 0) return
        const [statusLine, ...rest] = raw.#buffer.subarray(0, end).toString('latin1').split('\r\n')
        raw.status = Number(statusLine!.split(' ')[1])
        for (const line of rest) {
          const i = line.indexOf(':')
          raw.responseHeaders.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim())
        }
        raw.#buffer = raw.#buffer.subarray(end + 4)
        socket.off('data', onData)
        clearTimeout(timer)
        const accept = createHash('sha1')
          .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
          .digest('base64')
        if (raw.status === 101 && raw.responseHeaders.get('sec-websocket-accept') !== accept) {
          reject(new Error('bad Sec-WebSocket-Accept'))
          return
        }
        if (raw.status === 101) {
          socket.on('data', (c: Buffer) => raw.#onData(c))
          raw.#parse()
        }
        resolve()
      }
      socket.on('data', onData)
      socket.once('close', () => {
        clearTimeout(timer)
        reject(new Error('connection closed before the upgrade answer'))
      })
    })
    return raw
  }

  /** Writes one frame; resolves when it was handed to the kernel (or the socket is gone). */
  sendFrame(spec: FrameSpec): Promise<void> {
    return this.write(encodeFrame(spec))
  }

  sendText(text: string): Promise<void> {
    return this.sendFrame({ opcode: OP.text, payload: text })
  }

  /** Writes raw bytes (several frames at once, or half a frame). */
  write(bytes: Buffer | Uint8Array): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve()
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()))
  }

  /** The server's close code once its close frame arrived; null if the connection ended without one. */
  closed(timeoutMs = 5000): Promise<number | null> {
    return this.waitFor(() => this.closeCode !== null || this.ended, timeoutMs, 'a close').then(
      () => this.closeCode,
    )
  }

  /** Resolves once the TCP connection is gone. */
  disconnected(timeoutMs = 5000): Promise<void> {
    return this.waitFor(() => this.ended, timeoutMs, 'the connection to end')
  }

  /** Resolves with the first JSON text message matching `pred`. */
  nextMessage(
    pred: (m: Record<string, unknown>) => boolean,
    timeoutMs = 5000,
  ): Promise<Record<string, unknown>> {
    const find = () =>
      this.messages.find((m) => pred(m as Record<string, unknown>)) as Record<string, unknown> | undefined
    return this.waitFor(() => find() !== undefined, timeoutMs, 'a message').then(() => find()!)
  }

  /** Text frames received so far, parsed as JSON. */
  get messages(): unknown[] {
    return this.frames.filter((f) => f.opcode === OP.text).map((f) => JSON.parse(f.payload.toString('utf8')))
  }

  destroy(): void {
    this.socket.destroy()
  }

  #onData(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
    this.#parse()
  }

  // Server frames are unmasked (RFC 6455 section 5.1).
  #parse(): void {
    for (;;) {
      const b = this.#buffer
      if (b.length < 2) return
      let length = b[1]! & 0x7f
      let offset = 2
      if (length === 126) {
        if (b.length < 4) return
        length = b.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (b.length < 10) return
        length = Number(b.readBigUInt64BE(2))
        offset = 10
      }
      if (b.length < offset + length) return
      const frame = {
        opcode: b[0]! & 0x0f,
        fin: (b[0]! & 0x80) !== 0,
        payload: b.subarray(offset, offset + length),
      }
      this.#buffer = b.subarray(offset + length)
      this.frames.push(frame)
      if (frame.opcode === OP.ping && this.answerPings)
        void this.sendFrame({ opcode: OP.pong, payload: frame.payload })
      if (frame.opcode === OP.close && this.closeCode === null) {
        this.closeCode = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005
        this.closeReason = frame.payload.subarray(2).toString('utf8')
        // Complete the closing handshake like a well-behaved client, then hang up.
        void this.sendFrame({ opcode: OP.close, payload: frame.payload.subarray(0, 2) }).then(() =>
          this.socket.end(),
        )
      }
      this.#wake()
    }
  }

  #end(): void {
    this.ended = true
    this.#wake()
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake()
  }

  /** Resolves once `done()` holds; checked again on every server frame and when the connection ends. */
  waitFor(done: () => boolean, timeoutMs = 5000, what = 'a condition'): Promise<void> {
    return new Promise((resolve, reject) => {
      let expired = false
      const timer = setTimeout(() => {
        expired = true
        reject(new Error(`timed out waiting for ${what}`))
      }, timeoutMs)
      const check = () => {
        if (expired) return
        if (!done()) return void this.#waiters.push(check)
        clearTimeout(timer)
        resolve()
      }
      check()
    })
  }
}
