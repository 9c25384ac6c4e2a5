/**
 * Attachments of end-to-end encrypted rooms (renderer process, no DOM; E2E.md section 2.5): a file is
 * encrypted here before it is uploaded, so the homeserver stores only ciphertext, and decrypted here
 * after it is downloaded. The crypto is the core's `encryptAttachment` / `decryptAttachment`
 * (secretstream XChaCha20-Poly1305 in 64 KiB chunks, the first bound to the room and a random upload
 * id, BLAKE2b-256 of the ciphertext); encrypting and the wire object are the client library's
 * (`encryptFile`, `ENCRYPTED_UPLOAD`); this module decrypts and turns the core's failures into one
 * error with a sentence for the user. Decryption fails closed:
 * nothing of a file is returned unless all of it authenticates.
 */
import { e2e, sodiumReady } from '@parley/protocol/crypto'
import type { Attachment } from '@parley/protocol/schema'
import { t } from './i18n.ts'

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
