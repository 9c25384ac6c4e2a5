/**
 * Test harness, runs in the test process: a compromised homeserver as its clients see it (E2E.md
 * section 1, "malicious own homeserver"; TESTPLAN E2E-2/E2E-3). An HTTP + WebSocket man-in-the-middle
 * on 127.0.0.1 between a `ParleyClient` and its real homeserver that can rewrite REST answers (e.g.
 * `/keys/query`) and WebSocket frames both ways, drop them, hold them back, reorder them or inject new
 * ones. The tests point the client at {@link EvilProxy.url} and attack the *client*: whatever the
 * proxy does, a real server operator could do.
 *
 * The byte-level {@link ChaosProxy} cannot do this (it does not parse HTTP or frames); this one does.
 * Frames are JSON text, as the protocol has them; the proxy keeps the client's view of stream
 * positions monotonic so injected and reordered events are not dropped as already seen.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'

/** A WebSocket frame as JSON (server or client frame of protocol/src/schema/ws.ts). */
export type WireFrame = Record<string, unknown> & { type: string }

/**
 * Rewrites a JSON REST answer: gets the request path (without `/api/v1`), the method, the status and
 * the parsed body; returns the body to send instead, or `undefined` to pass it unchanged.
 */
export type RestRewrite = (answer: {
  readonly path: string
  readonly method: string
  readonly status: number
  readonly body: unknown
}) => unknown

/**
 * Decides what happens to one frame: return the frames to forward in its place (`[]` drops it,
 * several inject more), or `undefined` to forward it unchanged.
 */
export type FrameRewrite = (frame: WireFrame, link: EvilLink) => WireFrame[] | undefined

const API = '/api/v1'

/** One client's WebSocket through the proxy. */
export class EvilLink {
  /** The newest stream position the client was shown (its cursor can be no further). */
  #shownPos = 0
  readonly #pendingToServer: string[] = []

  constructor(
    private readonly client: WebSocket,
    private readonly upstream: WebSocket,
  ) {}

