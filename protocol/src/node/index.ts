/**
 * `@parley/protocol/node`: Node.js-only helpers of the client library (worker threads), for CLIs,
 * bots and tests. Browser code must not import this entry point.
 */
export * from './passphrase-kdf.ts'
