/** The headless client library against real homeservers: live delivery, durable outbox, resume across a restart. */
import { rm } from 'node:fs/promises'
import WebSocket from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryStore, ParleyClient, type ParleyClientEvents } from '@parley/protocol/client'
import { startTestServer, tempDir, type TestServer } from './helpers.ts'

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

// Fast reconnects so a restart test does not wait long; jitter stays on.
const BACKOFF = { baseMs: 20, capMs: 200 }
function opts(store = new MemoryStore()) {
  return { store, WebSocket: WebSocket as never, backoff: BACKOFF }
}

async function server(dataDir?: string, port = 0): Promise<TestServer> {
  const hs = await startTestServer(dataDir ? { dataDir, port } : { port })
  cleanups.push(() => (dataDir ? hs.close() : hs.stop()))
  return hs
}

function bodies(client: ParleyClient, room: string): { list: string[]; next(n: number): Promise<void> } {
  const list: string[] = []
  let waiter: { n: number; resolve: () => void } | null = null
  client.on('event', ({ event }: ParleyClientEvents['event']) => {
    if (event.room === room && event.type === 'm.message') list.push((event.content as { body: string }).body)
    if (waiter && list.length >= waiter.n) waiter.resolve()
  })
  return {
    list,
    next: (n) => (list.length >= n ? Promise.resolve() : new Promise((resolve) => (waiter = { n, resolve }))),
  }
}

describe('headless client against a real homeserver', () => {
  it('registers, creates a room, and delivers messages live', async () => {
    const hs = await server()
    const alice = await ParleyClient.register(hs.url, 'alice', 'password one', opts())
    const bob = await ParleyClient.register(hs.url, 'bob', 'password two', opts())
    cleanups.push(
      () => alice.close(),
      () => bob.close(),
    )
    const room = await alice.api.createRoom({ kind: 'group', name: 'lib', invite: ['@bob:acme.localhost'] })
    await bob.api.join(room)
    await Promise.all([alice.connect(), bob.connect()])
    const got = bodies(bob, room)
    const sent = await alice.send(room, 'm.message', { body: 'hi from the library' })
    expect(sent.event_id).toMatch(/^\$/)
    await got.next(1)
    expect(got.list).toEqual(['hi from the library'])
  })

  it('keeps sends in a durable outbox while offline and delivers them once after restart of the client', async () => {
    const hs = await server()
    const store = new MemoryStore()
    const alice = await ParleyClient.register(hs.url, 'alice', 'password one', opts(store))
    const bob = await ParleyClient.register(hs.url, 'bob', 'password two', opts())
    cleanups.push(() => bob.close())
    const room = await alice.api.createRoom({ kind: 'group', invite: ['@bob:acme.localhost'] })
    await bob.api.join(room)
    await bob.connect()
    const got = bodies(bob, room)
    // Never connected: the sends wait in the outbox.
    for (let i = 0; i < 5; i++) void alice.send(room, 'm.message', { body: `queued ${i}` }).catch(() => {})
    await expect.poll(async () => (await store.listOutbox()).length).toBe(5)
    alice.close()
    // "Restart": a new client over the same store flushes the outbox with the same txn ids.
    const again = (await ParleyClient.restore(opts(store)))!
    cleanups.push(() => again.close())
    await again.connect()
    await got.next(5)
    expect(got.list).toEqual([0, 1, 2, 3, 4].map((i) => `queued ${i}`))
    expect(await store.listOutbox()).toEqual([])
  })

  it('reconnects after a server restart and resumes from its cursor without gaps or duplicates', async () => {
    const dataDir = await tempDir()
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }))
    let hs = await server(dataDir)
    const port = hs.port
    const alice = await ParleyClient.register(hs.url, 'alice', 'password one', opts())
    const bob = await ParleyClient.register(hs.url, 'bob', 'password two', opts())
    cleanups.push(
      () => alice.close(),
      () => bob.close(),
    )
    const room = await alice.api.createRoom({ kind: 'group', invite: ['@bob:acme.localhost'] })
    await bob.api.join(room)
    await Promise.all([alice.connect(), bob.connect()])
    const got = bodies(bob, room)
    for (let i = 0; i < 10; i++) await alice.send(room, 'm.message', { body: `before ${i}` })
    await got.next(10)
    await hs.close()
    // While the server is down, Alice keeps sending into her outbox.
    const during = Array.from({ length: 10 }, (_, i) =>
      alice.send(room, 'm.message', { body: `during ${i}` }),
    )
    hs = await server(dataDir, port)
    await Promise.all(during)
    await got.next(20)
    expect(got.list).toEqual([
      ...Array.from({ length: 10 }, (_, i) => `before ${i}`),
      ...Array.from({ length: 10 }, (_, i) => `during ${i}`),
    ])
  })
})
