/**
 * Media across servers (docs/federation.md, "Media"), over the sealed link: `media_get` asks the
 * origin for one chunk at an offset, `media_part` answers with the media's facts and the chunk,
 * `media_error` refuses. Pull-based, one chunk in flight per transfer, so a transfer never floods the
 * link and the requester sets the pace.
 *
 * As the requester, every answer is checked before it is used: it must be for the media and offset
 * asked, its facts may not change between parts, the size must be within our own limit (the peer's
 * word on length is never trusted: bytes beyond its declared size are refused) and the whole must hash
 * to the declared SHA-256. As the origin, each request is authorised on its own (the requesting server
 * must have, or have had after the upload, a member in the media's room) and refused with the same
 * `P_NOT_FOUND` whether the media is missing or not theirs.
 */
import { createHash, randomBytes } from 'node:crypto'
import { fromBase64Url, ParleyError } from '@parley/protocol'
import {
  MEDIA_CHUNK_BYTES,
  type MediaErrorFrame,
  type MediaGetFrame,
  type MediaPartFrame,
} from '@parley/protocol/federation'
import type { Logger } from '../logger.ts'
import type { MediaService, RemoteMediaSink, RemoteMediaSource } from '../services/media.ts'
import type { LinkManager } from './link-manager.ts'
import { PeerRequests, PeerSlots } from './peer-requests.ts'

/** Reads served to one peer at once; more are refused with P_LIMIT_EXCEEDED. */
const MAX_SERVING_PER_PEER = 8
/** A peer whose link holds this much unsent data gets no more chunks until it reads (P_LIMIT_EXCEEDED). */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024
/** Fetches waiting for a slot, per peer, as a multiple of the fetches allowed at once. */
const QUEUE_FACTOR = 8

export interface FederatedMediaOptions {
  readonly links: LinkManager
  readonly media: MediaService
  /** Fetches from one peer at once. */
  readonly mediaFetchesPerPeer: number
  /** Longest wait for the answer to one `media_get`. */
  readonly mediaTimeoutMs: number
  readonly log: Logger
  readonly fault: (peer: string, code: string, detail: string) => void
}

/** Counters for tests and operators. */
export interface MediaRelayStats {
  /** Fetches from other servers that completed and verified. */
  fetched: number
  /** Fetches from other servers that failed (unreachable, refused, lying, timed out). */
  failed: number
  /** Transfers served to other servers (counted at their first chunk). */
  served: number
  /** Chunks served to other servers. */
  chunksServed: number
  /** Requests of other servers refused. */
  refused: number
}

type Answer = MediaPartFrame | MediaErrorFrame

const notFound = () => new ParleyError('P_NOT_FOUND', 'media not found')

export class FederatedMedia implements RemoteMediaSource {
  readonly stats: MediaRelayStats = { fetched: 0, failed: 0, served: 0, chunksServed: 0, refused: 0 }
  readonly #o: FederatedMediaOptions
  readonly #requests: PeerRequests<MediaGetFrame, Answer>
  /** Per peer: fetches running, and those waiting for a slot. */
  readonly #slots: PeerSlots
  /** Per peer: chunk reads we are serving right now. */
  readonly #serving = new Map<string, number>()

