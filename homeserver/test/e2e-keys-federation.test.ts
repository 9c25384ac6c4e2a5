/**
 * The E2E key directory and encrypted rooms across two real federated servers (docs/federation.md,
 * "Keys"): a globex user gets an acme user's keys through globex (`keys_query` / `keys_answer` over
 * the link), hears `keys_changed`, and still gets the last answer while acme is down; acme answers
 * only about users who share a room with a globex user, whoever asks; and neither a globex user nor
 * globex itself can put plaintext into an encrypted room acme owns.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ParleyError, sodiumReady } from '@parley/protocol'
import {
  connect,
  createRoom,
  fullHistory,
  http,
  register,
  roomPath,
  type TestSocket,
  type TestUser,
} from './helpers.ts'
import { encryptedContent, Identity, putList, queryKeys, sendEvent } from './support/e2e.ts'
import { startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

let fed: Federation
let alice: TestUser // acme, in the room
let erin: TestUser // acme, in the room, never asked about before acme goes down
let dave: TestUser // acme, shares no room with anyone of globex
let bob: TestUser // globex, in the room
let carol: TestUser // globex, in no room
let room: string
let aliceId: Identity
let bobSock: TestSocket
let aliceSock: TestSocket

beforeAll(async () => {
  await sodiumReady()
  fed = await startFederation([ACME, GLOBEX])
  const acme = fed.get(ACME)
  const globex = fed.get(GLOBEX)
  alice = await register(acme, 'alice')
  erin = await register(acme, 'erin')
  dave = await register(acme, 'dave')
  bob = await register(globex, 'bob')
  carol = await register(globex, 'carol')
  bobSock = await connect(globex, bob)
  room = await createRoom(acme, alice, { kind: 'group', invite: [bob.user_id, erin.user_id] })
  await bobSock.next((f) => f.type === 'event' && f.room === room, 10_000)
  expect((await http(globex, 'POST', roomPath(room, '/join'), undefined, bob.access_token)).status).toBe(200)
  expect((await http(acme, 'POST', roomPath(room, '/join'), undefined, erin.access_token)).status).toBe(200)
  aliceSock = await connect(acme, alice)
  aliceId = new Identity(alice.user_id)
  expect((await putList(acme, alice, aliceId.next([alice.device_id]))).status).toBe(200)
  const prekey = aliceId.prekey(alice.device_id)
  await http(acme, 'PUT', '/api/v1/keys/prekey', { signed_prekey: prekey }, alice.access_token)
  const erinId = new Identity(erin.user_id)
  expect((await putList(acme, erin, erinId.next([erin.device_id]))).status).toBe(200)
  const daveId = new Identity(dave.user_id)
  expect((await putList(acme, dave, daveId.next([dave.device_id]))).status).toBe(200)
}, 30_000)
afterAll(async () => {
  bobSock?.close()
  aliceSock?.close()
  await fed?.close()
})

const acmeKeys = () => fed.get(ACME).services.replication.keys.stats

describe('keys across servers', () => {
  it("gives a co-member on another server the user's list and prekeys, fetched from the user's server", async () => {
    const before = acmeKeys().answered
    const got = await queryKeys(fed.get(GLOBEX), bob, [alice.user_id])
    expect(got.failures).toEqual({})
    expect(got.device_lists[alice.user_id]).toEqual(aliceId.lists[0])
    expect(Object.keys(got.prekeys[alice.user_id] ?? {})).toEqual([alice.device_id])
    expect(acmeKeys().answered).toBe(before + 1)
  })

  it('tells a stranger nothing and asks nobody on their behalf', async () => {
    const asked = fed.get(GLOBEX).services.replication.keys.stats.asked
    const got = await queryKeys(fed.get(GLOBEX), carol, [alice.user_id, dave.user_id])
    expect(got).toEqual({ device_lists: {}, prekeys: {}, failures: {} })
    // bob shares no room with dave: same answer, same silence.
    expect(await queryKeys(fed.get(GLOBEX), bob, [dave.user_id])).toEqual(got)
    expect(fed.get(GLOBEX).services.replication.keys.stats.asked).toBe(asked)
  })

  it('answers another server only about users who share a room with one of its users', async () => {
    // globex itself asks (as a compromised server would, for no user of its own): dave is withheld.
    const answer = await fed.get(GLOBEX).services.replication.keys.query(ACME, [dave.user_id, alice.user_id])
    expect(Object.keys(answer.device_lists)).toEqual([alice.user_id])
    expect(Object.keys(answer.prekeys)).toEqual([alice.user_id])
    // Asking acme about a user of another server is refused and counted.
    const faults = () => fed.get(ACME).services.replication.stats.faults.get('not_our_user') ?? 0
    const before = faults()
    await expect(fed.get(GLOBEX).services.replication.keys.query(ACME, [carol.user_id])).rejects.toThrow(
      ParleyError,
    )
    expect(faults()).toBe(before + 1)
  })

  it('pushes keys_changed to co-members on both servers when a list changes', async () => {
    expect(
      (await putList(fed.get(ACME), alice, aliceId.next([alice.device_id, 'SECONDDEVICE']))).status,
    ).toBe(200)
    expect(await bobSock.next((f) => f.type === 'keys_changed', 10_000)).toEqual({
      type: 'keys_changed',
      user_id: alice.user_id,
    })
    const fresh = await queryKeys(fed.get(GLOBEX), bob, [alice.user_id])
    expect(fresh.device_lists[alice.user_id]).toEqual(aliceId.lists[1])

    const bobId = new Identity(bob.user_id)
    expect((await putList(fed.get(GLOBEX), bob, bobId.next([bob.device_id]))).status).toBe(200)
    expect(
      await aliceSock.next((f) => f.type === 'keys_changed' && f.user_id === bob.user_id, 10_000),
    ).toEqual({ type: 'keys_changed', user_id: bob.user_id })
    expect((await queryKeys(fed.get(ACME), alice, [bob.user_id])).device_lists[bob.user_id]).toEqual(
      bobId.lists[0],
    )
  })
})

describe('encrypted rooms across servers', () => {
  it('shows encryption on the replica and refuses plaintext from the remote user and from the remote server', async () => {
    const acme = fed.get(ACME)
    const globex = fed.get(GLOBEX)
    const snapshot = aliceId.snapshot(alice.device_id, room, [
      { user_id: alice.user_id, membership: 'join' },
      { user_id: bob.user_id, membership: 'join' },
      { user_id: erin.user_id, membership: 'join' },
    ])
    const on = await http(acme, 'POST', roomPath(room, '/encryption'), { snapshot }, alice.access_token)
    expect(on.status).toBe(200)
    await bobSock.next(
      (f) => f.type === 'event' && (f.event as { type: string }).type === 'm.room.encryption',
      10_000,
    )
    const summary = await http<{ encrypted: boolean }>(
      globex,
      'GET',
      roomPath(room),
      undefined,
      bob.access_token,
    )
    expect(summary.body.encrypted).toBe(true)

    // bob's own server answers at once.
    expect(await sendEvent(bobSock, room, 'm.message', { body: 'in the clear' })).toMatchObject({
      type: 'error',
      errcode: 'P_ENCRYPTED_ROOM',
    })
    // globex, bypassing its own check, signs and submits plaintext: acme, the owner, refuses it.
    await expect(
      globex.services.replication.outbox.submit({
        room,
        type: 'm.message',
        sender: bob.user_id,
        content: { body: 'injected' },
      }),
    ).rejects.toMatchObject({ errcode: 'P_ENCRYPTED_ROOM' })
    // Ciphertext from bob goes through.
    const sent = await sendEvent(bobSock, room, 'm.encrypted', encryptedContent(bob.user_id, bob.device_id))
    expect(sent.type).toBe('sent') // after `pending`: the owner sequenced it
    const event = await aliceSock.next(
      (f) => f.type === 'event' && (f.event as { type: string }).type === 'm.encrypted',
      10_000,
    )
    expect((event.event as { sender: string }).sender).toBe(bob.user_id)
    const history = await fullHistory(acme, alice.access_token, room)
    expect(history.map((e) => e.content.body)).not.toContain('injected')
  })
})

describe('keys while the other server is down', () => {
  it('serves the last answer, and lists the server in failures when it has nothing for a user', async () => {
    await fed.stop(ACME)
    const cached = await queryKeys(fed.get(GLOBEX), bob, [alice.user_id])
    expect(cached.device_lists[alice.user_id]).toEqual(aliceId.lists[1])
    expect(cached.failures).toEqual({})
    const partly = await queryKeys(fed.get(GLOBEX), bob, [alice.user_id, erin.user_id])
    expect(partly.device_lists[alice.user_id]).toEqual(aliceId.lists[1])
    expect(partly.device_lists[erin.user_id]).toBeUndefined()
    expect(partly.failures).toEqual({ [ACME]: 'P_UNAVAILABLE' })
  }, 20_000)
})
