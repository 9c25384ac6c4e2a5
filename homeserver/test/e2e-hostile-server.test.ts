/**
 * A compromised homeserver attacks the client library (E2E.md section 1 "malicious own homeserver",
 * section 3 rows 7, 11, 15; TESTPLAN E2E-2 and E2E-3). A real homeserver stores and relays; an
 * {@link EvilProxy} between a client and it plays the operator who tampers with, replays, reorders
 * or injects events and to-device messages, and rewrites `/keys/query` answers. Each test checks what
 * the attacked user's client shows and what it sends.
 */
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { fromBase64Url, toBase64Url } from '@parley/protocol'
import { e2e } from '@parley/protocol/crypto'
import type { ClientEvent } from '@parley/protocol/schema'
import { startTestServer, type TestServer } from './helpers.ts'
import { bodies, bodyOf, e2ePerson, encryptedRoom, type Person } from './support/e2e-person.ts'
import { EvilProxy, flipBase64Url, type WireFrame } from './support/evil-proxy.ts'

let server: TestServer | null = null
const proxies: EvilProxy[] = []
const people: Person[] = []
afterEach(async () => {
  for (const p of people.splice(0)) p.client.close()
  for (const proxy of proxies.splice(0)) await proxy.close()
  await server?.stop()
  server = null
})

async function setup(): Promise<{ server: TestServer; proxy: EvilProxy }> {
  server = await startTestServer()
  const proxy = await EvilProxy.start(server.url)
  proxies.push(proxy)
  return { server, proxy }
}

async function person(baseUrl: string, name: string): Promise<Person> {
  const p = await e2ePerson(baseUrl, name)
  people.push(p)
  return p
}

/** A live `m.encrypted` event frame, with its content. */
function encryptedFrame(frame: WireFrame): (WireFrame & { event: ClientEvent }) | null {
  if (frame.type !== 'event') return null
  const event = frame.event as ClientEvent
  return event.type === 'm.encrypted' ? (frame as WireFrame & { event: ClientEvent }) : null
}

function withContent(frame: WireFrame & { event: ClientEvent }, content: Record<string, unknown>): WireFrame {
  return { ...frame, event: { ...frame.event, content } }
}

/** A fresh event id (the server's format: `$` + 43 base64url characters). */
function newEventId(): string {
  return `$${toBase64Url(randomBytes(32))}`
}

/** `user/device` of every recipient of the `to_device` frames the proxy's clients sent. */
function envelopeRecipients(proxy: EvilProxy, eventType = 'm.room_key'): string[] {
  return proxy.fromClients
    .filter((f) => f.type === 'to_device' && f.event_type === eventType)
    .flatMap((f) =>
      Object.entries(f.messages as Record<string, Record<string, unknown>>).flatMap(([user, devices]) =>
        Object.keys(devices).map((device) => `${user}/${device}`),
      ),
    )
}

