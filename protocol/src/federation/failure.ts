/**
 * Why a link died. Every failure is final: the handshake or channel that returned it refuses all
 * later input with `closed`, and the driver closes the socket (docs/federation.md, "Failure codes").
 */

/** Every reason a link handshake or sealed channel can fail. */
export type LinkFailureReason =
  // ---- handshake ----
  /**
   * Handshake: not JSON, not an object, an unknown `type`, a schema violation or over the size limit.
   * Sealed channel: an empty or non-UTF-8 frame, or a FINAL that carries bytes.
   */
  | 'bad_frame'
  /** A well-formed frame the current state does not accept (or a binary frame during the handshake, a text frame after it). */
  | 'unexpected_frame'
  /** A HELLO whose `v` is a number other than 1. */
  | 'unsupported_version'
  /** `to` is not our server name. */
  | 'bad_to'
  /** `from` is our own name, or (at the initiator) not the server we dialled. */
  | 'bad_from'
  /** The federation policy (allowlist / denylist) refuses `from`. */
  | 'not_allowed'
  /** `ts` more than 5 minutes away from our clock, in either direction. */
  | 'stale_ts'
  /** The nonce was seen before within the replay window. */
  | 'replayed_nonce'
  /** `kid` does not resolve to a key of `from`. */
  | 'unknown_key'
  /** A transcript signature does not verify. */
  | 'bad_signature'
  /** The peer's ephemeral key gives no usable shared secret (low-order point) or reflects ours. */
  | 'bad_eph_key'
  /** The replay cache is full; nothing was accepted. Retry later. */
  | 'busy'
  /** The driver gave up (deadline passed, socket closed) or an injected callback threw. */
  | 'aborted'
  // ---- sealed channel ----
  /** The first binary frame after AUTH is not a 24-byte secretstream header. */
  | 'bad_header'
  /** A sealed frame over 1 MiB of plaintext (`MAX_FRAME_BYTES`). */
  | 'too_large'
  /** A sealed frame that does not decrypt: forged, altered, reordered, replayed, truncated or dropped before it. */
  | 'bad_ciphertext'
  /** An authentic sealed frame with a secretstream tag other than MESSAGE or FINAL. */
  | 'bad_tag'
  /** Input after the peer's FINAL. */
  | 'after_final'
  // ---- both ----
  /** Input after an earlier failure. */
  | 'closed'

/** A failure with a human-readable detail (for logs; never needed to decide anything). */
export interface LinkFailure {
  readonly reason: LinkFailureReason
  readonly message: string
}
