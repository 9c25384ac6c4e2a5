/**
 * Attachments of end-to-end encrypted rooms (renderer process, no DOM; E2E.md section 2.5): a file is
 * encrypted here before it is uploaded, so the homeserver stores only ciphertext, and decrypted here
 * after it is downloaded. The crypto is the core's `encryptAttachment` / `decryptAttachment`
 * (secretstream XChaCha20-Poly1305 in 64 KiB chunks, the first bound to the room and a random upload
 * id, BLAKE2b-256 of the ciphertext); this module adds the wire object ({@link AttachmentEncryption})
 * and turns the core's failures into one error with a sentence for the user. Decryption fails closed:
 * nothing of a file is returned unless all of it authenticates.
 */
import { toBase64Url } from '@parley/protocol'
import { e2e, sodium, sodiumReady } from '@parley/protocol/crypto'
import type { Attachment, AttachmentEncryption } from '@parley/protocol/schema'
import { t } from './i18n.ts'

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
 * Throws {@link e2e.E2eError} `bad_input` for a file over the core's 1 GiB bound (a caller bug:
 * uploads are refused long before).
 */
export async function encryptFile(bytes: Uint8Array, room: string): Promise<EncryptedFile> {
  await sodiumReady()
  const uploadId = toBase64Url(sodium().randombytes_buf(UPLOAD_ID_BYTES))
  const sealed = e2e.encryptAttachment(bytes, { roomId: room, uploadId })
  return {
    ciphertext: sealed.ciphertext,
    encryption: {
      v: 'e2e/v1',
      upload_id: uploadId,
      key: sealed.key,
      header: sealed.header,
      hash: sealed.hash,
    },
  }
}

/** Why an encrypted attachment was refused, by the crypto core's code. */
type Reason = 'altered' | 'incomplete' | 'undecryptable' | 'invalid'

const REASONS: Partial<Record<e2e.E2eErrorCode, Reason>> = {
  hash_mismatch: 'altered',
  truncated: 'incomplete',
  trailing_data: 'incomplete',
  decrypt_failed: 'undecryptable',
}

/**
 * A downloaded encrypted attachment that was refused (E2E.md section 3 row 17). `message` is a
 * sentence for the user; `reason` says which check failed. No part of the file comes with it.
 */
export class AttachmentDecryptError extends Error {
  override name = 'AttachmentDecryptError'
  readonly reason: Reason
  constructor(code: e2e.E2eErrorCode) {
    const reason = REASONS[code] ?? 'invalid'
    super(t(`attachment.e2e.${reason}`))
    this.reason = reason
  }
}

/**
 * The plaintext of an encrypted attachment's downloaded `ciphertext`, for the room its message came
 * from (E2E.md section 2.5). All or nothing: throws {@link AttachmentDecryptError} if the bytes differ
 * from the announced hash (`altered`), end early or run on (`incomplete`), do not authenticate, were
 * tampered with or belong to another room or upload (`undecryptable`), or decrypt to another size than
 * the attachment's (`invalid`). Throws TypeError for an attachment without `encryption` (a caller bug).
 */
export async function decryptMedia(
  ciphertext: Uint8Array,
  attachment: Pick<Attachment, 'size' | 'encryption'>,
  room: string,
): Promise<Uint8Array> {
  const { encryption, size } = attachment
  if (encryption === undefined) throw new TypeError('decryptMedia: the attachment is not encrypted')
  await sodiumReady()
  try {
    return e2e.decryptAttachment(
      ciphertext,
      { key: encryption.key, header: encryption.header, hash: encryption.hash, size },
      { roomId: room, uploadId: encryption.upload_id },
    )
  } catch (error) {
    if (e2e.isE2eError(error)) throw new AttachmentDecryptError(error.code)
    throw error
  }
}