  /**
   * Delivers a frame to the client as if the server sent it. Event frames get the next stream
   * position the client has not seen (the client drops positions at or below its cursor).
   */
  toClient(frame: WireFrame): void {
    if (this.client.readyState !== WebSocket.OPEN) return
    this.client.send(JSON.stringify(this.#renumber(frame)))
  }

  /** Sends a frame to the server as if the client sent it. */
  toServer(frame: WireFrame): void {
    const text = JSON.stringify(frame)
    if (this.upstream.readyState === WebSocket.OPEN) this.upstream.send(text)
    else this.#pendingToServer.push(text)
  }

  /** Sends what the client said before the upstream socket was open. */
  flush(): void {
    for (const text of this.#pendingToServer.splice(0)) this.upstream.send(text)
  }

  close(): void {
    this.client.terminate()
    this.upstream.terminate()
  }

  #renumber(frame: WireFrame): WireFrame {
    if (frame.type === 'sync') {
      const events = (frame.events as Array<{ stream_pos: number }> | undefined) ?? []
      for (const e of events) this.#shownPos = Math.max(this.#shownPos, e.stream_pos)
      this.#shownPos = Math.max(this.#shownPos, Number(frame.next ?? 0))
      return frame
    }
    if (frame.type !== 'event') return frame
    const pos = Math.max(Number(frame.stream_pos), this.#shownPos + 1)
    this.#shownPos = pos
    const event = frame.event as Record<string, unknown>
    return { ...frame, stream_pos: pos, event: { ...event, stream_pos: pos } }
  }
}

export class EvilProxy {
  /** REST rewrites, applied in order to every JSON answer. */
  readonly rest: RestRewrite[] = []
  /** Rewrites of server -> client frames, applied in order. */
  readonly toClient: FrameRewrite[] = []
  /** Rewrites of client -> server frames, applied in order. */
  readonly toServer: FrameRewrite[] = []
  /** Every frame the clients sent (before rewriting): what the server was asked to relay. */
  readonly fromClients: WireFrame[] = []
  /** Every frame delivered to the clients (after rewriting, injections included). */
  readonly deliveredToClients: WireFrame[] = []
  readonly links = new Set<EvilLink>()
  readonly #sockets = new Set<Socket>()
  readonly #wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })

  private constructor(
    private readonly server: Server,
    private readonly target: URL,
  ) {}

  /** Listens on 127.0.0.1, port 0, in front of the homeserver at `target` (`http://host:port`). */
  static async start(target: string): Promise<EvilProxy> {
    const server = createServer()
    const proxy = new EvilProxy(server, new URL(target))
    server.on('request', (req, res) => proxy.#onRequest(req, res))
    server.on('upgrade', (req, socket, head) => proxy.#onUpgrade(req, socket as Socket, head))
    server.on('connection', (socket) => {
      proxy.#sockets.add(socket)
      socket.once('close', () => proxy.#sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', resolve)
    })
    return proxy
  }

  /** Base URL to give the client instead of the homeserver's. */
  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  /** Injects a frame into every open client link (see {@link EvilLink.toClient}). */
  injectToClients(frame: WireFrame): void {
    for (const link of this.links) {
      this.deliveredToClients.push(frame)
      link.toClient(frame)
    }
  }

  /** Drops every link and stops listening. */
  async close(): Promise<void> {
    for (const link of this.links) link.close()
    this.links.clear()
    for (const socket of this.#sockets) socket.destroy()
    this.#wss.close()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const upstream = request(
      {
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: this.target.host },
      },
      (answer) => {
        const chunks: Buffer[] = []
        answer.on('data', (c: Buffer) => chunks.push(c))
        answer.on('end', () => {
          let body = Buffer.concat(chunks)
          const headers = { ...answer.headers }
          if (String(headers['content-type'] ?? '').includes('application/json') && body.length > 0) {
            const path = (req.url ?? '').split('?')[0]!.replace(API, '')
            let json: unknown
            try {
              json = JSON.parse(body.toString('utf8'))
            } catch {
              json = undefined // not JSON after all: passed on as it came
            }
            let changed = false
            for (const rewrite of json === undefined ? [] : this.rest) {
              const next = rewrite({
                path,
                method: req.method ?? 'GET',
                status: answer.statusCode ?? 0,
                body: json,
              })
              if (next !== undefined) {
                json = next
                changed = true
              }
            }
            if (changed) {
              body = Buffer.from(JSON.stringify(json))
              delete headers['transfer-encoding']
              headers['content-length'] = String(body.length)
            }
          }
          res.writeHead(answer.statusCode ?? 502, headers)
          res.end(body)
        })
      },
    )
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const headers: Record<string, string> = {}
    if (typeof req.headers.origin === 'string') headers.origin = req.headers.origin
    const upstream = new WebSocket(`ws://${this.target.host}${req.url ?? ''}`, {
      perMessageDeflate: false,
      headers,
    })
    this.#wss.handleUpgrade(req, socket, head, (client) => {
      const link = new EvilLink(client, upstream)
      this.links.add(link)
      upstream.on('open', () => link.flush())
      upstream.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as WireFrame
        for (const out of apply(this.toClient, frame, link)) {
          this.deliveredToClients.push(out)
          link.toClient(out)
        }
      })
      client.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as WireFrame
        this.fromClients.push(frame)
        for (const out of apply(this.toServer, frame, link)) link.toServer(out)
      })
      const end = () => {
        this.links.delete(link)
        link.close()
      }
      upstream.on('close', end)
      client.on('close', end)
      upstream.on('error', end)
      client.on('error', end)
    })
  }
}

function apply(rewrites: readonly FrameRewrite[], frame: WireFrame, link: EvilLink): WireFrame[] {
  let frames = [frame]
  for (const rewrite of rewrites) frames = frames.flatMap((f) => rewrite(f, link) ?? [f])
  return frames
}

/** Flips one bit in the middle of a base64url field (a byte the AEAD or signature covers). */
export function flipBase64Url(text: string, at = Math.floor(text.length / 2)): string {
  const bytes = Buffer.from(text, 'base64url')
  const i = Math.min(Math.floor((at * 3) / 4), bytes.length - 1)
  bytes[i]! ^= 0x01
  return bytes.toString('base64url')
}
