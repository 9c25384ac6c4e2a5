/**
 * The homeserver side of end-to-end encryption on one server (E2E.md sections 2.1, 2.5;
 * docs/protocol.md, "Keys"): the key directory (device lists, prekeys, query, keys_changed),
 * encrypted rooms (only ciphertext goes in) and the opaque key backup. Every access rule has a test
 * that tries to break it. Real server on port 0, real HTTP and WebSocket; key material from the
 * crypto core.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sodiumReady } from '@parley/protocol'
import { e2e } from '@parley/protocol/crypto'
import {
  barrier,
  connect,
  createRoom,
  groupWith,
  http,
  login,
  register,
  roomPath,
  startTestServer,
  type TestServer,
  type TestSocket,
  type TestUser,
} from './helpers.ts'
import { encryptedContent, Identity, putList, queryKeys, sendEvent } from './support/e2e.ts'

let s: TestServer
let alice: TestUser
let bob: TestUser
let carol: TestUser // shares no room with anyone
let dave: TestUser // only invited to a room of alice's
let aliceId: Identity
const sockets: TestSocket[] = []

beforeAll(async () => {
  await sodiumReady()
  s = await startTestServer()
  alice = await register(s, 'alice')
  bob = await register(s, 'bob')
  carol = await register(s, 'carol')
  dave = await register(s, 'dave')
  await groupWith(s, alice, [bob])
  await createRoom(s, alice, { kind: 'group', invite: [dave.user_id] })
  aliceId = new Identity(alice.user_id)
})
afterAll(async () => {
  for (const sock of sockets) sock.close()
  await s.stop()
})

async function sock(user: TestUser): Promise<TestSocket> {
  const socket = await connect(s, user)
  sockets.push(socket)
  return socket
}

describe('device lists', () => {
  it('publishes the own list and shows it to co-members, invitees and the owner, to nobody else', async () => {
    const list = aliceId.next([alice.device_id])
    expect((await putList(s, alice, list)).status).toBe(200)
    for (const viewer of [alice, bob, dave]) {
      const got = await queryKeys(s, viewer, [alice.user_id])
      expect(got.device_lists[alice.user_id]).toEqual(list)
      // What the server hands out verifies under the pinned UIK, untouched.
      e2e.verifyDeviceList(got.device_lists[alice.user_id], {
        userId: alice.user_id,
        uik: aliceId.uik.publicKey,
      })
    }
    // A stranger learns nothing: the answer is the one for a user that has no keys, or none at all.
    const stranger = await queryKeys(s, carol, [alice.user_id, '@nobody:acme.localhost'])
    expect(stranger).toEqual({ device_lists: {}, prekeys: {}, failures: {} })
    const noKeys = await queryKeys(s, alice, [carol.user_id])
    expect(noKeys).toEqual(stranger)
  })

  it("refuses publishing someone else's list with 403", async () => {
    const mallory = new Identity(alice.user_id) // bob makes a list in alice's name, with his own key
    const res = await putList(s, bob, mallory.next([bob.device_id]))
    expect(res.status).toBe(403)
    expect(res.body.errcode).toBe('P_FORBIDDEN')
    expect((await queryKeys(s, bob, [alice.user_id])).device_lists[alice.user_id]).toEqual(aliceId.lists[0])
  })

  it('refuses a list whose signature does not verify (400 P_BAD_SIGNATURE) and garbage (400)', async () => {
    const good = aliceId.lists[0]!
    const sneaky = new Identity(alice.user_id).next(['SNEAKYDEVICE'])
    // The server adds a device to the signed list: the signature no longer covers it.
    const tampered = { ...good, devices: [...good.devices, sneaky.devices[0]!] }
    const res = await putList(s, alice, tampered)
    expect(res.status).toBe(400)
    expect(res.body.errcode).toBe('P_BAD_SIGNATURE')
    const garbage = await putList(s, alice, { ...good, uik: 'not a key' })
    expect(garbage.status).toBe(400)
    expect(garbage.body.errcode).toBe('P_BAD_REQUEST')
    const extra = await putList(s, alice, { ...good, extra: 1 })
    expect(extra.body.errcode).toBe('P_BAD_REQUEST')
  })

  it('refuses a rollback, a replay and a broken chain under the same identity key with 409', async () => {
    const v1 = aliceId.lists[0]!
    const v2 = aliceId.next([alice.device_id, 'SECONDDEVICE'])
    expect((await putList(s, alice, v2)).status).toBe(200)
    const replay = await putList(s, alice, v2)
    expect([replay.status, replay.body.errcode]).toEqual([409, 'P_CONFLICT'])
    const rollback = await putList(s, alice, v1)
    expect([rollback.status, rollback.body.errcode]).toEqual([409, 'P_CONFLICT'])
    // A v3 that links to v1 instead of v2 (a fork).
    const fork = e2e.signDeviceList(aliceId.uik, alice.user_id, [], v1)
    const forked = { ...fork, version: 3 }
    const resigned = {
      ...forked,
      signature: sign(aliceId.uik, forked),
    }
    const broken = await putList(s, alice, resigned)
    expect([broken.status, broken.body.errcode]).toEqual([409, 'P_CONFLICT'])
    expect((await queryKeys(s, bob, [alice.user_id])).device_lists[alice.user_id]).toEqual(v2)
  })

  it('accepts a new identity key (reset) and tells co-members, and only them, with keys_changed', async () => {
    const [aliceSock, bobSock, daveSock, carolSock] = await Promise.all([
      sock(alice),
      sock(bob),
      sock(dave),
      sock(carol),
    ])
    aliceId.reset()
    const fresh = aliceId.next([alice.device_id])
    expect((await putList(s, alice, fresh)).status).toBe(200)
    for (const socket of [aliceSock, bobSock, daveSock])
      expect(await socket.next((f) => f.type === 'keys_changed')).toEqual({
        type: 'keys_changed',
        user_id: alice.user_id,
      })
    await barrier(carolSock)
    expect(carolSock.frames.filter((f) => f.type === 'keys_changed')).toEqual([])
    expect((await queryKeys(s, bob, [alice.user_id])).device_lists[alice.user_id]).toEqual(fresh)
  })
})

/** Re-signs a device list body with a UIK (to build a well-signed list that breaks the chain). */
function sign(uik: e2e.SigningKeyPair, list: e2e.SignedDeviceList): string {
  const { signature: _signature, ...body } = list
  return Buffer.from(e2e.sign(uik.secretKey, e2e.deviceListSigningBytes(body))).toString('base64url')
}

