/**
 * Envelope forward secrecy after signed-prekey rotation (E2E.md section 2.1 "SPK", section 3 row 18):
 * an envelope recorded by the server opens while its prekey is retired but kept (7 days), and never
 * again once the device pruned it; the prekey's private key is then gone from the device's store.
 *
 * Where to look for the old key: the homeserver never holds a prekey's private key (it stores the
 * signed public prekey only), so a page scan of its SQLite file proves nothing about deletion; it is
 * done anyway as a guard. The private key lives in the client store, the items a desktop seals and
 * writes to disk, so that is what is inspected, item by item, after an app restart.
 * Time is a fake clock shared by the server and both clients: no waiting for days.
 */
import WebSocket from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import { EndToEnd, ParleyClient, type E2eWarning } from '@parley/protocol/client'
import type { ClientEvent } from '@parley/protocol/schema'
import { startTestServer, type TestServer } from './helpers.ts'
import { dataBytes, findCanaries } from './support/e2e.ts'
import { e2ePerson, encryptedRoom, InspectableStore, type Person } from './support/e2e-person.ts'
import { EvilProxy } from './support/evil-proxy.ts'

const DAY = 24 * 3600_000

let server: TestServer | null = null
let proxy: EvilProxy | null = null
const clients: ParleyClient[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await proxy?.close()
  proxy = null
  await server?.stop()
  server = null
})

interface PrekeyItem {
  signed: { spk_id: string; created_ts: number }
  secret: string
  retired_ts: number | null
}

describe('envelope forward secrecy (E2E.md section 3 row 18)', () => {
  it('a recorded envelope opens within 7 days of its prekey being replaced, never after, and the key is gone from the store', async () => {
    let offset = 0
    const now = () => Date.now() + offset
    // Sessions outlive the 8 days (token expiry is another test's subject).
    server = await startTestServer({ accessTokenTtlMs: 30 * DAY }, { clock: { now } })
    proxy = await EvilProxy.start(server.url)
    const alice: Person = await e2ePerson(proxy.url, 'alice', { e2e: { now } })
    clients.push(alice.client)

    // Bob's app: a store that survives restarts; each start is a new client and a new EndToEnd.
    const store = new InspectableStore()
    const first = await ParleyClient.register(server.url, 'bob', 'correct horse battery', {
      store,
      WebSocket: WebSocket as never,
    })
    clients.push(first)
    const bob0 = await EndToEnd.start(first, { now })
    const room = await encryptedRoom(alice, [{ client: first, e2e: bob0 }], 'dm')
    const prekeys = async () =>
      (JSON.parse((await store.getItem('e2e:device'))!) as { prekeys: PrekeyItem[] }).prekeys
    const [spk1] = await prekeys()

    // Day 0: alice seals the room key to bob's prekey 1; bob is offline, the server keeps it and
    // (being the attacker here) records it.
    await alice.e2e.send(room, 'm.message', { body: 'day 0' })
    const frame = proxy.fromClients.find((f) => f.type === 'to_device' && f.event_type === 'm.room_key')!
    const recorded = (frame.messages as Record<string, Record<string, Record<string, unknown>>>)[
      bob0.userId
    ]![bob0.deviceId]!
    expect(recorded.spk_id).toBe(spk1!.signed.spk_id)
    first.close()

    /** Restarts bob's app at the current fake time: new client, EndToEnd (rotating, pruning), connection. */
    const restart = async () => {
      const client = new ParleyClient({ baseUrl: server!.url, store, WebSocket: WebSocket as never })
      clients.push(client)
      const e = await EndToEnd.start(client, { now })
      const warnings: E2eWarning[] = []
      e.on('warning', (w) => warnings.push(w))
      const keys: string[] = []
      e.on('room_key', ({ session_id }) => keys.push(session_id))
      const events: ClientEvent[] = []
      client.on('event', ({ event }) => events.push(event))
      const toDevice = new Promise<void>((resolve) => client.on('to_device', () => resolve()))
      await client.connect()
      return { client, e2e: e, warnings, keys, events, toDevice }
    }

    // Day 1: prekey 2 replaces prekey 1, which is kept: the queued envelope still opens.
    offset = DAY + 60_000
    const day1 = await restart()
    await day1.toDevice
    expect(day1.warnings).toEqual([])
    expect(day1.keys).toHaveLength(1)
    const message = day1.events.find((e) => e.type === 'm.encrypted')!
    expect(day1.e2e.decrypt(message)).toMatchObject({ status: 'decrypted', content: { body: 'day 0' } })
    const kept = await prekeys()
    expect(kept.map((p) => p.signed.spk_id)).toContain(spk1!.signed.spk_id)
    const retired = kept.find((p) => p.signed.spk_id === spk1!.signed.spk_id)!.retired_ts
    expect(retired).toBeGreaterThanOrEqual(spk1!.signed.created_ts + DAY)
    day1.client.close()

    // Day 8: prekey 1 was replaced more than 7 days ago: wiped and forgotten at start.
    offset = 8 * DAY + 2 * 60_000
    const day8 = await restart()
    const ids = (await prekeys()).map((p) => p.signed.spk_id)
    expect(ids).not.toContain(spk1!.signed.spk_id)
    expect(ids).toHaveLength(2)
    const items = Object.fromEntries(store.items())
    expect(findCanaries(items, { 'prekey 1 secret': Buffer.from(spk1!.secret, 'base64url') })).toEqual([])
    expect(
      findCanaries(
        { server: await dataBytes(server.dataDir) },
        { 'prekey 1 secret': Buffer.from(spk1!.secret, 'base64url') },
      ),
    ).toEqual([])

    // The server replays the recorded envelope (relayed as alice's, as it was): it cannot be opened.
    const replayed = new Promise<void>((resolve) => day8.client.on('to_device', () => resolve()))
    await alice.client.sendToDevice('m.room_key', { [bob0.userId]: { [bob0.deviceId]: recorded } })
    await replayed
    expect(day8.warnings.map((w) => [w.kind, w.detail])).toEqual([
      ['room_key_rejected', 'unknown_prekey: prekey unknown or already deleted'],
    ])
    expect(day8.keys).toEqual([])
  }, 30_000)
})
