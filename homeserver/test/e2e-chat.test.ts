/**
 * End-to-end encrypted chat across two real federated homeservers with the headless client library
 * (protocol/src/client/e2e): alice@acme and bob@globex in an encrypted DM and a group, room keys in
 * to-device envelopes, messages as `m.encrypted` only. Then the "server can't read" check (E2E.md
 * section 3 row 10, TESTPLAN E2E-1): canary plaintexts appear nowhere in either server's database
 * files (WAL included) or logs.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import WebSocket from 'ws'
import { afterEach, describe, expect, it } from 'vitest'
import { e2e } from '@parley/protocol/crypto'
import {
  EndToEnd,
  IdentityChangedError,
  MemoryStore,
  ParleyClient,
  type Decryption,
  type E2eWarning,
} from '@parley/protocol/client'
import type { ClientEvent } from '@parley/protocol/schema'
import { memoryLogger } from './helpers.ts'
import { startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
const BACKOFF = { baseMs: 20, capMs: 200 }

let fed: Federation | null = null
const clients: ParleyClient[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await fed?.close()
  fed = null
})

interface Person {
  readonly client: ParleyClient
  readonly e2e: EndToEnd
  readonly warnings: E2eWarning[]
  /** Decrypted messages per room, in arrival order. */
  readonly seen: Map<string, Array<{ event: ClientEvent; result: Decryption }>>
  waitFor(room: string, body: string): Promise<void>
}

async function person(server: string, username: string): Promise<Person> {
  const client = await ParleyClient.register(fed!.urls[server]!, username, 'correct horse battery', {
    store: new MemoryStore(),
    WebSocket: WebSocket as never,
    backoff: BACKOFF,
  })
  clients.push(client)
  const e2e = await EndToEnd.start(client)
  const warnings: E2eWarning[] = []
  e2e.on('warning', (w) => warnings.push(w))
  const seen = new Map<string, Array<{ event: ClientEvent; result: Decryption }>>()
  const waiters: Array<() => void> = []
  const record = (event: ClientEvent) => {
    const list = seen.get(event.room) ?? []
    const at = list.findIndex((x) => x.event.event_id === event.event_id)
    const entry = { event, result: e2e.decrypt(event) }
    if (at >= 0) list[at] = entry
    else list.push(entry)
    seen.set(event.room, list)
    for (const w of waiters.splice(0)) w()
  }
  client.on('event', ({ event }) => {
    if (event.type === 'm.encrypted') record(event)
  })
  // A key that arrives after its message: decrypt what was waiting for it.
  e2e.on('room_key', ({ session_id }) => {
    for (const list of seen.values())
      for (const x of list)
        if (x.result.status === 'waiting' && x.result.sessionId === session_id) record(x.event)
  })
  const bodyOf = (x: { result: Decryption }) =>
    x.result.status === 'decrypted' ? (x.result.content as { body?: string }).body : undefined
  const waitFor = async (room: string, body: string) => {
    for (;;) {
      if ((seen.get(room) ?? []).some((x) => bodyOf(x) === body)) return
      await new Promise<void>((resolve) => waiters.push(resolve))
    }
  }
  await client.connect()
  return { client, e2e, warnings, seen, waitFor }
}

function bodies(p: Person, room: string): Array<string | undefined> {
  return (p.seen.get(room) ?? []).map((x) =>
    x.result.status === 'decrypted' ? (x.result.content as { body?: string }).body : x.result.status,
  )
}

/** Every file of a data directory (the database, its WAL, media, keys), concatenated. */
async function dataBytes(dir: string): Promise<Buffer> {
  const parts: Buffer[] = []
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }))
    if (entry.isFile()) parts.push(await readFile(join(entry.parentPath, entry.name)))
  return Buffer.concat(parts)
}

