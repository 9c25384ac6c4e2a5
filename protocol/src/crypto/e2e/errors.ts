/**
 * The one error type of the end-to-end encryption core (E2E.md section 2; the fail-closed rule of the
 * "libsodium traps" paragraph). Every check on untrusted input, and every libsodium call that can fail,
 * ends in an {@link E2eError} whose `code` says why. No function of this folder returns partial
 * plaintext: on any failure it throws before handing anything back.
 */
import { err, ok, type Result } from '../../result.ts'

/**
 * Why an E2E operation failed (E2E.md section 2). Codes are stable and safe to log; messages may name
 * the field but never contain key material or plaintext.
 *
 * - `bad_input`: malformed bytes, lengths, JSON shapes or parameters.
 * - `bad_key`: a public key libsodium refuses (a low-order X25519 point).
 * - `bad_signature`: an Ed25519 signature did not verify.
 * - `decrypt_failed`: AEAD or secretstream authentication failed.
 * - `bad_padding`: the decrypted padding is not ISO/IEC 7816-4 over 256-byte blocks.
 * - `replay`: the same `(session, index)` or envelope `H(EK)` was already accepted.
 * - `expired`: a session, prekey or message is past its validity window.
 * - `not_yet_valid`: a timestamp lies too far in the future.
 * - `wrong_room`: the message or key belongs to another room.
 * - `wrong_sender`: header or key sender differs from the authenticated one.
 * - `wrong_recipient`: an envelope addressed to another user or device.
 * - `wrong_user`: a device list or certificate for another user.
 * - `wrong_identity`: a user identity key differs from the pinned or expected one.
 * - `wrong_key`: a backup key does not match the backup's `key_check`.
 * - `unknown_session`: no inbound group session with that id.
 * - `unknown_index`: the session key was received after this index (E2E.md section 3 row 9).
 * - `unknown_prekey`: no (longer a) signed prekey with that id.
 * - `unknown_device`: the sender device is not in a verified device list.
 * - `too_far_ahead`: a ratchet index at or beyond `max_msgs`.
 * - `session_exhausted`: an outbound session used up `max_msgs` or `max_age` (rotate first).
 * - `truncated`: a stream ended before its final chunk.
 * - `trailing_data`: bytes after a stream's final chunk.
 * - `hash_mismatch`: ciphertext bytes differ from their announced hash.
 * - `rollback`: a device list whose version is not newer than the trusted one.
 * - `bad_chain`: a device list whose `prev_hash` does not link to the trusted one.
 * - `bad_checksum`: a recovery key with a wrong checksum or prefix.
 * - `self_test_failed`: a primitive gave a wrong known answer: this build's crypto cannot be trusted.
 */
export type E2eErrorCode =
  | 'bad_input'
  | 'bad_key'
  | 'bad_signature'
  | 'decrypt_failed'
  | 'bad_padding'
  | 'replay'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_room'
  | 'wrong_sender'
  | 'wrong_recipient'
  | 'wrong_user'
  | 'wrong_identity'
  | 'wrong_key'
  | 'unknown_session'
  | 'unknown_index'
  | 'unknown_prekey'
  | 'unknown_device'
  | 'too_far_ahead'
  | 'session_exhausted'
  | 'truncated'
  | 'trailing_data'
  | 'hash_mismatch'
  | 'rollback'
  | 'bad_chain'
  | 'bad_checksum'
  | 'self_test_failed'

/** A failed E2E check or libsodium call (E2E.md section 2). Fail closed: nothing decrypted escapes it. */
export class E2eError extends Error {
  override name = 'E2eError'
  constructor(
    readonly code: E2eErrorCode,
    message: string = code,
  ) {
    super(message)
  }
}

/** True if `error` is an {@link E2eError}, optionally with one of `codes` (E2E.md section 2). */
export function isE2eError(error: unknown, ...codes: E2eErrorCode[]): error is E2eError {
  return error instanceof E2eError && (codes.length === 0 || codes.includes(error.code))
}

/**
 * Runs `fn` and turns an {@link E2eError} into a failed {@link Result} (E2E.md section 2), for callers
 * that prefer values to exceptions. Any other exception (a bug) still propagates.
 */
export function tryE2e<T>(fn: () => T): Result<T, E2eError> {
  try {
    return ok(fn())
  } catch (error) {
    if (error instanceof E2eError) return err(error)
    throw error
  }
}