describe('signed prekeys', () => {
  it("stores the device's prekey, verified under its key in the list, and serves it by device id", async () => {
    const prekey = aliceId.prekey(alice.device_id)
    const put = await http(s, 'PUT', '/api/v1/keys/prekey', { signed_prekey: prekey }, alice.access_token)
    expect(put.status).toBe(200)
    const got = await queryKeys(s, bob, [alice.user_id])
    expect(got.prekeys[alice.user_id]).toEqual({ [alice.device_id]: prekey })
    const dsk = aliceId.devices.get(alice.device_id)!.dsk.publicKey
    e2e.verifySignedPrekey(got.prekeys[alice.user_id]![alice.device_id], dsk, Date.now())
    // Signed by another key: refused, and the stored one stays.
    const forged = e2e.createSignedPrekey(e2e.generateIdentityKey(), Date.now()).signed
    const bad = await http(s, 'PUT', '/api/v1/keys/prekey', { signed_prekey: forged }, alice.access_token)
    expect([bad.status, bad.body.errcode]).toEqual([400, 'P_BAD_SIGNATURE'])
    expect((await queryKeys(s, bob, [alice.user_id])).prekeys[alice.user_id]).toEqual({
      [alice.device_id]: prekey,
    })
    // A signed-out device's prekey is not served any more.
    const second = (await login(s, 'alice')).body
    const otherKeys = e2e.createSignedPrekey(e2e.generateIdentityKey(), Date.now()).signed
    expect(
      (await http(s, 'PUT', '/api/v1/keys/prekey', { signed_prekey: otherKeys }, second.access_token)).status,
    ).toBe(200) // not in the list yet: stored on its shape
    expect(Object.keys((await queryKeys(s, bob, [alice.user_id])).prekeys[alice.user_id]!)).toHaveLength(2)
    await http(s, 'POST', '/api/v1/logout', undefined, second.access_token)
    expect(Object.keys((await queryKeys(s, bob, [alice.user_id])).prekeys[alice.user_id]!)).toEqual([
      alice.device_id,
    ])
  })
})

