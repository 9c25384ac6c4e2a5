/** Cryptographic primitives shared by both ends of the wire. The only importer of libsodium. */
export { sodiumReady, sodium } from './sodium.ts'
export { blake2b256, bytesEqual, sha256, toHex } from './hash.ts'
export * from './ed25519.ts'
export * from './kx.ts'
export * from './secretstream.ts'
export * as e2e from './e2e/index.ts'
