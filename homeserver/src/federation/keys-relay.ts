/**
 * The E2E key directory across servers (docs/federation.md, "Keys"), over the sealed link:
 * `keys_query` asks a user's server for the keys of up to {@link MAX_KEYS_PER_FRAME} of its users,
 * `keys_answer` echoes the request id with what it may show us (or an error), `keys_changed` tells
 * servers with users in a room with ours that one of our users' device lists changed.
 *
 * As the asker: at most {@link MAX_IN_FLIGHT_PER_PEER} queries per peer at once (more wait, up to a
 * bound, then P_LIMIT_EXCEEDED), each answered within `keysTimeoutMs`, and every answer checked before
 * use: only users we asked about, each device list for the user it is filed under and
 * self-consistent (signed by the identity key it names). As the answerer: only about our own users,
 * only those who share a room with some user of the asking server (in our view of membership), at a
 * bounded rate per peer.
 */
import { randomBytes } from 'node:crypto'
import { ParleyError, parseUserId } from '@parley/protocol'
import {
  MAX_KEYS_PER_FRAME,
  type KeysAnswerFrame,
  type KeysChangedRelayFrame,
  type KeysQueryFrame,
} from '@parley/protocol/federation'
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import {
  deviceListProblem,
  type KeysService,
  type RemoteKeys,
  type RemoteKeysAnswer,
} from '../services/keys.ts'
import { RateLimiter } from '../services/rate-limit.ts'
import type { LinkManager } from './link-manager.ts'
import { PeerRequests, PeerSlots } from './peer-requests.ts'

/** Queries to one peer in flight at once. */
const MAX_IN_FLIGHT_PER_PEER = 16
/** Queries waiting for a slot, per peer; beyond, P_LIMIT_EXCEEDED. */
const MAX_QUEUED_PER_PEER = 64
/** Queries one peer may have answered per second here, and the burst above it. */
const ANSWERS_PER_SECOND = 50
const ANSWER_BURST = 200

export interface FederatedKeysOptions {
  readonly links: LinkManager
  readonly keys: KeysService
  /** Longest wait for one `keys_answer`. */
  readonly keysTimeoutMs: number
  readonly clock: Clock
  readonly log: Logger
  readonly fault: (peer: string, code: string, detail: string) => void
}

/** Counters for tests and operators. */
export interface KeysRelayStats {
  /** `keys_query` frames sent. */
  asked: number
  /** `keys_query` frames of other servers answered with keys. */
  answered: number
  /** `keys_query` frames of other servers refused. */
  refused: number
}

