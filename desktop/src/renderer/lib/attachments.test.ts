import { describe, expect, it } from 'vitest'
import { ApiError, NetworkError, ProtocolError } from '@parley/protocol/client'
import {
  attachmentFor,
  attachmentOf,
  isPreviewable,
  mimeOf,
  previewSize,
  sniffImage,
  transferError,
  uploadLimitOf,
} from './attachments.ts'

const bytes = (...parts: Array<string | number[]>) =>
  new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...p].map((c) => c.charCodeAt(0)) : p)))
const MEDIA_ID = 'A'.repeat(22)
const SHA = 'a'.repeat(64)

describe('attachments', () => {
  it('reads only valid attachments out of message content', () => {
    const good = { media_id: MEDIA_ID, name: 'a.png', mime: 'image/png', size: 3, width: 4, height: 5 }
    expect(attachmentOf({ body: 'x', attachment: good })).toEqual(good)
    expect(attachmentOf({ body: 'x' })).toBeNull()
    expect(attachmentOf({ attachment: { ...good, extra: '<script>' } })).toBeNull()
    expect(attachmentOf({ attachment: { ...good, width: -1 } })).toBeNull()
    expect(attachmentOf({ attachment: 'a.png' })).toBeNull()
    // The same content object gives the same attachment object (rows re-render without reloading).
    const content = { body: 'x', attachment: good }
    expect(attachmentOf(content)).toBe(attachmentOf(content))
  })

  it('previews png, jpeg, gif and webp only', () => {
    for (const mime of ['image/png', 'image/jpeg', 'image/gif', 'image/webp'])
      expect(isPreviewable({ mime }), mime).toBe(true)
    for (const mime of ['image/svg+xml', 'text/html', 'image/PNG', 'image/png; charset=x', 'application/pdf'])
      expect(isPreviewable({ mime }), mime).toBe(false)
  })

  it('recognises image bytes by their signature, and nothing else', () => {
    expect(sniffImage(bytes([0x89], 'PNG\r\n\x1a\n', [0, 0]))).toBe('image/png')
    expect(sniffImage(bytes([0xff, 0xd8, 0xff, 0xe0]))).toBe('image/jpeg')
    expect(sniffImage(bytes('GIF89a', [1]))).toBe('image/gif')
    expect(sniffImage(bytes('RIFF', [0, 0, 0, 0], 'WEBPVP8 '))).toBe('image/webp')
    expect(sniffImage(bytes('<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'))).toBeNull()
    expect(sniffImage(bytes('<!doctype html><script>1</script>'))).toBeNull()
    expect(sniffImage(bytes('RIFF', [0, 0, 0, 0], 'WAVE'))).toBeNull()
    expect(sniffImage(new Uint8Array(0))).toBeNull()
  })

  it('reserves a box scaled down to fit, never up, never zero', () => {
    expect(previewSize({ width: 100, height: 50 })).toEqual({ width: 100, height: 50 })
    expect(previewSize({ width: 720, height: 280 })).toEqual({ width: 360, height: 140 })
    expect(previewSize({ width: 1000, height: 2000 })).toEqual({ width: 140, height: 280 })
    expect(previewSize({ width: 100_000, height: 1 })).toEqual({ width: 360, height: 1 })
    expect(previewSize({})).toEqual({ width: 240, height: 180 })
  })

  it('announces plain types only, and builds a valid attachment from an upload', () => {
    expect(mimeOf({ type: 'Image/PNG' })).toBe('image/png')
    expect(mimeOf({ type: '' })).toBe('application/octet-stream')
    expect(mimeOf({ type: 'text/html; charset=utf-8' })).toBe('application/octet-stream')
    const upload = { media_id: MEDIA_ID, size: 10, sha256: SHA }
    expect(attachmentFor({ name: 'x'.repeat(300), type: 'text/plain', size: 10 }, upload, null)).toEqual({
      media_id: MEDIA_ID,
      name: 'x'.repeat(255),
      mime: 'text/plain',
      size: 10,
      sha256: SHA,
    })
    const emoji = attachmentFor({ name: 'x'.repeat(254) + '😀', type: '', size: 10 }, upload, {
      width: 2,
      height: 3,
    })
    expect(emoji.name).toBe('x'.repeat(254))
    expect(emoji).toMatchObject({ width: 2, height: 3, mime: 'application/octet-stream' })
    expect(attachmentOf({ attachment: emoji })).toEqual(emoji)
  })

  it('reads the limit out of a P_TOO_LARGE message', () => {
    expect(uploadLimitOf('uploads are limited to 1048576 bytes')).toBe(1048576)
    expect(uploadLimitOf('too large')).toBeNull()
  })
})

describe('transferError', () => {
  it('says what went wrong in words, with the cleaned file name', () => {
    const tooLarge = new ApiError('P_TOO_LARGE', 413, 'uploads are limited to 1048576 bytes')
    expect(transferError('upload.failed', 'big\r\n.bin', tooLarge)).toBe(
      'big .bin is too large: your server takes files up to 1 MB.',
    )
    expect(transferError('upload.failed', 'a', new ApiError('P_TOO_LARGE', 413, 'too large'))).toBe(
      'a is too large for your server.',
    )
    expect(transferError('upload.failed', 'a', new NetworkError('POST failed'))).toBe(
      'Could not upload a: the server could not be reached',
    )
    expect(transferError('attachment.failed', 'a', new ProtocolError('sha256'))).toBe(
      'Could not load a: the file does not match what the sender sent',
    )
    expect(transferError('attachment.failed', 'a', new ApiError('P_NOT_FOUND', 404, 'media not found'))).toBe(
      'Could not load a: media not found',
    )
  })
})
