/**
 * End-to-end encrypted chat across two real federated homeservers with the headless client library
 * (protocol/src/client/e2e): alice@acme and bob@globex in an encrypted DM and a group, room keys in
 * to-device envelopes, messages as `m.encrypted` only. Then the "server can't read" check (E2E.md
 * section 3 row 10, TESTPLAN E2E-1): canary plaintexts appear nowhere in either server's database
 * files (WAL included) or logs.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { e2e } from '@parley/protocol/crypto'
import { IdentityChangedError, type ParleyClient } from '@parley/protocol/client'
import { memoryLogger } from './helpers.ts'
import { dataBytes, Identity } from './support/e2e.ts'
import { bodies, bodyOf, e2ePerson, sessionOf, waitForRoom, type Person } from './support/e2e-person.ts'
import { startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

let fed: Federation | null = null
const clients: ParleyClient[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await fed?.close()
  fed = null
})

async function person(server: string, username: string): Promise<Person> {
  const p = await e2ePerson(fed!.urls[server]!, username)
  clients.push(p.client)
  return p
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

  it('repeated sends reuse the validated members and keys; a membership or key change makes the next send ask again', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const alice = await person(ACME, 'alice')
    const bob = await person(GLOBEX, 'bob')
    const carol = await person(ACME, 'carol')
    const group = await alice.e2e.createRoom({ kind: 'group', name: 'Cached', encrypted: true })
    for (const p of [bob, carol]) {
      await alice.e2e.invite(group, p.e2e.userId)
      await waitForRoom(p.client, group)
      await p.e2e.join(group)
    }
    // Counts alice's membership and key lookups from here on.
    const asked = { membership: 0, keys: 0 }
    const api = alice.client.api
    const membership = api.membership.bind(api)
    const queryKeys = api.queryKeys.bind(api)
    api.membership = (room) => (asked.membership++, membership(room))
    api.queryKeys = (users) => (asked.keys++, queryKeys(users))

    await alice.e2e.send(group, 'm.message', { body: 'one' })
    await bob.waitFor(group, 'one')
    const first = { ...asked }
    expect(first.membership).toBeGreaterThan(0)
    for (const body of ['two', 'three', 'four']) await alice.e2e.send(group, 'm.message', { body })
    await bob.waitFor(group, 'four')
    expect(asked).toEqual(first)

    // Her own kick: the next send asks again and rotates (carol must not read it).
    await alice.e2e.kick(group, carol.e2e.userId)
    await alice.e2e.send(group, 'm.message', { body: 'without carol' })
    await bob.waitFor(group, 'without carol')
    // (Asked when signing the kick, and again for the send.)
    expect(asked.membership).toBeGreaterThan(first.membership + 1)
    expect(sessionOf(bob, group, 'without carol')).not.toBe(sessionOf(bob, group, 'four'))
    const second = { ...asked }

    // bob's identity key changes on the other server (a reset): the push drops alice's view, and the
    // next send sees the new key (a warning, a new session).
    const changed = new Promise<void>((resolve) => {
      const off = alice.client.on('keys_changed', ({ user_id }) => {
        if (user_id === bob.e2e.userId) resolve(off())
      })
    })
    const reset = new Identity(bob.e2e.userId)
    await bob.client.api.publishDeviceList(wireList(reset.next(['RESETDEVICE1'])))
    await changed
    await alice.e2e.send(group, 'm.message', { body: 'after the change' })
    await alice.waitFor(group, 'after the change')
    expect(asked.keys).toBeGreaterThan(second.keys)
    expect(alice.warnings.map((w) => w.kind)).toContain('identity_changed')
    expect(sessionOf(alice, group, 'after the change')).not.toBe(sessionOf(alice, group, 'without carol'))
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
    await bob.client.api.publishDeviceList(wireList(swapped))
    // alice hears of it (keys_changed, over federation) and checks at once: the warning comes first.
    await alice.waitUntil(() => alice.warnings.length > 0)
    await expect(alice.e2e.send(dm, 'm.message', { body: 'to the new key?' })).rejects.toBeInstanceOf(
      IdentityChangedError,
    )
    // (Once when alice heard of the change, once more when she tried to send.)
    expect(new Set(alice.warnings.map((w) => `${w.kind} ${w.user_id}`))).toEqual(
      new Set([`identity_changed ${bob.e2e.userId}`]),
    )
    // Alice accepts the new key after the warning: a new safety number, no longer verified.
    await alice.e2e.acceptIdentity(bob.e2e.userId)
    expect(alice.e2e.safetyNumber(bob.e2e.userId)).not.toBe(number)
    expect(alice.e2e.isVerified(bob.e2e.userId)).toBe(false)
    await alice.e2e.send(dm, 'm.message', { body: 'sent after accepting' })
  }, 60_000)
})

/** The crypto core's device list as the wire schema types it. */
function wireList(list: e2e.SignedDeviceList) {
  return { ...list, devices: list.devices.map((d) => ({ ...d })) }
}
