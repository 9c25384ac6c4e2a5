import { describe, expect, it } from 'vitest'
import { canonicalJson } from '../canonical-json.ts'
import { toBase64Url } from '../encoding.ts'
import { MAX_FRAME_BYTES } from './constants.ts'
import { MEDIA_CHUNK_BYTES, MediaErrorFrame, MediaGetFrame, MediaPartFrame } from './media.ts'
import { REPLICATION_FRAMES } from './replication.ts'

const REQ = 'RRRRRRRRRRRRRRRRRRRRRQ'
const MEDIA = 'MMMMMMMMMMMMMMMMMMMMMM'
const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'

function part(data: Uint8Array, extra: Record<string, unknown> = {}) {
  return {
    type: 'media_part',
    req_id: REQ,
    media_id: MEDIA,
    room: ROOM,
    size: data.length,
    sha256: 'a'.repeat(64),
    content_type: 'image/png',
    filename: 'x'.repeat(255),
    offset: 0,
    data: toBase64Url(data),
    ...extra,
  }
}

describe('media frames', () => {
  it('are routed like every other replication frame', () => {
    expect(REPLICATION_FRAMES.media_get).toBe(MediaGetFrame)
    expect(REPLICATION_FRAMES.media_part).toBe(MediaPartFrame)
    expect(REPLICATION_FRAMES.media_error).toBe(MediaErrorFrame)
  })

  it('accept a full chunk, and a full part stays under the 1 MiB frame limit even with a worst-case name', () => {
    const full = part(new Uint8Array(MEDIA_CHUNK_BYTES).fill(255), { filename: '\u0001'.repeat(255) })
    expect(MediaPartFrame.safeParse(full).success).toBe(true)
    expect(new TextEncoder().encode(canonicalJson(full)).length).toBeLessThan(MAX_FRAME_BYTES)
  })

  it('refuse a chunk over the chunk size, non-canonical or padded base64url, and extra fields', () => {
    expect(MediaPartFrame.safeParse(part(new Uint8Array(MEDIA_CHUNK_BYTES + 3))).success).toBe(false)
    expect(MediaPartFrame.safeParse(part(new Uint8Array(1), { data: 'AB' })).success).toBe(false) // trailing bits
    expect(MediaPartFrame.safeParse(part(new Uint8Array(1), { data: 'AA==' })).success).toBe(false)
    expect(MediaPartFrame.safeParse(part(new Uint8Array(1), { data: 'A+' })).success).toBe(false)
    expect(MediaPartFrame.safeParse(part(new Uint8Array(1), { extra: 1 })).success).toBe(false)
    expect(MediaPartFrame.safeParse(part(new Uint8Array(1), { sha256: 'A'.repeat(64) })).success).toBe(false)
    expect(MediaPartFrame.safeParse(part(new Uint8Array(1), { size: -1 })).success).toBe(false)
    expect(MediaPartFrame.safeParse(part(new Uint8Array(1), { room: 'not a room' })).success).toBe(false)
  })

  it('check requests and refusals strictly', () => {
    const get = { type: 'media_get', req_id: REQ, media_id: MEDIA, offset: 0 }
    expect(MediaGetFrame.safeParse(get).success).toBe(true)
    expect(MediaGetFrame.safeParse({ ...get, offset: 1.5 }).success).toBe(false)
    expect(MediaGetFrame.safeParse({ ...get, media_id: '../../etc/passwd' }).success).toBe(false)
    expect(MediaGetFrame.safeParse({ ...get, req_id: 'short' }).success).toBe(false)
    const error = { type: 'media_error', req_id: REQ, errcode: 'P_NOT_FOUND', error: 'media not found' }
    expect(MediaErrorFrame.safeParse(error).success).toBe(true)
    expect(MediaErrorFrame.safeParse({ ...error, errcode: 'nope' }).success).toBe(false)
  })
})
