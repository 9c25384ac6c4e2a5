/** Limits and timings of the server-to-server link (DESIGN.md section 6, docs/federation.md). */

/** A HELLO's `ts` may differ from the receiver's clock by at most this much, either way (inclusive). */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000

/**
 * The whole handshake (socket open to AUTH accepted, and to the peer's stream header) must finish
 * within this; enforcing it is the driver's job (call `abort()` and close the socket).
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000

/** Largest application frame: 1 MiB of canonical JSON before sealing. */
export const MAX_FRAME_BYTES = 1024 * 1024

/** Domain-separation prefix of the responder's (S) transcript signature. */
export const LINK_DOMAIN_SERVER = 'parley/link/S\0'

/** Domain-separation prefix of the initiator's (C) transcript signature. */
export const LINK_DOMAIN_CLIENT = 'parley/link/C\0'
