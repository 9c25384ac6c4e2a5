/**
 * @parley/protocol: what both ends of the wire share. Browser-safe; server signing lives in
 * `@parley/protocol/signing` and the headless client in `@parley/protocol/client`.
 */
export * from './encoding.ts'
export * from './canonical-json.ts'
export * from './ids.ts'
export * from './errors.ts'
export * from './events.ts'
export * from './key-document.ts'
export * from './result.ts'
export * from './crypto/index.ts'
export * as schema from './schema/index.ts'
