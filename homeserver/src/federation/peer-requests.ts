/**
 * Requests to a peer over its link that expect one answer frame each (media_get -> media_part,
 * keys_query -> keys_answer): dialling if there is no link, the deadline, matching answers by
 * `(peer, req_id)`, resending on a new link and failing at once when the link goes down. The relays
 * keep their own limits and checks of what an answer says.
 */
import { ParleyError } from '@parley/protocol'
import type { Logger } from '../logger.ts'
import type { LinkManager } from './link-manager.ts'

interface Pending<Frame, Answer> {
  readonly frame: Frame
  readonly resolve: (answer: Answer) => void
  readonly reject: (err: ParleyError) => void
  readonly timer: ReturnType<typeof setTimeout>
}

export class PeerRequests<Frame extends { readonly req_id: string }, Answer> {
  /** Requests awaiting an answer, by `peer req_id`. */
  readonly #pending = new Map<string, Pending<Frame, Answer>>()

  constructor(
    private readonly links: LinkManager,
    private readonly log: Logger,
    /** What is asked, for log lines: "media fetch", "keys query". */
    private readonly what: string,
  ) {}

  /** Sends one request (dialling if needed, without making the peer "wanted") and awaits its answer. */
  async ask(server: string, frame: Frame, timeoutMs: number): Promise<Answer> {
    if (!this.links.linkTo(server)) {
      try {
        await this.links.ensureLink(server, { keep: false })
      } catch (err) {
        this.log.info({ peer: server, err: String(err) }, `${this.what}: peer unreachable`)
        throw unreachable(server)
      }
    }
    return new Promise<Answer>((resolve, reject) => {
      const key = `${server} ${frame.req_id}`
      const timer = setTimeout(() => {
        this.#pending.delete(key)
        reject(new ParleyError('P_UNAVAILABLE', `${server} did not answer in time`))
      }, timeoutMs)
      this.#pending.set(key, { frame, resolve, reject, timer })
      if (!this.links.send(server, frame)) {
        clearTimeout(timer)
        this.#pending.delete(key)
        reject(unreachable(server))
      }
    })
  }

  /** An answer from `peer`; dropped after its deadline or if it answers another peer's request. */
  settle(peer: string, reqId: string, answer: Answer): boolean {
    const key = `${peer} ${reqId}`
    const pending = this.#pending.get(key)
    if (!pending) return false
    this.#pending.delete(key)
    clearTimeout(pending.timer)
    pending.resolve(answer)
    return true
  }

  /** A new link to the peer (maybe replacing one): requests sent on the old one go again. */
  linkUp(peer: string): void {
    for (const [key, pending] of this.#pending)
      if (key.startsWith(`${peer} `)) this.links.send(peer, pending.frame)
  }

  /** The peer has no link: its requests fail now rather than at their deadline. */
  linkDown(peer: string): void {
    for (const [key, pending] of this.#pending) {
      if (!key.startsWith(`${peer} `)) continue
      this.#pending.delete(key)
      clearTimeout(pending.timer)
      pending.reject(new ParleyError('P_UNAVAILABLE', `the link to ${peer} went down`))
    }
  }
}

function unreachable(server: string): ParleyError {
  return new ParleyError('P_UNAVAILABLE', `${server} cannot be reached right now`)
}

/**
 * At most `active` requests per peer at once, and at most `queued` more waiting for a slot (in
 * order); beyond that a request is refused with P_LIMIT_EXCEEDED (`busy` words it).
 */
export class PeerSlots {
  readonly #active = new Map<string, number>()
  readonly #queued = new Map<string, Array<() => void>>()

  constructor(
    private readonly active: number,
    private readonly queued: number,
    private readonly busy: (server: string) => string,
  ) {}

  /** Waits for one of the peer's slots; call {@link release} when done, whatever happened. */
  async take(server: string): Promise<void> {
    const active = this.#active.get(server) ?? 0
    if (active < this.active) {
      this.#active.set(server, active + 1)
      return
    }
    const queue = this.#queued.get(server) ?? []
    if (queue.length >= this.queued) throw new ParleyError('P_LIMIT_EXCEEDED', this.busy(server), 1000)
    this.#queued.set(server, queue)
    // The slot is handed over by release (the active count stays as it is).
    await new Promise<void>((resolve) => queue.push(resolve))
  }

  release(server: string): void {
    const next = this.#queued.get(server)?.shift()
    if (next) return next()
    this.#queued.delete(server)
    const active = (this.#active.get(server) ?? 1) - 1
    if (active > 0) this.#active.set(server, active)
    else this.#active.delete(server)
  }
}
