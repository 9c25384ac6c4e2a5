/**
 * The server-to-server link, transport-free (DESIGN.md section 6; docs/federation.md, "Link"): the
 * handshake state machines, the sealed framing that follows them, the replay cache and the
 * simultaneous-dial rule. The homeserver drives these over a WebSocket.
 */
export * from './constants.ts'
export * from './failure.ts'
export * from './frames.ts'
export * from './transcript.ts'
export * from './replay-cache.ts'
export * from './handshake.ts'
export * from './sealed.ts'
export * from './tie-break.ts'
export * from './replication.ts'
export * from './media.ts'
export * from './keys.ts'
