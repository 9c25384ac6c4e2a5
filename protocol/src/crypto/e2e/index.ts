/**
 * The pure end-to-end encryption core of E2E.md section 2, on libsodium primitives: fail-closed
 * wrappers (errors, primitives), the group ratchet (section 2.4), to-device envelopes and signed
 * prekeys (sections 2.1-2.2), identity keys, device lists and safety numbers (section 2.1), key backup
 * and secret storage (section 2.5), attachments (section 2.5) and signed membership (section 2.3). No I/O, no storage: callers persist
 * state and move bytes. Await `sodiumReady()` once before calling anything here.
 */
export * from './errors.ts'
export * from './primitives.ts'
export * from './ratchet.ts'
export * from './envelope.ts'
export * from './identity.ts'
export * from './backup.ts'
export * from './attachment.ts'
export * from './self-test.ts'
export * from './membership.ts'
