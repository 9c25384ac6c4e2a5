/**
 * Media: files stored under their SHA-256 in the data directory (never under a user-chosen name,
 * AC-5). Each upload is bound to a room. Who may read it (docs/federation.md, "Media"):
 *
 * - a local user: the uploader, a joined member of the room, or a member who left it after the
 *   media arrived here (they still read the history of that time);
 * - another server (over its link): one with a user joined to the room, or one whose user left it
 *   after the upload.
 *
 * Media of other servers is fetched through the federation side ({@link RemoteMediaSource}), once,
 * and kept here under its hash like our own; the copy is read under the same rule as local media.
 */
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { ParleyError, randomBytes, toBase64Url } from '@parley/protocol'
import { MediaId } from '@parley/protocol/schema'
import type { Clock } from '../clock.ts'
import type { MediaRow, RemoteMediaRow, Repos } from '../db/repos/index.ts'
import { notMember } from './room-rules.ts'

const notFound = () => new ParleyError('P_NOT_FOUND', 'media not found')
const SAFE_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$/

/** A syntactically safe MIME type (lowercased), else `application/octet-stream`. */
export function safeContentType(contentType: string): string {
  const type = contentType.toLowerCase()
  return SAFE_TYPE.test(type) ? type : 'application/octet-stream'
}

/**
 * A display name only: control characters (C0, DEL, C1), path separators and bidirectional
 * overrides (which make `evil‮gnp.exe` look like `evilexe.png`) become `_`; lone surrogates become
 * U+FFFD; at most 255 UTF-16 units; never empty.
 */
export function safeFilename(name: string): string {
  // eslint-disable-next-line no-control-regex
  const cleaned = wellFormed(name).replace(/[\x00-\x1f\x7f-\x9f/\\\u202a-\u202e\u2066-\u2069]/g, '_')
  return wellFormed(cleaned.slice(0, 255)) || 'file'
}

/** `String.prototype.toWellFormed` (ES2024): every lone surrogate becomes U+FFFD. */
function wellFormed(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
}

/** What a download serves: the bytes and their stored facts. */
export interface StoredMedia {
  readonly size: number
  readonly content_type: string
  readonly filename: string
  readonly sha256: string
}

/** The facts an origin server gives about its media, before any byte (already checked for shape). */
export interface RemoteMediaFacts {
  readonly room: string
  readonly size: number
  readonly sha256: string
  readonly contentType: string
  readonly filename: string
}

/** Where a remote fetch puts what it receives. */
export interface RemoteMediaSink {
  /** The origin's facts, before any byte: throw to stop the transfer (nothing more is asked for). */
  begin(facts: RemoteMediaFacts): void
  /** The next chunk, in order. */
  write(chunk: Uint8Array): Promise<void>
}

/** Fetches media from the server that holds it (federation/media-relay.ts). */
export interface RemoteMediaSource {
  /**
   * Streams `mediaId` from `server` into `sink`. Resolves once every byte went to the sink and they
   * matched the facts (exactly `size` bytes, at most `maxBytes`, hashing to `sha256`); rejects with a
   * {@link ParleyError} otherwise, or with whatever `sink.begin` threw.
   */
  fetch(server: string, mediaId: string, maxBytes: number, sink: RemoteMediaSink): Promise<void>
}

/** The initiating user may not read what the origin described: others waiting on the fetch try their own. */
class NotForThisUser extends Error {}

export interface MediaServiceOptions {
  readonly serverName: string
  readonly dataDir: string
  readonly maxMediaBytes: number
  /** Our durable stream head (the sequencer's). */
  readonly streamHead: () => number
  readonly clock: Clock
}

export class MediaService {
  /** Set by the federation side; without it, other servers' media is unavailable. */
  remote: RemoteMediaSource | null = null
  readonly #dir: string
  readonly #o: MediaServiceOptions
  /** Remote fetches in flight, by `origin/media_id`: concurrent downloads of one media share one. */
  readonly #fetches = new Map<string, Promise<void>>()

  constructor(
    private readonly repos: Repos,
    options: MediaServiceOptions,
  ) {
    this.#o = options
    this.#dir = join(options.dataDir, 'media')
  }