describe('E2E-2: the server tampers with, replays and reorders events (E2E.md section 3 rows 3, 4, 7)', () => {
  it('a tampered ciphertext, nonce, signature or index is never shown; the next clean message is', async () => {
    const { server, proxy } = await setup()
    const alice = await person(server.url, 'alice')
    const bob = await person(proxy.url, 'bob')
    const room = await encryptedRoom(alice, [bob])
    const tamper = [
      (c: Record<string, unknown>) => ({ ...c, ciphertext: flipBase64Url(c.ciphertext as string) }),
      (c: Record<string, unknown>) => ({ ...c, nonce: flipBase64Url(c.nonce as string, 0) }),
      (c: Record<string, unknown>) => ({ ...c, signature: flipBase64Url(c.signature as string) }),
      (c: Record<string, unknown>) => ({ ...c, index: (c.index as number) + 1 }),
    ]
    let n = 0
    proxy.toClient.push((frame) => {
      const enc = encryptedFrame(frame)
      if (!enc || enc.event.sender !== alice.e2e.userId) return undefined
      const change = tamper[n++]
      return change ? [withContent(enc, change(enc.event.content))] : undefined
    })
    for (let i = 0; i < tamper.length; i++) await alice.e2e.send(room, 'm.message', { body: `secret ${i}` })
    await alice.e2e.send(room, 'm.message', { body: 'clean' })
    await bob.waitFor(room, 'clean')

    const results = (bob.seen.get(room) ?? []).map((x) => x.result)
    expect(results.map((r) => r.status)).toEqual(['failed', 'failed', 'failed', 'failed', 'decrypted'])
    // No plaintext escapes a refusal: nothing but the reason.
    for (const r of results.slice(0, 4)) {
      expect(Object.keys(r).sort()).toEqual(['reason', 'status'])
      expect(JSON.stringify(r)).not.toContain('secret')
    }
    expect(bob.warnings).toEqual([])
  }, 30_000)

  it('an event replayed under a new event id is shown once and flagged; the same event again is not a replay', async () => {
    const { server, proxy } = await setup()
    const alice = await person(server.url, 'alice')
    const bob = await person(proxy.url, 'bob')
    const room = await encryptedRoom(alice, [bob])
    let replayed: string | null = null
    proxy.toClient.push((frame) => {
      const enc = encryptedFrame(frame)
      if (!enc || enc.event.sender !== alice.e2e.userId || replayed !== null) return undefined
      replayed = newEventId()
      // The original, the original once more (a re-delivery), then a copy under a new id.
      return [frame, frame, { ...frame, event: { ...enc.event, event_id: replayed } }]
    })
    await alice.e2e.send(room, 'm.message', { body: 'pay bob 10' })
    await alice.e2e.send(room, 'm.message', { body: 'after' })
    await bob.waitFor(room, 'after')

    expect(bodies(bob, room)).toEqual(['pay bob 10', 'failed', 'after'])
    const copy = bob.seen.get(room)!.find((x) => x.event.event_id === replayed)!
    expect(copy.result).toEqual({ status: 'failed', reason: 'replayed message' })
    expect(bob.warnings.map((w) => [w.kind, w.user_id])).toEqual([['replayed_message', alice.e2e.userId]])
  }, 30_000)

  it('events delivered in a shuffled order all decrypt, each once', async () => {
    const { server, proxy } = await setup()
    const alice = await person(server.url, 'alice')
    const bob = await person(proxy.url, 'bob')
    const room = await encryptedRoom(alice, [bob])
    const count = 12
    const held: WireFrame[] = []
    proxy.toClient.push((frame) => {
      const enc = encryptedFrame(frame)
      if (!enc || enc.event.sender !== alice.e2e.userId) return undefined
      held.push(frame)
      if (held.length < count) return []
      // A fixed permutation: reversed halves, interleaved.
      const order = held.map((_, i) => (i % 2 === 0 ? count - 1 - i / 2 : (i - 1) / 2))
      return order.map((i) => held[i]!)
    })
    const sent: string[] = []
    for (let i = 0; i < count; i++) {
      sent.push(`shuffled ${i}`)
      await alice.e2e.send(room, 'm.message', { body: `shuffled ${i}` })
    }
    await bob.waitUntil(() => (bob.seen.get(room) ?? []).length === count)

    const shown = bodies(bob, room)
    expect(shown).not.toEqual(sent)
    expect([...shown].sort()).toEqual([...sent].sort())
    expect(bob.warnings).toEqual([])
  }, 30_000)
})