  constructor(options: FederatedMediaOptions) {
    this.#o = options
    this.#requests = new PeerRequests(options.links, options.log, 'media fetch')
    this.#slots = new PeerSlots(
      options.mediaFetchesPerPeer,
      options.mediaFetchesPerPeer * QUEUE_FACTOR,
      (server) => `too many media downloads from ${server} at once`,
    )
    options.media.remote = this
  }

  // ---- requester ----

  async fetch(server: string, mediaId: string, maxBytes: number, sink: RemoteMediaSink): Promise<void> {
    if (!this.#o.links.isAllowed(server))
      throw new ParleyError('P_FORBIDDEN', `federation with ${server} is not allowed`)
    await this.#slots.take(server)
    try {
      await this.#transfer(server, mediaId, maxBytes, sink)
      this.stats.fetched++
    } catch (err) {
      this.stats.failed++
      throw err
    } finally {
      this.#slots.release(server)
    }
  }

  async #transfer(server: string, mediaId: string, maxBytes: number, sink: RemoteMediaSink): Promise<void> {
    const hash = createHash('sha256')
    let facts: MediaPartFrame | null = null
    let offset = 0
    const lie = (detail: string): ParleyError => {
      this.#o.fault(server, 'bad_media', `${mediaId}: ${detail}`)
      return new ParleyError('P_UNAVAILABLE', `${server} sent media that fails verification`)
    }
    for (;;) {
      const answer = await this.#requests.ask(
        server,
        {
          type: 'media_get',
          req_id: randomBytes(16).toString('base64url'),
          media_id: mediaId,
          offset,
        },
        this.#o.mediaTimeoutMs,
      )
      if (answer.type === 'media_error') throw this.#refusal(server, answer)
      if (answer.media_id !== mediaId || answer.offset !== offset)
        throw lie(`answered ${answer.media_id} at ${answer.offset}, asked at ${offset}`)
      if (facts === null) {
        // Our limit, not theirs: larger media is refused before a byte of it is taken.
        if (answer.size > maxBytes)
          throw new ParleyError('P_TOO_LARGE', `media is over this server's limit of ${maxBytes} bytes`)
        facts = answer
        sink.begin({
          room: answer.room,
          size: answer.size,
          sha256: answer.sha256,
          contentType: answer.content_type,
          filename: answer.filename,
        })
      } else if (
        answer.room !== facts.room ||
        answer.size !== facts.size ||
        answer.sha256 !== facts.sha256 ||
        answer.content_type !== facts.content_type ||
        answer.filename !== facts.filename
      ) {
        throw lie('its facts changed between chunks')
      }
      const chunk = fromBase64Url(answer.data) // the schema checked it decodes
      if (chunk === null || chunk.length > MEDIA_CHUNK_BYTES) throw lie('a chunk over the chunk size')
      if (offset + chunk.length > facts.size) throw lie(`more bytes than its declared ${facts.size}`)
      // Every chunk but the last is full: a peer cannot drip a file a byte at a time, holding our
      // fetch slots and temp files for as long as it likes (the per-chunk timeout alone allows that).
      if (chunk.length !== Math.min(MEDIA_CHUNK_BYTES, facts.size - offset))
        throw lie(`a chunk of ${chunk.length} bytes at ${offset} (expected a full chunk)`)
      hash.update(chunk)
      await sink.write(chunk)
      offset += chunk.length
      if (offset === facts.size) break
    }
    if (hash.digest('hex') !== facts.sha256) throw lie('bytes do not match their sha256')
  }

  /** The origin's refusal as we tell our user: "not found" says nothing about existence. */
  #refusal(server: string, answer: MediaErrorFrame): ParleyError {
    if (answer.errcode === 'P_NOT_FOUND' || answer.errcode === 'P_FORBIDDEN') return notFound()
    if (answer.errcode === 'P_LIMIT_EXCEEDED')
      return new ParleyError('P_UNAVAILABLE', `${server} is busy; try again`, 1000)
    return new ParleyError('P_UNAVAILABLE', `${server} cannot serve this media right now`)
  }

  onPart(peer: string, frame: MediaPartFrame): void {
    this.#answer(peer, frame)
  }

  onError(peer: string, frame: MediaErrorFrame): void {
    this.#answer(peer, frame)
  }

  #answer(peer: string, frame: Answer): void {
    this.#requests.settle(peer, frame.req_id, frame)
  }

  // ---- origin ----

  onGet(peer: string, frame: MediaGetFrame): void {
    const refuse = (errcode: string, error: string) => {
      this.stats.refused++
      this.#o.links.send(peer, { type: 'media_error', req_id: frame.req_id, errcode, error })
    }
    const serving = this.#serving.get(peer) ?? 0
    if (serving >= MAX_SERVING_PER_PEER || this.#o.links.bufferedAmount(peer) > MAX_BUFFERED_BYTES)
      return refuse('P_LIMIT_EXCEEDED', 'too many media reads at once')
    const row = this.#o.media.forPeer(peer, frame.media_id)
    if (!row) return refuse('P_NOT_FOUND', 'media not found')
    if (frame.offset > row.size || (frame.offset === row.size && row.size > 0))
      return refuse('P_BAD_REQUEST', 'offset past the end')
    this.#serving.set(peer, serving + 1)
    this.#o.media
      .readChunk(row, frame.offset, MEDIA_CHUNK_BYTES)
      .then(
        (bytes) => {
          const sent = this.#o.links.send(peer, {
            type: 'media_part',
            req_id: frame.req_id,
            media_id: row.media_id,
            room: row.room_id,
            size: row.size,
            sha256: row.sha256,
            content_type: row.content_type,
            filename: row.filename,
            offset: frame.offset,
            data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url'),
          })
          if (!sent) return
          this.stats.chunksServed++
          if (frame.offset === 0) this.stats.served++
        },
        (err: unknown) => {
          this.#o.log.error(
            { peer, media_id: row.media_id, err: String(err) },
            'reading media for a peer failed',
          )
          refuse('P_UNAVAILABLE', 'media cannot be read right now')
        },
      )
      .finally(() => {
        const n = (this.#serving.get(peer) ?? 1) - 1
        if (n > 0) this.#serving.set(peer, n)
        else this.#serving.delete(peer)
      })
  }

  // ---- links ----

  /** A new link to the peer (maybe replacing one): requests sent on the old one go again. */
  linkUp(peer: string): void {
    this.#requests.linkUp(peer)
  }

  /** The peer has no link: its transfers fail now rather than at their deadline. */
  linkDown(peer: string): void {
    this.#requests.linkDown(peer)
  }
}