describe('end-to-end encrypted chat across two servers', () => {
  it('an encrypted DM and group: both sides read each other, the servers hold no plaintext', async () => {
    const logs: Record<string, ReturnType<typeof memoryLogger>> = {
      [ACME]: memoryLogger(),
      [GLOBEX]: memoryLogger(),
    }
    fed = await startFederation([ACME, GLOBEX], undefined, (name) => ({ logger: logs[name]!.logger }))
    const alice = await person(ACME, 'alice')
    const bob = await person(GLOBEX, 'bob')
    const canaries = [
      'canary-dm-4b1f from alice',
      'canary-dm-9e07 from bob',
      'canary-group-c3d2 to the group',
    ]

    const dm = await alice.e2e.createRoom({ kind: 'dm', invite: [`@bob:${GLOBEX}`], encrypted: true })
    await waitForRoom(bob.client, dm)
    await bob.e2e.join(dm)
    await alice.e2e.send(dm, 'm.message', { body: canaries[0]!, format: 'markdown' })
    await bob.waitFor(dm, canaries[0]!)
    await bob.e2e.send(dm, 'm.message', { body: canaries[1]!, format: 'markdown' })
    await alice.waitFor(dm, canaries[1]!)
    // Each side also reads its own messages (the sender keeps its session's key).
    await alice.waitFor(dm, canaries[0]!)
    await bob.waitFor(dm, canaries[1]!)
    expect(bodies(alice, dm)).toEqual([canaries[0], canaries[1]])
    expect(bodies(bob, dm)).toEqual([canaries[0], canaries[1]])

    const group = await alice.e2e.createRoom({ kind: 'group', name: 'Secret plans', encrypted: true })
    await alice.e2e.invite(group, `@bob:${GLOBEX}`)
    await waitForRoom(bob.client, group)
    await bob.e2e.join(group)
    await alice.e2e.send(group, 'm.message', { body: canaries[2]! })
    await bob.waitFor(group, canaries[2]!)

    expect([...alice.warnings, ...bob.warnings]).toEqual([])
    // The servers relay ciphertext only: no canary in any file or log line of either.
    for (const name of [ACME, GLOBEX]) {
      const disk = await dataBytes(fed.get(name).dataDir)
      const log = logs[name]!.text()
      for (const canary of canaries) {
        expect(disk.includes(canary), `${name} disk: ${canary}`).toBe(false)
        expect(log.includes(canary), `${name} log: ${canary}`).toBe(false)
      }
    }
  }, 60_000)

  it('a member removed with a kick gets no key for what follows and cannot read it with all her old state', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const alice = await person(ACME, 'alice')
    const bob = await person(GLOBEX, 'bob')
    const carol = await person(ACME, 'carol')
    const carolKeys: string[] = []
    carol.e2e.on('room_key', ({ session_id }) => carolKeys.push(session_id))
    const group = await alice.e2e.createRoom({ kind: 'group', name: 'Three', encrypted: true })
    for (const p of [bob, carol]) {
      await alice.e2e.invite(group, p.e2e.userId)
      await waitForRoom(p.client, group)
      await p.e2e.join(group)
    }
    await alice.e2e.send(group, 'm.message', { body: 'all three of us' })
    for (const p of [bob, carol]) await p.waitFor(group, 'all three of us')
    const before = sessionOf(bob, group, 'all three of us')

    await alice.e2e.kick(group, carol.e2e.userId)
    await alice.e2e.send(group, 'm.message', { body: 'after carol left' })
    await bob.waitFor(group, 'after carol left')
    const after = (bob.seen.get(group) ?? []).find((x) => bodyOf(x) === 'after carol left')!
    // A new session: carol never got its key, and her old keys do not open it.
    expect(sessionOf(bob, group, 'after carol left')).not.toBe(before)
    expect(carolKeys).toEqual([before])
    expect(carol.e2e.decrypt(after.event).status).toBe('waiting')
    expect(bodies(carol, group)).toEqual(['all three of us'])
  }, 60_000)

  it('a changed identity key warns; for a verified contact it blocks sending until accepted again', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const alice = await person(ACME, 'alice')
    const bob = await person(GLOBEX, 'bob')
    const dm = await alice.e2e.createRoom({ kind: 'dm', invite: [bob.e2e.userId], encrypted: true })
    await waitForRoom(bob.client, dm)
    await bob.e2e.join(dm)
    await alice.e2e.send(dm, 'm.message', { body: 'hello bob' })
    await bob.waitFor(dm, 'hello bob')
    // Both see the same 60 digits: they compare them and alice marks bob verified.
    const number = alice.e2e.safetyNumber(bob.e2e.userId)
    expect(number).toMatch(/^(\d{5} ){11}\d{5}$/)
    expect(bob.e2e.safetyNumber(alice.e2e.userId)).toBe(number)
    await alice.e2e.markVerified(bob.e2e.userId)

    // Bob's identity key is replaced (a reset, or his server swapping it): a new signed list.
    const uik = e2e.generateIdentityKey()
    const device = e2e.generateDeviceKeys()
    const swapped = e2e.signDeviceList(uik, bob.e2e.userId, [
      { deviceId: 'SWAPPEDDEV01', dsk: device.dsk.publicKey, dxk: device.dxk.publicKey, addedTs: 1 },
    ])
    await bob.client.api.publishDeviceList({ ...swapped, devices: swapped.devices.map((d) => ({ ...d })) })
    await expect(alice.e2e.send(dm, 'm.message', { body: 'to the new key?' })).rejects.toBeInstanceOf(
      IdentityChangedError,
    )
    expect(alice.warnings.map((w) => [w.kind, w.user_id])).toEqual([['identity_changed', bob.e2e.userId]])
    // Alice accepts the new key after the warning: a new safety number, no longer verified.
    await alice.e2e.acceptIdentity(bob.e2e.userId)
    expect(alice.e2e.safetyNumber(bob.e2e.userId)).not.toBe(number)
    expect(alice.e2e.isVerified(bob.e2e.userId)).toBe(false)
    await alice.e2e.send(dm, 'm.message', { body: 'sent after accepting' })
  }, 60_000)
})

function bodyOf(x: { result: Decryption }): string | undefined {
  return x.result.status === 'decrypted' ? (x.result.content as { body?: string }).body : undefined
}

/** The session id of the message with `body` as `p` received it. */
function sessionOf(p: Person, room: string, body: string): string {
  const entry = (p.seen.get(room) ?? []).find((x) => bodyOf(x) === body)!
  return (entry.event.content as { session_id: string }).session_id
}

/** Resolves once `room` is in the user's room list (its invitation arrived, over federation too). */
async function waitForRoom(client: ParleyClient, room: string): Promise<void> {
  // Listening before asking: the invitation's event cannot slip between the two.
  let off = () => {}
  const invited = new Promise<void>((resolve) => {
    off = client.on('event', ({ event }) => {
      if (event.room === room) resolve()
    })
  })
  try {
    if ((await client.api.listRooms()).some((r) => r.room_id === room)) return
    await invited
  } finally {
    off()
  }
}