export class FederatedKeys implements RemoteKeys {
  readonly stats: KeysRelayStats = { asked: 0, answered: 0, refused: 0 }
  readonly #o: FederatedKeysOptions
  /** Queries awaiting an answer, by `peer req_id`. */
  readonly #requests: PeerRequests<KeysQueryFrame, KeysAnswerFrame>
  readonly #slots = new PeerSlots(
    MAX_IN_FLIGHT_PER_PEER,
    MAX_QUEUED_PER_PEER,
    (server) => `too many key queries to ${server} at once`,
  )
  readonly #answerRate: RateLimiter

  constructor(options: FederatedKeysOptions) {
    this.#o = options
    this.#requests = new PeerRequests(options.links, options.log, 'keys query')
    this.#answerRate = new RateLimiter(options.clock, ANSWER_BURST, ANSWERS_PER_SECOND)
    options.keys.remote = this
  }

  // ---- asker ----

  async query(server: string, users: readonly string[]): Promise<RemoteKeysAnswer> {
    if (!this.#o.links.isAllowed(server))
      throw new ParleyError('P_FORBIDDEN', `federation with ${server} is not allowed`)
    const chunks: string[][] = []
    for (let i = 0; i < users.length; i += MAX_KEYS_PER_FRAME)
      chunks.push(users.slice(i, i + MAX_KEYS_PER_FRAME))
    const answers = await Promise.all(chunks.map((chunk) => this.#queryChunk(server, chunk)))
    const device_lists: Record<string, RemoteKeysAnswer['device_lists'][string]> = {}
    const prekeys: Record<string, RemoteKeysAnswer['prekeys'][string]> = {}
    for (const answer of answers) {
      Object.assign(device_lists, answer.device_lists)
      Object.assign(prekeys, answer.prekeys)
    }
    return { device_lists, prekeys }
  }

  async #queryChunk(server: string, users: readonly string[]): Promise<RemoteKeysAnswer> {
    await this.#slots.take(server)
    let answer: KeysAnswerFrame
    try {
      this.stats.asked++
      answer = await this.#requests.ask(
        server,
        {
          type: 'keys_query',
          req_id: randomBytes(16).toString('base64url'),
          users: [...users],
        },
        this.#o.keysTimeoutMs,
      )
    } finally {
      this.#slots.release(server)
    }
    if ('errcode' in answer) {
      if (answer.errcode === 'P_LIMIT_EXCEEDED')
        throw new ParleyError('P_UNAVAILABLE', `${server} is busy; try again`, 1000)
      throw new ParleyError('P_UNAVAILABLE', `${server} refused the key query`)
    }
    // Nothing the peer says is used before it is checked.
    const asked = new Set(users)
    const lie = (detail: string): ParleyError => {
      this.#o.fault(server, 'bad_keys', detail)
      return new ParleyError('P_UNAVAILABLE', `${server} sent keys that fail verification`)
    }
    for (const [user, list] of Object.entries(answer.device_lists)) {
      if (!asked.has(user)) throw lie(`keys of ${user}, who was not asked about`)
      if (list.user_id !== user) throw lie(`the device list of ${list.user_id} filed under ${user}`)
      if (deviceListProblem(list) !== null) throw lie(`the device list of ${user} does not verify`)
    }
    for (const user of Object.keys(answer.prekeys))
      if (!asked.has(user)) throw lie(`prekeys of ${user}, who was not asked about`)
    return { device_lists: answer.device_lists, prekeys: answer.prekeys }
  }

  onAnswer(peer: string, frame: KeysAnswerFrame): void {
    this.#requests.settle(peer, frame.req_id, frame)
  }

  keysChanged(server: string, userId: string): void {
    // Like typing and presence, not queued: a server without a link now re-queries when it needs keys.
    if (this.#o.links.linkTo(server)) this.#o.links.send(server, { type: 'keys_changed', user_id: userId })
  }

  // ---- answerer ----

  onQuery(peer: string, frame: KeysQueryFrame): void {
    const refuse = (errcode: string, error: string) => {
      this.stats.refused++
      this.#o.links.send(peer, { type: 'keys_answer', req_id: frame.req_id, errcode, error })
    }
    // A server asks about our users only (FED-2): asking about anyone else is a peer speaking out of turn.
    const foreign = frame.users.find((u) => !this.#o.keys.isLocal(u))
    if (foreign !== undefined) {
      this.#o.fault(peer, 'not_our_user', `keys_query for ${foreign}`)
      return refuse('P_BAD_REQUEST', 'ask each server about its own users')
    }
    if (this.#answerRate.take(peer) > 0) return refuse('P_LIMIT_EXCEEDED', 'too many key queries')
    const answer = this.#o.keys.forPeer(peer, frame.users)
    if (this.#o.links.send(peer, { type: 'keys_answer', req_id: frame.req_id, ...answer }))
      this.stats.answered++
  }

  onKeysChanged(peer: string, frame: KeysChangedRelayFrame): void {
    // A server speaks for its own users only (FED-2).
    if (parseUserId(frame.user_id)?.server !== peer)
      return this.#o.fault(peer, 'spoofed_user', `keys_changed for ${frame.user_id}`)
    this.#o.keys.remoteKeysChanged(frame.user_id)
  }

  // ---- links ----

  /** A new link to the peer (maybe replacing one): queries sent on the old one go again. */
  linkUp(peer: string): void {
    this.#requests.linkUp(peer)
  }

  /** The peer has no link: its queries fail now rather than at their deadline. */
  linkDown(peer: string): void {
    this.#requests.linkDown(peer)
  }
}
