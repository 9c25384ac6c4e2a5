import { describe, expect, it } from 'vitest'
import { toBase64Url } from '../encoding.ts'
import { Attachment, MessageContent } from './content.ts'
import { AttachmentEncryption } from './keys.ts'

const b64 = (n: number, fill = 1) => toBase64Url(new Uint8Array(n).fill(fill))
const encryption = { v: 'e2e/v1', upload_id: b64(16), key: b64(32, 2), header: b64(24, 3), hash: b64(32, 4) }
const attachment = { media_id: 'A'.repeat(22), name: 'a.png', mime: 'image/png', size: 3, encryption }

describe('attachment encryption schema (E2E.md section 2.5)', () => {
  it('accepts an attachment with or without encryption, also inside a message', () => {
    expect(Attachment.safeParse(attachment).success).toBe(true)
    const { encryption: _, ...plain } = attachment
    expect(Attachment.safeParse(plain).success).toBe(true)
    expect(MessageContent.safeParse({ body: 'a.png', attachment }).success).toBe(true)
  })

  it('holds every byte field to its exact length', () => {
    const wrong: Array<[keyof typeof encryption, number]> = [
      ['upload_id', 15],
      ['upload_id', 17],
      ['key', 31],
      ['key', 33],
      ['header', 23],
      ['header', 32],
      ['hash', 31],
      ['hash', 64],
    ]
    for (const [field, bytes] of wrong)
      expect(AttachmentEncryption.safeParse({ ...encryption, [field]: b64(bytes) }).success, field).toBe(
        false,
      )
  })

  it('refuses other versions, missing or extra fields and non-canonical base64url', () => {
    expect(AttachmentEncryption.safeParse({ ...encryption, v: 'e2e/v2' }).success).toBe(false)
    for (const field of Object.keys(encryption)) {
      const missing: Record<string, unknown> = { ...encryption }
      delete missing[field]
      expect(AttachmentEncryption.safeParse(missing).success, field).toBe(false)
    }
    expect(AttachmentEncryption.safeParse({ ...encryption, size: 3 }).success).toBe(false)
    expect(AttachmentEncryption.safeParse({ ...encryption, key: b64(32) + '=' }).success).toBe(false)
    expect(
      AttachmentEncryption.safeParse({ ...encryption, key: encryption.key.slice(0, 42) + 'B' }).success,
    ).toBe(false)
    expect(
      AttachmentEncryption.safeParse({ ...encryption, upload_id: '../../etc/passwd123456' }).success,
    ).toBe(false)
    expect(Attachment.safeParse({ ...attachment, encryption: null }).success).toBe(false)
    expect(Attachment.safeParse({ ...attachment, encryption: 'e2e/v1' }).success).toBe(false)
  })
})