describe('encrypted rooms', () => {
  it('turns encryption on for admins only, once, and shows it in the room summary', async () => {
    const room = await groupWith(s, alice, [bob])
    const byMember = await http(s, 'POST', roomPath(room, '/encryption'), undefined, bob.access_token)
    expect([byMember.status, byMember.body.errcode]).toEqual([403, 'P_FORBIDDEN'])
    const byStranger = await http(s, 'POST', roomPath(room, '/encryption'), undefined, carol.access_token)
    expect([byStranger.status, byStranger.body.errcode]).toEqual([403, 'P_FORBIDDEN'])
    const summary = await http<{ encrypted: boolean }>(s, 'GET', roomPath(room), undefined, bob.access_token)
    expect(summary.body.encrypted).toBe(false)
    // The members at this moment, signed by the enabling device (E2E.md section 2.3).
    const snapshot = aliceId.snapshot(alice.device_id, room, [
      { user_id: alice.user_id, membership: 'join' },
      { user_id: bob.user_id, membership: 'join' },
    ])
    const on = await http(s, 'POST', roomPath(room, '/encryption'), { snapshot }, alice.access_token)
    expect(on.status).toBe(200)
    expect(on.body.event_id).toMatch(/^\$/)
    const again = await http(s, 'POST', roomPath(room, '/encryption'), { snapshot }, alice.access_token)
    expect([again.status, again.body.errcode]).toEqual([409, 'P_CONFLICT'])
    const after = await http<{ encrypted: boolean }>(s, 'GET', roomPath(room), undefined, bob.access_token)
    expect(after.body.encrypted).toBe(true)
    // The state event is in the room's log and cannot be deleted.
    const bobSock = await sock(bob)
    const deletion = await sendEvent(bobSock, room, 'm.redaction', { target: on.body.event_id })
    expect(deletion).toMatchObject({ type: 'error' })
  })

  it('takes only m.encrypted and m.redaction: plaintext gets 400 P_ENCRYPTED_ROOM', async () => {
    const room = await createRoom(s, alice, { kind: 'group', encrypted: true })
    const invite = aliceId.statement(alice.device_id, { room, target: bob.user_id, membership: 'invite' })
    const invited = await http(
      s,
      'POST',
      roomPath(room, '/invite'),
      { user_id: bob.user_id, statement: invite },
      alice.access_token,
    )
    expect(invited.status).toBe(200)
    const bobId = new Identity(bob.user_id)
    expect((await putList(s, bob, bobId.next([bob.device_id]))).status).toBe(200)
    const join = bobId.statement(bob.device_id, { room, target: bob.user_id, membership: 'join' })
    expect(
      (await http(s, 'POST', roomPath(room, '/join'), { statement: join }, bob.access_token)).status,
    ).toBe(200)
    const aliceSock = await sock(alice)
    const sent = await sendEvent(
      aliceSock,
      room,
      'm.encrypted',
      encryptedContent(alice.user_id, alice.device_id),
    )
    expect(sent.type).toBe('sent')
    for (const [type, content] of [
      ['m.message', { body: 'in the clear' }],
      ['m.edit', { target: sent.event_id, body: 'in the clear' }],
      ['m.reaction', { target: sent.event_id, key: '👍' }],
    ] as const) {
      expect(await sendEvent(aliceSock, room, type, content)).toMatchObject({
        type: 'error',
        errcode: 'P_ENCRYPTED_ROOM',
      })
    }
    // Someone else's name, or another device's, in the header: refused.
    const bobSock = await sock(bob)
    for (const content of [
      encryptedContent(alice.user_id, bob.device_id),
      encryptedContent(bob.user_id, alice.device_id),
    ])
      expect(await sendEvent(bobSock, room, 'm.encrypted', content)).toMatchObject({
        type: 'error',
        errcode: 'P_BAD_REQUEST',
      })
    expect(
      await sendEvent(aliceSock, room, 'm.encrypted', {
        ...encryptedContent(alice.user_id, alice.device_id),
        extra: 1,
      }),
    ).toMatchObject({ errcode: 'P_BAD_REQUEST' })
    expect(await sendEvent(aliceSock, room, 'm.redaction', { target: sent.event_id })).toMatchObject({
      type: 'sent',
    })
    // A stranger hears "not a member", exactly as for a room that does not exist.
    const carolSock = await sock(carol)
    expect(await sendEvent(carolSock, room, 'm.message', { body: 'hi' })).toMatchObject({
      errcode: 'P_FORBIDDEN',
    })
    const history = await http<{ events: Array<{ type: string }> }>(
      s,
      'GET',
      roomPath(room, '/messages'),
      undefined,
      bob.access_token,
    )
    expect(history.body.events.map((e) => e.type)).not.toContain('m.message')
    // Ciphertext counts as the latest message and as unread.
    const summary = await http<{ unread: number; last_event?: { type: string } }>(
      s,
      'GET',
      roomPath(room),
      undefined,
      bob.access_token,
    )
    expect(summary.body.last_event?.type).toBe('m.encrypted')
  })

  it('refuses m.encrypted in a room that is not encrypted', async () => {
    const room = await groupWith(s, alice, [bob])
    const aliceSock = await sock(alice)
    expect(
      await sendEvent(aliceSock, room, 'm.encrypted', encryptedContent(alice.user_id, alice.device_id)),
    ).toMatchObject({ errcode: 'P_BAD_REQUEST' })
  })
})

