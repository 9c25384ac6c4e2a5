/**
 * Media: files stored under their SHA-256 in the data directory (never under a user-chosen name,
 * AC-5), readable by the uploader and the members of the room it was uploaded to.
 */
import { createHash } from 'node:crypto'
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ParleyError, randomBytes, toBase64Url } from '@parley/protocol'
import type { Clock } from '../clock.ts'
import type { MediaRow, Repos } from '../db/repos/index.ts'
import { notMember } from './room-rules.ts'

const notFound = () => new ParleyError('P_NOT_FOUND', 'media not found')
const SAFE_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$/

export class MediaService {
  readonly #dir: string

  constructor(
    private readonly repos: Repos,
    dataDir: string,
    private readonly clock: Clock,
  ) {
    this.#dir = join(dataDir, 'media')
  }

  async init(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 })
  }

  async upload(userId: string, room: string, bytes: Uint8Array, contentType: string, filename: string) {
    if (this.repos.memberships.get(room, userId)?.membership !== 'join') throw notMember()
    const type = SAFE_TYPE.test(contentType.toLowerCase())
      ? contentType.toLowerCase()
      : 'application/octet-stream'
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    const path = join(this.#dir, sha256)
    const tmp = `${path}.${toBase64Url(randomBytes(6))}.tmp`
    // Durable before the row that points at it: write, fsync, rename, fsync the directory.
    try {
      const file = await open(tmp, 'wx', 0o600)
      try {
        await file.writeFile(bytes)
        await file.sync()
      } finally {
        await file.close()
      }
      await rename(tmp, path)
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
    const row: MediaRow = {
      media_id: toBase64Url(randomBytes(16)),
      owner: userId,
      room_id: room,
      sha256,
      size: bytes.length,
      content_type: type,
      // Display name only: control characters and path separators are dropped.
      // eslint-disable-next-line no-control-regex
      filename: filename.replace(/[\x00-\x1f\x7f/\\]/g, '_').slice(0, 255) || 'file',
      created_ts: this.clock.now(),
    }
    this.repos.media.insert(row)
    return { media_id: row.media_id, size: row.size, content_type: row.content_type }
  }

  /** The file, if the user uploaded it or is joined to its room. Otherwise "not found", whether or not it exists. */
  async download(userId: string, mediaId: string): Promise<{ row: MediaRow; bytes: Buffer }> {
    if (!/^[A-Za-z0-9_-]{22}$/.test(mediaId)) throw notFound()
    const row = this.repos.media.get(mediaId)
    if (!row) throw notFound()
    if (row.owner !== userId && this.repos.memberships.get(row.room_id, userId)?.membership !== 'join')
      throw notFound()
    return { row, bytes: await readFile(join(this.#dir, row.sha256)) }
  }
}
