/**
 * The link driver (docs/federation.md, "Link driver (homeserver)"): accepts links at
 * `GET /api/v1/federation`, dials peers, keeps at most one established link per peer (the
 * simultaneous-dial rule), redials wanted peers with full-jitter backoff, and closes everything
 * cleanly on shutdown. Transport only: replication will sit on `send` / `onFrame` / the link events.
 */
import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import WebSocket, { WebSocketServer } from 'ws'
import type { JsonObject } from '@parley/protocol'
import {
  MAX_SEALED_FRAME_BYTES,
  MemoryReplayCache,
  simultaneousDialKeeps,
  type LinkSigner,
  type VerifySignature,
} from '@parley/protocol/federation'
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import { assertPublicUrl, publicOnlyLookup } from './address-guard.ts'
import type { PeerKeys } from './peer-keys.ts'
import { LinkError, openLink, type AppFrame, type Link, type LinkSocketOptions } from './link-socket.ts'

/** Path of the inbound link endpoint (the `link` of our key document). */
export const FEDERATION_PATH = '/api/v1/federation'

/** The federation settings the driver uses (a slice of `config.federation`). */
export interface LinkPolicyConfig {
  readonly mode: 'allowlist' | 'open'
  readonly allow: readonly string[]
  readonly deny: readonly string[]
  readonly pingMs: number
  readonly handshakeTimeoutMs: number
  readonly backoffBaseMs: number
  readonly backoffCapMs: number
  readonly allowPrivateAddresses: boolean
  readonly maxHandshakes: number
}

export interface LinkManagerOptions {
  readonly serverName: string
  readonly signer: LinkSigner
  readonly verify: VerifySignature
  readonly peerKeys: Pick<PeerKeys, 'keyFor'>
  /** Static peer map, name -> base URL (`http(s)://host:port`); read on every dial. */
  readonly peers: Readonly<Record<string, string>>
  readonly federation: LinkPolicyConfig
  readonly clock: Clock
  readonly log: Logger
  /** Uniform [0, 1) for the backoff jitter. Default `Math.random`. */
  readonly random?: () => number
}

/** Events of the manager. `link up` fires for every link that becomes a peer's current link. */
export interface LinkManagerEvents {
  'link up': (link: Link) => void
  /** The peer has no link any more (a replaced link does not count). */
  'link down': (peer: string, why: LinkError) => void
}

type Listeners = { [E in keyof LinkManagerEvents]: Set<LinkManagerEvents[E]> }

/** The WebSocket URL of a peer's link endpoint: its `peers` base URL, else `https://<name>`. */
export function linkUrl(peers: Readonly<Record<string, string>>, peer: string): string {
  const url = new URL(peers[peer] ?? `https://${peer}`)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  url.pathname = url.pathname.replace(/\/+$/, '') + FEDERATION_PATH
  url.search = ''
  url.hash = ''
  return url.toString()
}

/** Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 52))
  return Math.floor(random() * ceiling)
}

function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

interface Retry {
  attempt: number
  timer: ReturnType<typeof setTimeout> | null
}

export class LinkManager {
  readonly #o: LinkManagerOptions
  readonly #random: () => number
  /** One per server, shared by both roles (docs/federation.md, "Replay protection"). */
  readonly #replayCache = new MemoryReplayCache()
  /** Inbound: its own ws server, so its limits are not the client endpoint's (WS-3: never deflate). */
  readonly #wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_SEALED_FRAME_BYTES,
    perMessageDeflate: false,
    clientTracking: false,
  })
  readonly #links = new Map<string, Link>()
  readonly #dials = new Map<string, Promise<Link>>()
  /** Peers we keep a link to: redialled after a loss. */
  readonly #wanted = new Set<string>()
  readonly #retries = new Map<string, Retry>()
  /** Every socket not yet closed, handshaking or established: shutdown ends them all. */
  readonly #sockets = new Set<WebSocket>()
  readonly #frameHandlers = new Set<(peer: string, frame: AppFrame) => void>()
  readonly #listeners: Listeners = { 'link up': new Set(), 'link down': new Set() }
  #closing: Promise<void> | null = null
  /** Inbound sockets between upgrade and the end of their handshake. */
  #handshaking = 0

  constructor(options: LinkManagerOptions) {
    this.#o = options
    this.#random = options.random ?? Math.random
  }

  /** The federation policy: checked before any key lookup, inbound and outbound. */
  isAllowed(server: string): boolean {
    const f = this.#o.federation
    if (server === this.#o.serverName) return false
    if (f.deny.includes(server)) return false
    if (f.mode === 'open') return true
    return Object.hasOwn(this.#o.peers, server) || f.allow.includes(server)
  }

  /** The peer's current established link, if any. */
  linkTo(peer: string): Link | null {
    return this.#links.get(peer) ?? null
  }

  /** Failed dials since the peer was last reachable (0: none; reset by any link, either direction). */
  redialAttempts(peer: string): number {
    return this.#retries.get(peer)?.attempt ?? 0
  }

  /** Peers with an established link. */
  get linkedPeers(): string[] {
    return [...this.#links.keys()]
  }

  /**
   * Resolves with the peer's link, dialling if there is none. The peer becomes "wanted": it is
   * redialled with backoff whenever its link is lost, until shutdown. Rejects with a {@link LinkError}
   * if this dial fails (the redial loop carries on). During a simultaneous dial the link it resolves
   * with may still be replaced by the surviving one: long-lived users follow `link up`/`linkTo`.
   *
   * `keep: false` (a one-off need, such as a media fetch) dials without making the peer wanted: a
   * failed dial or a lost link is not redialled on its account.
   */
  ensureLink(peer: string, options: { readonly keep?: boolean } = {}): Promise<Link> {
    const current = this.#links.get(peer)
    if (current) return Promise.resolve(current)
    if (this.#closing) return Promise.reject(new LinkError('shutdown', 'server is shutting down'))
    if (!this.isAllowed(peer)) return Promise.reject(new LinkError('not_allowed', `policy refuses ${peer}`))
    if (options.keep ?? true) this.#wanted.add(peer)
    return this.#dials.get(peer) ?? this.#dial(peer)
  }

  /** Bytes queued on the peer's link and not yet sent (0 without a link). */
  bufferedAmount(peer: string): number {
    return this.#links.get(peer)?.bufferedAmount ?? 0
  }

  /** Seals and sends one frame on the peer's link; false if there is no open link. */
  send(peer: string, frame: JsonObject): boolean {
    const link = this.#links.get(peer)
    if (!link) return false
    try {
      return link.send(frame)
    } catch (error) {
      // Over 1 MiB (a caller's sizing bug): refuse this frame, keep the link and the process.
      this.#o.log.error({ peer, type: frame.type, err: String(error) }, 'federation frame not sent')
      return false
    }
  }

  /** Registers a handler for received application frames (never PINGs). Returns an unsubscribe. */
  onFrame(handler: (peer: string, frame: AppFrame) => void): () => void {
    this.#frameHandlers.add(handler)
    return () => this.#frameHandlers.delete(handler)
  }

  on<E extends keyof LinkManagerEvents>(event: E, listener: LinkManagerEvents[E]): () => void {
    this.#listeners[event].add(listener)
    return () => this.#listeners[event].delete(listener)
  }

  /**
   * Takes an HTTP upgrade for {@link FEDERATION_PATH}. Browsers always send Origin and have no
   * business here, so any Origin is refused; so is everything during shutdown.
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.#closing) return refuseUpgrade(socket, 503, 'Service Unavailable')
    if (request.headers.origin !== undefined) return refuseUpgrade(socket, 403, 'Forbidden')
    // Handshakes cost signature checks and maybe a key fetch: a bounded number at a time.
    if (this.#handshaking >= this.#o.federation.maxHandshakes)
      return refuseUpgrade(socket, 503, 'Service Unavailable')
    this.#handshaking++
    let counted = true
    const done = () => {
      if (counted) this.#handshaking--
      counted = false
    }
    socket.once('close', done)
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      this.#track(ws)
      openLink(ws, this.#socketOptions(this.#o.federation.handshakeTimeoutMs)).then(
        (link) => {
          done()
          this.#install(link)
        },
        (error: unknown) => {
          done()
          this.#o.log.info({ err: String(error) }, 'inbound federation handshake failed')
        },
      )
    })
  }

  /** Shutdown: no more dials; each link sends FINAL and closes; handshaking sockets are dropped. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const retry of this.#retries.values()) if (retry.timer) clearTimeout(retry.timer)
      this.#retries.clear()
      this.#wanted.clear()
      const links = [...this.#links.values()]
      await Promise.all(links.map((link) => link.close('server shutting down')))
      const rest = [...this.#sockets]
      await Promise.all(
        rest.map(
          (ws) =>
            new Promise<void>((resolve) => {
              if (ws.readyState === ws.CLOSED) return resolve()
              ws.once('close', () => resolve())
              ws.terminate()
            }),
        ),
      )
      this.#wss.close()
    })()
    return this.#closing
  }

  #socketOptions(timeoutMs: number): LinkSocketOptions {
    const { serverName, signer, verify, peerKeys, clock, log } = this.#o
    return {
      handshake: {
        serverName,
        signer,
        verify,
        isAllowed: (server) => this.isAllowed(server),
        // PeerKeys fetches (TOFU or pinned) on a miss; the handshake calls this only after the policy.
        lookupKey: async (server, kid) => {
          const found = await peerKeys.keyFor(server, kid, clock.now())
          if (found.ok) return found.value
          log.warn({ server, kid, fault: found.error }, 'federation peer key unavailable')
          return null
        },
        replayCache: this.#replayCache,
        now: () => clock.now(),
      },
      timeoutMs,
      pingMs: this.#o.federation.pingMs,
      log,
    }
  }

  #track(ws: WebSocket): void {
    this.#sockets.add(ws)
    ws.once('close', () => this.#sockets.delete(ws))
  }

  #dial(peer: string): Promise<Link> {
    const started = performance.now()
    const timeoutMs = this.#o.federation.handshakeTimeoutMs
    const attempt = (async () => {
      const url = linkUrl(this.#o.peers, peer)
      // Discovered addresses must be public unless allowed; the static peer map is the admin's choice.
      const guarded = !this.#o.federation.allowPrivateAddresses && !Object.hasOwn(this.#o.peers, peer)
      if (guarded) assertPublicUrl(url)
      // Never offer deflate (WS-3) and accept no frame larger than a sealed frame.
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: MAX_SEALED_FRAME_BYTES,
        handshakeTimeout: timeoutMs,
        followRedirects: false,
        ...(guarded ? { lookup: publicOnlyLookup as never } : {}),
      })
      this.#track(ws)
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => {
          ws.off('open', onOpen)
          reject(new LinkError('dial_failed', error.message))
        }
        const onOpen = () => {
          ws.off('error', onError)
          resolve()
        }
        ws.once('open', onOpen)
        ws.once('error', onError)
      })
      // One deadline for the whole dial: what the HTTP upgrade used is gone.
      const link = await openLink(ws, this.#socketOptions(timeoutMs - (performance.now() - started)), peer)
      return this.#install(link)
    })()
    this.#dials.set(peer, attempt)
    attempt.then(
      () => this.#dials.delete(peer),
      (error: unknown) => {
        this.#dials.delete(peer)
        this.#o.log.info({ peer, err: String(error) }, 'federation dial failed')
        this.#scheduleRedial(peer)
      },
    )
    return attempt
  }

  /**
   * Makes an authenticated link the peer's current one, or closes it, and returns the survivor.
   * Same dialler as the current link: a reconnect, the newer wins. Different dialler: a simultaneous
   * dial, settled by `simultaneousDialKeeps` so both sides keep the same socket.
   */
  #install(link: Link): Link {
    const peer = link.peer
    if (this.#closing) {
      void link.close('server shutting down')
      throw new LinkError('shutdown', 'server is shutting down')
    }
    const current = this.#links.get(peer)
    if (current && current.open) {
      const newerWins =
        current.role === link.role ||
        (simultaneousDialKeeps(this.#o.serverName, peer) === 'outbound') === (link.role === 'initiator')
      if (!newerWins) {
        void link.close('simultaneous dial')
        return current
      }
    }
    this.#links.set(peer, link)
    if (current) void current.close('replaced by a newer link')
    // Inbound or outbound, the peer is reachable: reset its backoff, cancel a pending redial.
    const retry = this.#retries.get(peer)
    if (retry?.timer) clearTimeout(retry.timer)
    this.#retries.delete(peer)
    // Listeners first: frames that arrived with the handshake are delivered by start(), and the
    // replication state they need is set up by `link up`.
    this.#o.log.info({ peer, role: link.role }, 'federation link up')
    this.#emit('link up', (listener) => listener(link))
    link.start({
      frame: (from, frame) => {
        // A replaced link may still deliver for a moment: its frames belong to a session that is over.
        if (this.#links.get(peer) !== from) return
        for (const handler of this.#frameHandlers) {
          try {
            handler(from.peer, frame)
          } catch (error) {
            this.#o.log.error({ peer, err: String(error) }, 'federation frame handler failed')
          }
        }
      },
      closed: (gone, why) => {
        if (this.#links.get(peer) !== gone) return
        this.#links.delete(peer)
        this.#o.log.info({ peer, reason: why.reason }, 'federation link down')
        this.#emit('link down', (listener) => listener(peer, why))
        this.#scheduleRedial(peer)
      },
    })
    return link
  }

  #scheduleRedial(peer: string): void {
    if (this.#closing || !this.#wanted.has(peer) || this.#links.has(peer) || this.#dials.has(peer)) return
    const retry = this.#retries.get(peer) ?? { attempt: 0, timer: null }
    this.#retries.set(peer, retry)
    if (retry.timer) return
    const { backoffBaseMs, backoffCapMs } = this.#o.federation
    const delay = backoffDelay(retry.attempt, backoffBaseMs, backoffCapMs, this.#random)
    retry.attempt++
    retry.timer = setTimeout(() => {
      retry.timer = null
      if (this.#closing || this.#links.has(peer) || this.#dials.has(peer)) return
      this.#dial(peer).catch(() => {}) // failures reschedule inside #dial
    }, delay)
    retry.timer.unref()
  }

  #emit<E extends keyof LinkManagerEvents>(event: E, call: (listener: LinkManagerEvents[E]) => void): void {
    for (const listener of this.#listeners[event]) {
      try {
        call(listener)
      } catch (error) {
        this.#o.log.error({ event, err: String(error) }, 'federation link listener failed')
      }
    }
  }
}

/**
 * Routes WebSocket upgrades for {@link FEDERATION_PATH} to the manager and every other upgrade to the
 * listeners already installed (the client gateway's, from @hono/node-ws). Needed because both would
 * otherwise see every upgrade, and hono's answers 404 to paths it has no WebSocket route for.
 * Call after `injectWebSocket(server)`.
 */
export function routeFederationUpgrades(server: Server, manager: LinkManager): void {
  const others = server.listeners('upgrade')
  server.removeAllListeners('upgrade')
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname
    if (path === FEDERATION_PATH) return manager.handleUpgrade(request, socket, head)
    for (const listener of others) listener.call(server, request, socket, head)
  })
}