describe('key backup', () => {
  const rk = () => e2e.deriveBackupKeys(e2e.generateRecoveryKey()).bk
  const roomKey = (room: string): e2e.RoomKeyPayload => ({
    suite: 'e2e/v1',
    room_id: room,
    session_id: Buffer.from(e2e.generateIdentityKey().publicKey).toString('base64url'),
    sender_user: alice.user_id,
    sender_dev: alice.device_id,
    index: 0,
    chain_key: Buffer.alloc(32, 7).toString('base64url'),
    created_ts: Date.now(),
    max_msgs: 100,
    max_age: 24 * 3600_000,
    membership_epoch: Buffer.alloc(32, 1).toString('base64url'),
  })

  it('stores the own metadata and records opaquely; a new version replaces both', async () => {
    const room = '!AAAAAAAAAAAAAAAAAAAAAA:acme.localhost'
    expect((await http(s, 'GET', '/api/v1/keys/backup', undefined, alice.access_token)).status).toBe(404)
    const bk = rk()
    const metadata = e2e.signBackupMetadata(aliceId.uik, alice.user_id, 'v1', bk)
    expect((await http(s, 'PUT', '/api/v1/keys/backup', { metadata }, alice.access_token)).status).toBe(200)
    const got = await http(s, 'GET', '/api/v1/keys/backup', undefined, alice.access_token)
    expect(got.body).toEqual({ metadata })
    e2e.verifyBackupMetadata(got.body.metadata, { userId: alice.user_id, uik: aliceId.uik.publicKey }, bk)

    const records = [roomKey(room), roomKey(room)].map((k) => e2e.encryptBackupSession(bk, 'v1', k))
    const put = await http(
      s,
      'PUT',
      '/api/v1/keys/backup/sessions',
      { version: 'v1', records },
      alice.access_token,
    )
    expect(put.status).toBe(200)
    const sessions = await http<{ records: unknown[] }>(
      s,
      'GET',
      '/api/v1/keys/backup/sessions?version=v1',
      undefined,
      alice.access_token,
    )
    expect(sessions.body.records).toHaveLength(2)
    for (const record of sessions.body.records)
      expect(e2e.decryptBackupSession(bk, 'v1', record).room_id).toBe(room)

    // Version 2 replaces version 1: its records can no longer be opened, so they are gone.
    const bk2 = rk()
    const v2 = e2e.signBackupMetadata(aliceId.uik, alice.user_id, 'v2', bk2)
    expect((await http(s, 'PUT', '/api/v1/keys/backup', { metadata: v2 }, alice.access_token)).status).toBe(
      200,
    )
    const old = await http(
      s,
      'PUT',
      '/api/v1/keys/backup/sessions',
      { version: 'v1', records },
      alice.access_token,
    )
    expect([old.status, old.body.errcode]).toEqual([409, 'P_CONFLICT'])
    expect(
      (await http(s, 'GET', '/api/v1/keys/backup/sessions?version=v1', undefined, alice.access_token)).status,
    ).toBe(404)
    const now = await http<{ records: unknown[] }>(
      s,
      'GET',
      '/api/v1/keys/backup/sessions?version=v2',
      undefined,
      alice.access_token,
    )
    expect(now.body.records).toEqual([])
  })

  it("never shows or changes another user's backup", async () => {
    // Bob asks for "his" backup: there is none (alice's stays hers).
    expect((await http(s, 'GET', '/api/v1/keys/backup', undefined, bob.access_token)).status).toBe(404)
    expect(
      (await http(s, 'GET', '/api/v1/keys/backup/sessions?version=v2', undefined, bob.access_token)).status,
    ).toBe(404)
    // Metadata in alice's name, or signed by a key that is not alice's UIK.
    const inHerName = e2e.signBackupMetadata(aliceId.uik, alice.user_id, 'v9', rk())
    const byBob = await http(s, 'PUT', '/api/v1/keys/backup', { metadata: inHerName }, bob.access_token)
    expect([byBob.status, byBob.body.errcode]).toEqual([403, 'P_FORBIDDEN'])
    const wrongKey = e2e.signBackupMetadata(e2e.generateIdentityKey(), alice.user_id, 'v9', rk())
    const forged = await http(s, 'PUT', '/api/v1/keys/backup', { metadata: wrongKey }, alice.access_token)
    expect([forged.status, forged.body.errcode]).toEqual([400, 'P_BAD_SIGNATURE'])
    // Records for alice's version, sent by bob, land nowhere.
    const bk = rk()
    const records = [e2e.encryptBackupSession(bk, 'v2', roomKey('!AAAAAAAAAAAAAAAAAAAAAA:acme.localhost'))]
    const put = await http(
      s,
      'PUT',
      '/api/v1/keys/backup/sessions',
      { version: 'v2', records },
      bob.access_token,
    )
    expect(put.status).toBe(404)
    const hers = await http<{ metadata: { version: string } }>(
      s,
      'GET',
      '/api/v1/keys/backup',
      undefined,
      alice.access_token,
    )
    expect(hers.body.metadata.version).toBe('v2')
    const herRecords = await http<{ records: unknown[] }>(
      s,
      'GET',
      '/api/v1/keys/backup/sessions?version=v2',
      undefined,
      alice.access_token,
    )
    expect(herRecords.body.records).toEqual([])
  })

  it('bounds records per call', async () => {
    const bk = rk()
    const record = e2e.encryptBackupSession(bk, 'v2', roomKey('!AAAAAAAAAAAAAAAAAAAAAA:acme.localhost'))
    const res = await http(
      s,
      'PUT',
      '/api/v1/keys/backup/sessions',
      { version: 'v2', records: new Array(101).fill(record) },
      alice.access_token,
    )
    expect([res.status, res.body.errcode]).toEqual([400, 'P_BAD_REQUEST'])
  })
})
