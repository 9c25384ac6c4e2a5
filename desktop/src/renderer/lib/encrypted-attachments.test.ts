import { describe, expect, it } from 'vitest'
import { concatBytes, fromBase64Url, toBase64Url } from '@parley/protocol'
import { blake2b256, e2e } from '@parley/protocol/crypto'
import { Attachment, AttachmentEncryption } from '@parley/protocol/schema'
import { attachmentFor, transferError } from './attachments.ts'
import { encryptFile } from '@parley/protocol/client'
import { AttachmentDecryptError, decryptMedia } from './encrypted-attachments.ts'
import { t } from './i18n.ts'

const ROOM = '!room:acme.example'
const CHUNK = e2e.ATTACHMENT_CHUNK_BYTES + e2e.ATTACHMENT_CHUNK_OVERHEAD
const file = (length: number) => Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff)

/** What decryptMedia threw: its reason and message, or fails the test if it returned. */
async function refusal(promise: Promise<unknown>): Promise<{ reason: string; message: string }> {
  const error = await promise.then(
    () => new Error('expected a refusal, got plaintext'),
    (e: unknown) => e,
  )
  if (!(error instanceof AttachmentDecryptError)) throw error
  return { reason: error.reason, message: error.message }
}

/** The attachment's encryption with the hash of `ciphertext`: reaches the checks behind the hash. */
const rehashed = (encryption: AttachmentEncryption, ciphertext: Uint8Array) => ({
  ...encryption,
  hash: toBase64Url(blake2b256(ciphertext)),
})

describe('encrypted attachments (E2E.md section 2.5)', () => {
  it('round-trips a file through encryptFile and decryptMedia, with a valid wire object', async () => {
    const plaintext = file(3 * e2e.ATTACHMENT_CHUNK_BYTES + 10)
    const { ciphertext, encryption } = await encryptFile(plaintext, ROOM)
    expect(AttachmentEncryption.parse(encryption)).toEqual(encryption)
    expect(ciphertext.length).toBe(plaintext.length + 4 * e2e.ATTACHMENT_CHUNK_OVERHEAD)
    // The upload carries none of the plaintext: not even its first bytes (a PNG signature would show).
    expect(Buffer.from(ciphertext).includes(Buffer.from(plaintext.subarray(0, 16)))).toBe(false)
    const decrypted = await decryptMedia(ciphertext, { size: plaintext.length, encryption }, ROOM)
    expect(Buffer.compare(decrypted, plaintext)).toBe(0)
    const empty = await encryptFile(new Uint8Array(0), ROOM)
    expect(await decryptMedia(empty.ciphertext, { size: 0, encryption: empty.encryption }, ROOM)).toEqual(
      new Uint8Array(0),
    )
  })

  it('uses a fresh key and upload id per file', async () => {
    const a = await encryptFile(file(10), ROOM)
    const b = await encryptFile(file(10), ROOM)
    expect(a.encryption.key).not.toBe(b.encryption.key)
    expect(a.encryption.upload_id).not.toBe(b.encryption.upload_id)
    expect(fromBase64Url(a.encryption.upload_id)).toHaveLength(16)
  })

  it('describes the plaintext in the attachment, and the uploaded ciphertext by its sha256', async () => {
    const { ciphertext, encryption } = await encryptFile(file(1000), ROOM)
    const upload = { media_id: 'A'.repeat(22), size: ciphertext.length, sha256: 'c'.repeat(64) }
    const picked = { name: 'photo.png', type: 'image/png', size: 1000 }
    const attachment = attachmentFor(picked, upload, { width: 4, height: 3 }, encryption)
    expect(attachment).toEqual({
      media_id: upload.media_id,
      name: 'photo.png',
      mime: 'image/png',
      size: 1000,
      width: 4,
      height: 3,
      sha256: upload.sha256,
      encryption,
    })
    expect(Attachment.parse(attachment)).toEqual(attachment)
  })

  it('shows a refusal to the user as the reason a download failed', () => {
    expect(transferError('attachment.failed', 'a.png', new AttachmentDecryptError('hash_mismatch'))).toBe(
      t('attachment.failed', { name: 'a.png', reason: t('attachment.e2e.altered') }),
    )
  })

  describe('fails closed (E2E.md section 3 row 17)', async () => {
    const plaintext = file(2 * e2e.ATTACHMENT_CHUNK_BYTES + 100) // three chunks
    const { ciphertext, encryption } = await encryptFile(plaintext, ROOM)
    const size = plaintext.length

    it('on bytes that differ from the announced hash', async () => {
      const flipped = ciphertext.slice()
      flipped[10]! ^= 1
      expect(await refusal(decryptMedia(flipped, { size, encryption }, ROOM))).toEqual({
        reason: 'altered',
        message: t('attachment.e2e.altered'),
      })
    })

    it('on a truncated stream (the last chunk dropped) and on bytes after the end', async () => {
      const dropped = ciphertext.subarray(0, 2 * CHUNK)
      expect(
        (await refusal(decryptMedia(dropped, { size, encryption: rehashed(encryption, dropped) }, ROOM)))
          .reason,
      ).toBe('incomplete')
      const appended = concatBytes(ciphertext, ciphertext.subarray(0, 17))
      expect(
        (await refusal(decryptMedia(appended, { size, encryption: rehashed(encryption, appended) }, ROOM)))
          .reason,
      ).toBe('incomplete')
    })

    it('in another room or under another upload id (the first chunk is bound to both)', async () => {
      expect(
        (await refusal(decryptMedia(ciphertext, { size, encryption }, '!other:acme.example'))).reason,
      ).toBe('undecryptable')
      const other = { ...encryption, upload_id: toBase64Url(new Uint8Array(16)) }
      expect((await refusal(decryptMedia(ciphertext, { size, encryption: other }, ROOM))).reason).toBe(
        'undecryptable',
      )
    })

    it('on a tampered or reordered chunk, or a wrong key', async () => {
      const tampered = ciphertext.slice()
      tampered[CHUNK + 5]! ^= 0x80
      const reordered = concatBytes(
        ciphertext.subarray(CHUNK, 2 * CHUNK),
        ciphertext.subarray(0, CHUNK),
        ciphertext.subarray(2 * CHUNK),
      )
      for (const bad of [tampered, reordered])
        expect(
          (await refusal(decryptMedia(bad, { size, encryption: rehashed(encryption, bad) }, ROOM))).reason,
        ).toBe('undecryptable')
      const wrongKey = { ...encryption, key: toBase64Url(new Uint8Array(32).fill(9)) }
      expect((await refusal(decryptMedia(ciphertext, { size, encryption: wrongKey }, ROOM))).reason).toBe(
        'undecryptable',
      )
    })

    it('on a size other than the plaintext’s', async () => {
      const refused = await refusal(decryptMedia(ciphertext, { size: size + 1, encryption }, ROOM))
      expect(refused).toEqual({ reason: 'invalid', message: t('attachment.e2e.invalid') })
      // One byte less than the stream holds: the ciphertext is longer than that size allows.
      expect((await refusal(decryptMedia(ciphertext, { size: size - 1, encryption }, ROOM))).reason).toBe(
        'incomplete',
      )
    })

    it('refuses a plain attachment as a caller bug', async () => {
      await expect(decryptMedia(ciphertext, { size }, ROOM)).rejects.toThrow(TypeError)
    })
  })
})