  async init(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 })
    // Writes a crash interrupted (an upload, a fetch from another server): never referenced by a row.
    for (const name of await readdir(this.#dir))
      if (name.endsWith('.tmp')) await rm(join(this.#dir, name), { force: true })
  }

  async upload(userId: string, room: string, bytes: Uint8Array, contentType: string, filename: string) {
    if (this.repos.memberships.get(room, userId)?.membership !== 'join') throw notMember()
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    await this.#store(sha256, async (file) => {
      await file.writeFile(bytes)
    })
    const row: MediaRow = {
      media_id: toBase64Url(randomBytes(16)),
      owner: userId,
      room_id: room,
      sha256,
      size: bytes.length,
      content_type: safeContentType(contentType),
      filename: safeFilename(filename),
      created_ts: this.#o.clock.now(),
      stream_pos: this.#o.streamHead(),
    }
    this.repos.media.insert(row)
    return {
      media_id: row.media_id,
      size: row.size,
      content_type: row.content_type,
      server: this.#o.serverName,
      sha256,
    }
  }

  /** Local media, if the user may read it. Otherwise "not found", whether or not it exists. */
  async download(userId: string, mediaId: string): Promise<{ row: StoredMedia; bytes: Buffer }> {
    if (!MediaId.safeParse(mediaId).success) throw notFound()
    const row = this.repos.media.get(mediaId)
    if (!row) throw notFound()
    if (row.owner !== userId && !this.#mayRead(userId, row.room_id, row.stream_pos)) throw notFound()
    return { row, bytes: await readFile(join(this.#dir, row.sha256)) }
  }

  /**
   * Media held by `server`: ours, or a copy of another server's, fetched first if we have none (the
   * user must share a room with a user of that server, or nothing is asked; then must be a member of
   * the room the origin names). "Not found" for anything the user may not read.
   */
  async downloadFrom(
    userId: string,
    server: string,
    mediaId: string,
  ): Promise<{ row: StoredMedia; bytes: Buffer }> {
    if (server === this.#o.serverName) return this.download(userId, mediaId)
    if (!MediaId.safeParse(mediaId).success) throw notFound()
    const key = `${server}/${mediaId}`
    // A fetch refused to the user who started it is retried for the next one: at most twice more.
    for (let attempt = 0; attempt < 3; attempt++) {
      const copy = this.repos.media.getRemote(server, mediaId)
      if (copy) {
        if (!this.#mayRead(userId, copy.room_id, copy.stream_pos)) throw notFound()
        return { row: copy, bytes: await readFile(join(this.#dir, copy.sha256)) }
      }
      // Nothing goes out (nor is waited for) for a user who shares no room with anyone of that server.
      if (!this.remote || !this.repos.memberships.sharesRoomWith(userId, server)) throw notFound()
      const running = this.#fetches.get(key)
      if (running) {
        const failure = await running.then(
          () => null,
          (err: unknown) => err,
        )
        if (failure !== null && !(failure instanceof NotForThisUser)) throw failure
        continue
      }
      const fetching = this.#fetchRemote(this.remote, userId, server, mediaId).finally(() =>
        this.#fetches.delete(key),
      )
      this.#fetches.set(key, fetching)
      try {
        await fetching
      } catch (err) {
        if (err instanceof NotForThisUser) throw notFound()
        throw err
      }
    }
    throw notFound()
  }

  /**
   * Local media another server may read: its room has (or had, after the upload) a member of that
   * server. `undefined` otherwise, whether or not it exists. Copies of other servers' media are
   * never served on (they are in another table).
   */
  forPeer(peer: string, mediaId: string): MediaRow | undefined {
    const row = this.repos.media.get(mediaId)
    if (!row || !this.repos.memberships.serverMemberSince(row.room_id, peer, row.stream_pos)) return undefined
    return row
  }

  /** Up to `length` bytes of stored media from `offset` (a positional read; not the whole file). */
  async readChunk(row: StoredMedia, offset: number, length: number): Promise<Uint8Array> {
    const file = await open(join(this.#dir, row.sha256), 'r')
    try {
      const buffer = Buffer.alloc(Math.max(0, Math.min(length, row.size - offset)))
      let read = 0
      while (read < buffer.length) {
        const { bytesRead } = await file.read(buffer, read, buffer.length - read, offset + read)
        if (bytesRead === 0) throw new ParleyError('P_UNAVAILABLE', 'stored media is shorter than its record')
        read += bytesRead
      }
      return buffer
    } finally {
      await file.close()
    }
  }

  /** Joined now, or left after stream position `sincePos` (so joined while that was shared). */
  #mayRead(userId: string, room: string, sincePos: number): boolean {
    const m = this.repos.memberships.get(room, userId)
    return m !== undefined && (m.membership === 'join' || m.left_pos > sincePos)
  }

  async #fetchRemote(
    remote: RemoteMediaSource,
    userId: string,
    server: string,
    mediaId: string,
  ): Promise<void> {
    const got: { facts?: RemoteMediaFacts } = {}
    await this.#store(null, async (file) => {
      await remote.fetch(server, mediaId, this.#o.maxMediaBytes, {
        begin: (facts) => {
          // Checked before any byte is asked for: a non-member costs one chunk at most.
          if (!this.#mayRead(userId, facts.room, this.#o.streamHead())) throw new NotForThisUser()
          got.facts = facts
        },
        write: async (chunk) => {
          await file.write(chunk)
        },
      })
      // The source checked every byte against `sha256`: the file may carry that name.
      if (!got.facts) throw new ParleyError('P_UNKNOWN', 'remote fetch ended without facts')
      return got.facts.sha256
    })
    const f = got.facts!
    const row: RemoteMediaRow = {
      origin: server,
      media_id: mediaId,
      room_id: f.room,
      sha256: f.sha256,
      size: f.size,
      content_type: safeContentType(f.contentType),
      filename: safeFilename(f.filename),
      stream_pos: this.#o.streamHead(),
      fetched_ts: this.#o.clock.now(),
    }
    this.repos.media.insertRemote(row)
  }

  /**
   * Writes a file durably under its hash: to a temporary file, fsync, rename, fsync the directory.
   * `sha256` is the name if known up front; else `write` returns it (after it wrote every byte).
   * Nothing is left behind if `write` throws.
   */
  async #store(sha256: string | null, write: (file: FileHandle) => Promise<string | void>): Promise<string> {
    const tmp = join(this.#dir, `incoming.${toBase64Url(randomBytes(9))}.tmp`)
    let name: string
    try {
      const file = await open(tmp, 'wx', 0o600)
      try {
        name = (await write(file)) ?? sha256!
        await file.sync()
      } finally {
        await file.close()
      }
      if (!/^[0-9a-f]{64}$/.test(name)) throw new ParleyError('P_UNKNOWN', 'media name is not a sha256')
      await rename(tmp, join(this.#dir, name))
    } catch (err) {
      await rm(tmp, { force: true })
      throw err
    }
    const dir = await open(this.#dir, 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
    return name
  }
}
