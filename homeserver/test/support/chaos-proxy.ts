/**
 * Test harness, runs in the test process: a TCP proxy on 127.0.0.1 with faults that can be switched
 * while connections are open (TESTPLAN.md section 2, "chaos proxy").
 *
 * - `pass`: forward both ways, with backpressure.
 * - `blackhole`: accept and hold; nothing is forwarded and closes are not propagated (half-open).
 * - `rst`: reset every connection (and every new one) with a TCP RST.
 * - `latency`: hold each chunk for `ms` before forwarding it, keeping order.
 * - `cut`: forward `afterBytes` bytes per connection (both directions counted; a function is drawn
 *   once per connection), then drop the connection, usually in the middle of a frame.
 *
 * With `capture`, it also keeps every byte it forwarded (both directions), for tests that search
 * the wire for what must not be there (E2E.md section 3 row 10).
 */
import net from 'node:net'

export type ChaosMode =
  | { readonly kind: 'pass' }
  | { readonly kind: 'blackhole' }
  | { readonly kind: 'rst' }
  | { readonly kind: 'latency'; readonly ms: number }
  | { readonly kind: 'cut'; readonly afterBytes: number | (() => number) }

interface Link {
  readonly client: net.Socket
  readonly upstream: net.Socket
  forwarded: number
  budget: { mode: ChaosMode; bytes: number } | null
  readonly timers: Set<ReturnType<typeof setTimeout>>
}

export class ChaosProxy {
  mode: ChaosMode = { kind: 'pass' }
  /** Connections accepted so far, and how many the proxy cut (cut mode, `cutAll`, rst). */
  accepted = 0
  cuts = 0
  readonly #links = new Set<Link>()
  readonly #captured: Buffer[] | null

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    capture: boolean,
  ) {
    this.#captured = capture ? [] : null
  }

  /**
   * Listens on 127.0.0.1, port 0, in front of `target` (a `http://host:port` URL or host and port;
   * a function is asked per connection, for a target whose port is known only later).
   */
  static async start(
    target: string | { host: string; port: number } | (() => string),
    options: { capture?: boolean } = {},
  ): Promise<ChaosProxy> {
    const resolve = () => {
      const t = typeof target === 'function' ? target() : target
      return typeof t === 'string' ? new URL(t) : { ...t, hostname: t.host }
    }
    const server = net.createServer()
    await new Promise<void>((done, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', done)
    })
    const proxy = new ChaosProxy(server, (server.address() as net.AddressInfo).port, options.capture === true)
    server.on('connection', (client) => {
      const { hostname, port } = resolve()
      proxy.#accept(client, hostname, Number(port))
    })
    return proxy
  }

  /** Every byte forwarded so far, both directions (started with `capture`). */
  captured(): Buffer {
    if (this.#captured === null) throw new Error('start the proxy with { capture: true }')
    return Buffer.concat(this.#captured)
  }

  /** Base URL of the proxy, e.g. `http://127.0.0.1:40123`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get openConnections(): number {
    return this.#links.size
  }

  /** Switches the fault. `rst` also resets every open connection at once. */
  setMode(mode: ChaosMode): void {
    this.mode = mode
    if (mode.kind === 'rst') for (const link of [...this.#links]) this.#drop(link, true)
  }

  /** Drops every open connection (FIN, or RST with `rst`); returns how many. */
  cutAll(rst = false): number {
    const links = [...this.#links]
    for (const link of links) this.#drop(link, rst)
    return links.length
  }

  /** Stops listening and drops everything. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const link of [...this.#links]) this.#drop(link, true, false)
    await closed
  }

  #accept(client: net.Socket, host: string, port: number): void {
    this.accepted++
    const upstream = net.connect(port, host)
    const link: Link = { client, upstream, forwarded: 0, budget: null, timers: new Set() }
    this.#links.add(link)
    if (this.mode.kind === 'rst') return this.#drop(link, true)
    this.#wire(link, client, upstream)
    this.#wire(link, upstream, client)
  }

  #wire(link: Link, from: net.Socket, to: net.Socket): void {
    let due: Array<{ at: number; chunk: Buffer }> = []
    const release = () => {
      const now = Date.now()
      while (due.length > 0 && due[0]!.at <= now) to.write(due.shift()!.chunk)
      if (due.length > 0) this.#later(link, release, due[0]!.at - now)
    }
    from.on('data', (chunk: Buffer) => {
      this.#captured?.push(chunk)
      const mode = this.mode
      if (mode.kind === 'blackhole' || !this.#links.has(link)) return
      if (mode.kind === 'latency' || due.length > 0) {
        due.push({ at: Date.now() + (mode.kind === 'latency' ? mode.ms : 0), chunk })
        if (due.length === 1) this.#later(link, release, mode.kind === 'latency' ? mode.ms : 0)
        return
      }
      if (mode.kind === 'cut') {
        if (link.budget?.mode !== mode) {
          const n = typeof mode.afterBytes === 'function' ? mode.afterBytes() : mode.afterBytes
          link.budget = { mode, bytes: link.forwarded + n }
        }
        const left = link.budget.bytes - link.forwarded
        if (chunk.length >= left) {
          link.forwarded += left
          return to.write(chunk.subarray(0, left), () => this.#drop(link, false))
        }
      }
      link.forwarded += chunk.length
      if (!to.write(chunk)) {
        from.pause()
        to.once('drain', () => from.resume())
      }
    })
    from.on('end', () => {
      if (this.mode.kind !== 'blackhole') to.end()
    })
    from.on('error', () => {})
    from.on('close', () => {
      due = []
      if (this.mode.kind !== 'blackhole') this.#drop(link, false, false)
    })
  }

  #later(link: Link, fn: () => void, ms: number): void {
    const timer = setTimeout(() => {
      link.timers.delete(timer)
      fn()
    }, ms)
    link.timers.add(timer)
  }

  #drop(link: Link, rst: boolean, counted = true): void {
    if (!this.#links.delete(link)) return
    if (counted) this.cuts++
    for (const timer of link.timers) clearTimeout(timer)
    for (const s of [link.client, link.upstream]) {
      // resetAndDestroy needs a connected socket; a socket still connecting is just destroyed.
      if (rst && !s.connecting && !s.destroyed) s.resetAndDestroy()
      else s.destroy()
    }
  }
}