describe('E2E-3: the server injects devices and keys (E2E.md section 3 rows 11 and 15)', () => {
  it('a ghost device in the served list, an unsigned list or a prekey outside the list gets no envelope', async () => {
    const { server, proxy } = await setup()
    const alice = await person(proxy.url, 'alice')
    const bob = await person(server.url, 'bob')
    const ghost = e2e.generateDeviceKeys()
    const ghostId = 'GHOSTDEVICE1'
    const ghostPrekey = e2e.createSignedPrekey(ghost.dsk, Date.now()).signed
    const ghostEntry = {
      device_id: ghostId,
      dsk: toBase64Url(ghost.dsk.publicKey),
      dxk: toBase64Url(ghost.dxk.publicKey),
      added_ts: Date.now(),
    }
    type Answer = {
      device_lists: Record<string, { devices: unknown[]; signature: string }>
      prekeys: Record<string, Record<string, unknown>>
    }
    let attack: 'prekey-only' | 'ghost-in-list' | 'unsigned' = 'prekey-only'
    proxy.rest.push(({ path, body }) => {
      if (path !== '/keys/query') return undefined
      const answer = structuredClone(body) as Answer
      const list = answer.device_lists[bob.e2e.userId]
      if (!list) return undefined
      answer.prekeys[bob.e2e.userId] = { ...answer.prekeys[bob.e2e.userId], [ghostId]: ghostPrekey }
      if (attack === 'ghost-in-list') list.devices.push(ghostEntry)
      if (attack === 'unsigned') {
        list.devices.push(ghostEntry)
        list.signature = toBase64Url(new Uint8Array(64))
      }
      return answer
    })

    // Each attack meets a new room, so a new session whose key goes to every device alice trusts.
    const rooms: string[] = []
    for (const next of ['prekey-only', 'ghost-in-list', 'unsigned'] as const) {
      attack = next
      const room = await encryptedRoom(alice, [bob], 'group')
      rooms.push(room)
      await alice.e2e.send(room, 'm.message', { body: `under ${next}` })
      await bob.waitFor(room, `under ${next}`)
    }

    // Bob's real device got every key; the ghost none.
    const recipients = envelopeRecipients(proxy)
    expect(recipients).toEqual(rooms.map(() => `${bob.e2e.userId}/${bob.e2e.deviceId}`))
    expect(recipients.join()).not.toContain(ghostId)
    // The broken lists were refused with a warning (the pinned list stayed in use).
    expect(alice.warnings.map((w) => [w.kind, w.user_id])).toEqual([
      ['device_list_invalid', bob.e2e.userId],
      ['device_list_invalid', bob.e2e.userId],
    ])
  }, 30_000)

  it('a rolled-back device list is refused, and a second list with the same version is caught', async () => {
    const { server, proxy } = await setup()
    const alice = await person(proxy.url, 'alice')
    const bob = await person(server.url, 'bob')
    const room = await encryptedRoom(alice, [bob], 'dm')
    await alice.e2e.send(room, 'm.message', { body: 'v1' })
    await bob.waitFor(room, 'v1')

    // Bob signs v2 and v3 with his identity key (the device that holds it): same device, new versions.
    const record = JSON.parse((await bob.store.getItem('e2e:device'))!) as {
      uik: { secret: string }
      device_list: e2e.SignedDeviceList
    }
    const uik = e2e.signingKeyPair(fromBase64Url(record.uik.secret)!.slice(0, 32))
    const v1 = record.device_list
    const devices = v1.devices.map((d) => ({
      deviceId: d.device_id,
      dsk: fromBase64Url(d.dsk)!,
      dxk: fromBase64Url(d.dxk)!,
      addedTs: d.added_ts,
    }))
    const wire = (l: e2e.SignedDeviceList) => ({ ...l, devices: l.devices.map((d) => ({ ...d })) })
    const v2 = e2e.signDeviceList(uik, bob.e2e.userId, devices, v1)
    await bob.client.api.publishDeviceList(wire(v2))
    await announceKeys(proxy, alice, bob.e2e.userId)
    await alice.e2e.send(room, 'm.message', { body: 'v2' })
    expect(alice.warnings).toEqual([])

    // The server serves v1 again (a rollback): refused, and the pinned v2 stays in use.
    let serve: e2e.SignedDeviceList | null = v1
    proxy.rest.push(({ path, body }) => {
      if (path !== '/keys/query' || serve === null) return undefined
      const answer = structuredClone(body) as { device_lists: Record<string, unknown> }
      answer.device_lists[bob.e2e.userId] = serve
      return answer
    })
    await announceKeys(proxy, alice, bob.e2e.userId)
    await alice.e2e.send(room, 'm.message', { body: 'after rollback' })
    await bob.waitFor(room, 'after rollback')
    expect(alice.warnings.map((w) => [w.kind, w.detail])).toEqual([
      ['device_list_rollback', 'version 1 after 2'],
    ])

    // Two lists of version 3 (a split view: one shown to alice, the other to someone else, with an
    // extra device): alice accepts the first and catches the second where the versions collide.
    const extra = e2e.generateDeviceKeys()
    const v3a = e2e.signDeviceList(uik, bob.e2e.userId, devices, v2)
    const v3b = e2e.signDeviceList(
      uik,
      bob.e2e.userId,
      [
        ...devices,
        { deviceId: 'SPLITVIEWDEV', dsk: extra.dsk.publicKey, dxk: extra.dxk.publicKey, addedTs: 2 },
      ],
      v2,
    )
    serve = v3a
    await announceKeys(proxy, alice, bob.e2e.userId)
    await alice.e2e.send(room, 'm.message', { body: 'v3a' })
    serve = v3b
    await announceKeys(proxy, alice, bob.e2e.userId)
    await alice.e2e.send(room, 'm.message', { body: 'v3b?' })
    expect(alice.warnings.map((w) => [w.kind, w.detail])).toEqual([
      ['device_list_rollback', 'version 1 after 2'],
      ['device_list_rollback', 'version 3 after 3'],
    ])
    expect(envelopeRecipients(proxy).join()).not.toContain('SPLITVIEWDEV')
  }, 30_000)

  it("a room key for alice's session forwarded by eve is refused, and alice's messages stay unreadable to bob", async () => {
    const { server } = await setup()
    const alice = await person(server.url, 'alice')
    const bob = await person(server.url, 'bob')
    const eve = await person(server.url, 'eve')
    const room = await encryptedRoom(alice, [eve])
    await alice.e2e.send(room, 'm.message', { body: 'for eve only' })
    await eve.waitFor(room, 'for eve only')
    const aliceEvent = eve.seen.get(room)![0]!.event
    const sessionId = (aliceEvent.content as { session_id: string }).session_id
    // Eve and bob share a room of their own (the server answers key queries for room mates only).
    await encryptedRoom(eve, [bob], 'dm')

    // Eve (an insider with the key) seals alice's session key to bob's device with her own device key.
    const stored = JSON.parse((await eve.store.getItem(`e2e:in:${sessionId}`))!) as unknown
    const roomKey = e2e.InboundGroupSession.fromState(stored).exportRoomKey()
    const eveDevice = JSON.parse((await eve.store.getItem('e2e:device'))!) as { dxk: { secret: string } }
    const keys = await eve.client.api.queryKeys([bob.e2e.userId])
    const bobList = e2e.verifyDeviceList(keys.device_lists[bob.e2e.userId], {
      userId: bob.e2e.userId,
      uik: fromBase64Url(keys.device_lists[bob.e2e.userId]!.uik)!,
    })
    const target = bobList.devices[0]!
    const envelope = e2e.sealEnvelope(
      e2e.encodeRoomKeyPayload(roomKey),
      {
        userId: eve.e2e.userId,
        deviceId: eve.e2e.deviceId,
        dxk: e2e.dhKeyPair(fromBase64Url(eveDevice.dxk.secret)!),
      },
      {
        userId: bob.e2e.userId,
        deviceId: target.deviceId,
        dxk: target.dxk,
        dsk: target.dsk,
        signedPrekey: keys.prekeys[bob.e2e.userId]![target.deviceId]!,
      },
    )
    const keysForBob: string[] = []
    bob.e2e.on('room_key', ({ session_id }) => keysForBob.push(session_id))
    const handled = new Promise<void>((resolve) => bob.client.on('to_device', () => resolve()))
    await eve.client.sendToDevice('m.room_key', {
      [bob.e2e.userId]: { [target.deviceId]: envelope as unknown as Record<string, unknown> },
    })
    await handled

    expect(bob.warnings.map((w) => [w.kind, w.user_id])).toEqual([['room_key_rejected', eve.e2e.userId]])
    expect(bob.warnings[0]!.detail).toContain('creator')
    expect(keysForBob).toEqual([])
    // The server shows bob alice's message: still no key for it.
    expect(bob.e2e.decrypt(aliceEvent)).toEqual({ status: 'waiting', sessionId })
  }, 30_000)

  it('group-session ciphertext delivered as a to-device message is refused and nothing is shown', async () => {
    const { server, proxy } = await setup()
    const alice = await person(server.url, 'alice')
    const bob = await person(proxy.url, 'bob')
    const room = await encryptedRoom(alice, [bob])
    await alice.e2e.send(room, 'm.message', { body: 'in the room' })
    await bob.waitFor(room, 'in the room')
    const groupCiphertext = bob.seen.get(room)![0]!.event.content

    const keysForBob: string[] = []
    bob.e2e.on('room_key', ({ session_id }) => keysForBob.push(session_id))
    let handled = 0
    const both = new Promise<void>((resolve) =>
      bob.client.on('to_device', () => {
        if (++handled === 2) resolve()
      }),
    )
    // id 0: the client's acknowledgement of it deletes nothing real on the server.
    for (const eventType of ['m.room_key', 'm.encrypted'])
      proxy.injectToClients({
        type: 'to_device',
        id: 0,
        sender: alice.e2e.userId,
        sender_device: alice.e2e.deviceId,
        event_type: eventType,
        content: groupCiphertext,
      })
    await both

    expect(bob.warnings.map((w) => w.kind)).toEqual(['room_key_rejected'])
    expect(keysForBob).toEqual([])
    expect(bodies(bob, room)).toEqual(['in the room'])
    expect((bob.seen.get(room) ?? []).filter((x) => bodyOf(x) !== undefined)).toHaveLength(1)
  }, 30_000)
})

/**
 * The server says `userId`'s keys changed (as it would to make `p` ask again and see what it serves
 * next: a client reuses a room's keys between sends until told); resolves once `p` heard it.
 */
async function announceKeys(proxy: EvilProxy, p: Person, userId: string): Promise<void> {
  const heard = new Promise<void>((resolve) => {
    const off = p.client.on('keys_changed', ({ user_id }) => {
      if (user_id === userId) resolve(off())
    })
  })
  proxy.injectToClients({ type: 'keys_changed', user_id: userId })
  await heard
}
