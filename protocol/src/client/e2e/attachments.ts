/**
 * Encrypted attachments on the wire (E2E.md section 2.5): a file is encrypted on the device with the
 * crypto core's `encryptAttachment` under a fresh key and upload id, the ciphertext is uploaded under
 * {@link ENCRYPTED_UPLOAD}'s neutral name and type, and {@link AttachmentEncryption} (key, header,
 * hash, upload id) goes in the message's `attachment.encryption`, which travels only inside an
 * `m.encrypted` event. Decrypting is the core's `decryptAttachment` (callers map its errors).
 */
import * as e2e from '../../crypto/e2e/index.ts'
import { sodiumReady } from '../../crypto/sodium.ts'
import { randomBytes, toBase64Url } from '../../encoding.ts'
import type { AttachmentEncryption } from '../../schema/keys.ts'

/** The name and type every encrypted upload carries: the server learns neither the real ones nor the content. */
export const ENCRYPTED_UPLOAD = { name: 'encrypted.bin', mime: 'application/octet-stream' } as const

/** Bytes of a fresh upload id (E2E.md section 2.5: `upload_id` in the first chunk's AD). */
const UPLOAD_ID_BYTES = 16

/** A file encrypted for a room: the bytes to upload and the `encryption` to put in its attachment. */
export interface EncryptedFile {
  readonly ciphertext: Uint8Array
  readonly encryption: AttachmentEncryption
}

/**
 * Encrypts a file's bytes for `room` under a fresh random key and upload id (E2E.md section 2.5).
 * Throws `E2eError` `bad_input` for a file over the core's 1 GiB bound (a caller bug: uploads are
 * refused long before).
 */
export async function encryptFile(bytes: Uint8Array, room: string): Promise<EncryptedFile> {
  await sodiumReady()
  const uploadId = toBase64Url(randomBytes(UPLOAD_ID_BYTES))
  const sealed = e2e.encryptAttachment(bytes, { roomId: room, uploadId })
  return {
    ciphertext: sealed.ciphertext,
    encryption: {
      v: e2e.E2E_SUITE,
      upload_id: uploadId,
      key: sealed.key,
      header: sealed.header,
      hash: sealed.hash,
    },
  }
}
