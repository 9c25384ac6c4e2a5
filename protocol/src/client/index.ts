/**
 * `@parley/protocol/client`: the headless Parley client (auth, sync, outbox, REST), for the desktop
 * app, tests, benchmarks and bots. Browser-safe: WebSocket, fetch, storage and time are injected.
 */
export * from './client.ts'
export * from './emitter.ts'
export * from './errors.ts'
export * from './http.ts'
export * from './socket.ts'
export * from './store.ts'
export * from './timing.ts'
export * from './e2e/end-to-end.ts'
export * from './e2e/attachments.ts'
export * from './e2e/key-backup.ts'
export * from './e2e/membership.ts'
