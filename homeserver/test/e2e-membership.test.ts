/**
 * Signed membership in encrypted rooms (E2E.md section 2.3; section 3 rows 11 and 12) on two real
 * federated homeservers: statements cross federation unchanged; the servers refuse unsigned or
 * mismatched membership changes, by their own users and from the other server; and a compromised
 * homeserver that writes membership into its own log (bypassing its rules, as modified code would)
 * cannot get anyone a room key: the clients ignore it, warn `membership_unsigned`, and the injected
 * user's device gets no envelope (checked in the server's to-device store).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { fromBase64Url, sodiumReady, type JsonObject } from '@parley/protocol'
import { e2e } from '@parley/protocol/crypto'
import type { ParleyClient } from '@parley/protocol/client'
import type { RoomMembershipResponse } from '@parley/protocol/schema'
import {
  connect,
  createRoom,
  fullHistory,
  http,
  register,
  roomPath,
  type TestServer,
  type TestUser,
} from './helpers.ts'
import { Identity, inject, putList } from './support/e2e.ts'
import { e2ePerson, sessionOf, waitForRoom, type Person, type PersonOptions } from './support/e2e-person.ts'
import { startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

let fed: Federation | null = null
const clients: ParleyClient[] = []
async function person(url: string, username: string, options?: PersonOptions): Promise<Person> {
  const p = await e2ePerson(url, username, options)
  clients.push(p.client)
  return p
}
beforeAll(sodiumReady)
afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await fed?.close()
  fed = null
})

/**
 * Runs `act` (a membership change the server makes) and resolves once `p`'s client got the room's
 * next `m.member` event: a client reuses a room's validated members between sends until one arrives.
 */
async function heard(p: Person, room: string, act: () => Promise<void>): Promise<void> {
  const got = new Promise<void>((resolve) => {
    const off = p.client.on('event', ({ event }) => {
      if (event.room === room && event.type === 'm.member') resolve(off())
    })
  })
  await act()
  await got
}

/** Room-key envelopes waiting in `server`'s to-device store for the device (not yet fetched by it). */
function envelopesFor(server: TestServer, deviceId: string): number {
  return server.services.repos.toDevice
    .pending(deviceId, 0, 1000)
    .filter((m) => m.event_type === 'm.room_key').length
}

async function membershipOf(server: TestServer, token: string, room: string) {
  const res = await http<RoomMembershipResponse>(
    server,
    'GET',
    roomPath(room, '/membership'),
    undefined,
    token,
  )
  expect(res.status).toBe(200)
  return res.body
}

/** alice@acme creates an encrypted group and brings bob@globex in, both with signed statements. */
async function encryptedGroup(alice: Person, bob: Person): Promise<string> {
  const room = await alice.e2e.createRoom({ kind: 'group', name: 'Signed', encrypted: true })
  await alice.e2e.invite(room, bob.e2e.userId)
  await waitForRoom(bob.client, room)
  await bob.e2e.join(room)
  return room
}

async function tokenOf(p: Person): Promise<string> {
  return (await p.client.store.getSession())!.access_token
}

describe('signed membership across two servers', () => {
  it('a signed invite and join cross federation unchanged, link in a log, and the room key reaches the member', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const alice = await person(fed.urls[ACME]!, 'alice')
    const bob = await person(fed.urls[GLOBEX]!, 'bob')
    const room = await encryptedGroup(alice, bob)
    await alice.e2e.send(room, 'm.message', { body: 'signed and sealed' })
    await bob.waitFor(room, 'signed and sealed')

    // The owner (acme) and the replica (globex) serve the same statement, and it verifies.
    const atOwner = await membershipOf(fed.get(ACME), await tokenOf(alice), room)
    const atReplica = await membershipOf(fed.get(GLOBEX), await tokenOf(bob), room)
    const join = atOwner.members.find((m) => m.user_id === bob.e2e.userId)!
    expect(join).toMatchObject({ membership: 'join', sender: bob.e2e.userId })
    expect(atReplica.members.find((m) => m.user_id === bob.e2e.userId)!.statement).toEqual(join.statement)
    expect(atOwner).toMatchObject({ creator: alice.e2e.userId, encrypted_at_create: true, snapshot: null })
    const served = (await alice.client.api.queryKeys([bob.e2e.userId])).device_lists[bob.e2e.userId]!
    const list = e2e.verifyDeviceList(served, { userId: bob.e2e.userId, uik: fromBase64Url(served.uik)! })
    e2e.verifyMembership(join.statement, room, list.devices)
    // The log links: alice's invite follows the room's root, bob's join follows the invite.
    const history = await fullHistory(fed.get(GLOBEX), await tokenOf(bob), room)
    const invite = history.find((e) => e.type === 'm.member' && e.content.membership === 'invite')!
    const inviteStatement = invite.content.statement as e2e.SignedMembershipStatement
    expect(inviteStatement.prev).toBe(e2e.membershipRoot(room))
    expect(join.statement!.prev).toBe(e2e.membershipHash(inviteStatement))
    // A ban is signed the same way, over bob's join.
    await alice.e2e.ban(room, bob.e2e.userId)
    const banned = (await membershipOf(fed.get(ACME), await tokenOf(alice), room)).members.find(
      (m) => m.user_id === bob.e2e.userId,
    )!
    expect(banned).toMatchObject({ membership: 'ban', sender: alice.e2e.userId })
    expect(banned.statement!.prev).toBe(e2e.membershipHash(join.statement!))
    expect([...alice.warnings, ...bob.warnings]).toEqual([])
  }, 60_000)

  it('the servers refuse unsigned and mismatched membership changes in encrypted rooms, rule by rule', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const acme = fed.get(ACME)
    const globex = fed.get(GLOBEX)
    const alice = await register(acme, 'alice')
    const carol = await register(acme, 'carol')
    const bob = await register(globex, 'bob')
    const ids = new Map<TestUser, Identity>()
    for (const [server, user] of [
      [acme, alice],
      [acme, carol],
      [globex, bob],
    ] as const) {
      const id = new Identity(user.user_id)
      ids.set(user, id)
      expect((await putList(server, user, id.next([user.device_id]))).status).toBe(200)
    }
    const sign = (
      user: TestUser,
      change: { room: string; target: string; membership: 'invite' | 'join' | 'leave' },
    ) => ids.get(user)!.statement(user.device_id, change)
    const post = (server: TestServer, user: TestUser, room: string, path: string, body: unknown) =>
      http(server, 'POST', roomPath(room, path), body, user.access_token).then((r) => [
        r.status,
        r.body.errcode,
      ])
    const UNSIGNED = [400, 'P_UNSIGNED_MEMBERSHIP']
    const BAD = [400, 'P_BAD_MEMBERSHIP_STATEMENT']

    const refused = await http(
      acme,
      'POST',
      '/api/v1/rooms',
      { kind: 'group', invite: [bob.user_id], encrypted: true },
      alice.access_token,
    )
    expect([refused.status, refused.body.errcode]).toEqual(UNSIGNED)
    const room = await createRoom(acme, alice, { kind: 'group', encrypted: true })
    const other = await createRoom(acme, alice, { kind: 'group', encrypted: true })
    const invite = sign(alice, { room, target: bob.user_id, membership: 'invite' })
    expect(await post(acme, alice, room, '/invite', { user_id: bob.user_id })).toEqual(UNSIGNED)
    // Each field must be the request's: target, membership, room, actor; and alice's device must sign.
    const forger = new Identity(alice.user_id)
    forger.next([alice.device_id]) // same device id, other key, never published
    for (const statement of [
      sign(alice, { room, target: carol.user_id, membership: 'invite' }),
      sign(alice, { room, target: bob.user_id, membership: 'join' }),
      sign(alice, { room: other, target: bob.user_id, membership: 'invite' }),
      sign(carol, { room, target: bob.user_id, membership: 'invite' }),
      forger.statement(alice.device_id, { room, target: bob.user_id, membership: 'invite' }),
      { ...invite, signature: sign(alice, { room, target: carol.user_id, membership: 'invite' }).signature },
    ])
      expect(await post(acme, alice, room, '/invite', { user_id: bob.user_id, statement })).toEqual(BAD)
    expect(await post(acme, alice, room, '/invite', { user_id: bob.user_id, statement: invite })).toEqual([
      200,
      undefined,
    ])

    // Bob joins through his own server (the room is acme's): globex checks the signature, acme the rest.
    await waitUntilRoom(globex, bob, room)
    expect(await post(globex, bob, room, '/join', {})).toEqual(UNSIGNED)
    const notBobs = new Identity(bob.user_id)
    notBobs.next([bob.device_id])
    expect(
      await post(globex, bob, room, '/join', {
        statement: notBobs.statement(bob.device_id, { room, target: bob.user_id, membership: 'join' }),
      }),
    ).toEqual(BAD)
    expect(
      await post(globex, bob, room, '/join', {
        statement: sign(bob, { room, target: bob.user_id, membership: 'join' }),
      }),
    ).toEqual([200, undefined])
    // globex, bypassing its own checks, submits bob's leave unsigned or mismatched: acme refuses.
    const submit = (content: JsonObject) =>
      globex.services.replication.outbox.submit({
        room,
        type: 'm.member',
        stateKey: bob.user_id,
        sender: bob.user_id,
        content,
      })
    await expect(submit({ membership: 'leave' })).rejects.toMatchObject({ errcode: 'P_UNSIGNED_MEMBERSHIP' })
    const joinAgain = sign(bob, { room, target: bob.user_id, membership: 'join' })
    await expect(submit({ membership: 'leave', statement: { ...joinAgain } })).rejects.toMatchObject({
      errcode: 'P_BAD_MEMBERSHIP_STATEMENT',
    })
    // Kick and leave need theirs too.
    expect(await post(acme, alice, room, '/kick', { user_id: bob.user_id })).toEqual(UNSIGNED)
    expect(await post(globex, bob, room, '/leave', {})).toEqual(UNSIGNED)
    expect(
      (await membershipOf(acme, alice.access_token, room)).members.find((m) => m.user_id === bob.user_id),
    ).toMatchObject({
      membership: 'join',
    })

    // A room turned encrypted later: the snapshot must name exactly its members, signed.
    const plain = await createRoom(acme, alice, { kind: 'group', invite: [carol.user_id] })
    const snapshot = (members: e2e.SnapshotMember[]) =>
      ids.get(alice)!.snapshot(alice.device_id, plain, members)
    expect(await post(acme, alice, plain, '/encryption', {})).toEqual(UNSIGNED)
    expect(
      await post(acme, alice, plain, '/encryption', {
        snapshot: snapshot([{ user_id: alice.user_id, membership: 'join' }]),
      }),
    ).toEqual(BAD)
    const exact = snapshot([
      { user_id: alice.user_id, membership: 'join' },
      { user_id: carol.user_id, membership: 'invite' },
    ])
    expect(
      await post(acme, alice, plain, '/encryption', { snapshot: { ...exact, actor: carol.user_id } }),
    ).toEqual(BAD)
    expect(await post(acme, alice, plain, '/encryption', { snapshot: exact })).toEqual([200, undefined])
    expect(await post(acme, carol, plain, '/join', {})).toEqual(UNSIGNED)
    const view = await membershipOf(acme, alice.access_token, plain)
    expect(view).toMatchObject({ encrypted_at_create: false, snapshot: exact })
    expect(view.snapshot_seq).toBeGreaterThan(0)
  }, 60_000)
})

describe('row 12: a homeserver that writes membership itself', () => {
  it('a user the server makes up, who signs their own join without any invitation, gets no key', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const acme = fed.get(ACME)
    const alice = await person(fed.urls[ACME]!, 'alice')
    const bob = await person(fed.urls[GLOBEX]!, 'bob')
    // acme's own account, with real published keys (offline: its envelopes would wait on acme).
    const eve = await person(fed.urls[ACME]!, 'eve', { connect: false })
    const room = await encryptedGroup(alice, bob)
    await alice.e2e.send(room, 'm.message', { body: 'before eve' })
    await bob.waitFor(room, 'before eve')

    // eve's device signs her join (a valid signature by a device of a valid list), and acme puts it
    // in the room without any invitation.
    const device = JSON.parse((await eve.store.getItem('e2e:device'))!) as { dsk: { secret: string } }
    const join = e2e.signMembership(e2e.signingKeyPair(fromBase64Url(device.dsk.secret)!.slice(0, 32)), {
      room,
      target: eve.e2e.userId,
      membership: 'join',
      actor: eve.e2e.userId,
      actorDevice: eve.e2e.deviceId,
      prev: e2e.membershipRoot(room),
    })
    // Both clients get the event (bob's through globex's copy) before they send.
    const bobHeard = heard(bob, room, () => Promise.resolve())
    await heard(alice, room, () =>
      inject(acme, {
        room,
        type: 'm.member',
        stateKey: eve.e2e.userId,
        sender: eve.e2e.userId,
        content: { membership: 'join', statement: { ...join } },
      }),
    )
    await bobHeard
    await alice.e2e.send(room, 'm.message', { body: 'not for eve' })
    await bob.e2e.send(room, 'm.message', { body: 'nor from bob' })
    await alice.waitFor(room, 'nor from bob')
    for (const p of [alice, bob]) {
      expect(p.warnings.map((w) => [w.kind, w.user_id])).toEqual([['membership_unsigned', eve.e2e.userId]])
      expect(p.warnings[0]!.detail).toContain('without a validated invitation')
    }
    // Neither alice's nor bob's key reached eve's device (bob's would be relayed to acme).
    expect(envelopesFor(acme, eve.e2e.deviceId)).toBe(0)
  }, 60_000)

  it('an injected unsigned join and a forged kick are ignored with a warning; the injected user gets no envelope', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const acme = fed.get(ACME)
    const alice = await person(fed.urls[ACME]!, 'alice')
    const bob = await person(fed.urls[GLOBEX]!, 'bob')
    // Offline, so whatever is sent to them stays in acme's to-device store for the test to read.
    const dave = await person(fed.urls[ACME]!, 'dave', { connect: false })
    const mallory = await person(fed.urls[ACME]!, 'mallory', { connect: false })
    const room = await encryptedGroup(alice, bob)
    await alice.e2e.invite(room, dave.e2e.userId)
    await dave.e2e.join(room)
    await alice.e2e.send(room, 'm.message', { body: 'before' })
    await alice.waitFor(room, 'before')
    // The control: a validated member who is offline has the key waiting.
    expect(envelopesFor(acme, dave.e2e.deviceId)).toBe(1)

    // acme puts mallory in without any statement, and removes bob with a statement it forged.
    await heard(alice, room, () =>
      inject(acme, {
        room,
        type: 'm.member',
        stateKey: mallory.e2e.userId,
        sender: mallory.e2e.userId,
        content: { membership: 'join' },
      }),
    )
    const forgedBy = new Identity(alice.e2e.userId)
    forgedBy.next([alice.e2e.deviceId])
    const forged = forgedBy.statement(alice.e2e.deviceId, {
      room,
      target: bob.e2e.userId,
      membership: 'leave',
    })
    await heard(alice, room, () =>
      inject(acme, {
        room,
        type: 'm.member',
        stateKey: bob.e2e.userId,
        sender: alice.e2e.userId,
        content: { membership: 'leave', statement: { ...forged } },
      }),
    )
    const shown = await membershipOf(acme, await tokenOf(alice), room)
    expect(shown.members.find((m) => m.user_id === mallory.e2e.userId)?.membership).toBe('join')

    await alice.e2e.send(room, 'm.message', { body: 'after' })
    await alice.waitFor(room, 'after')
    const warned = (user: string) => alice.warnings.filter((w) => w.user_id === user)
    expect(alice.warnings.every((w) => w.kind === 'membership_unsigned')).toBe(true)
    expect(warned(mallory.e2e.userId).map((w) => w.detail)).toEqual([
      expect.stringContaining('server tried to add'),
    ])
    expect(warned(bob.e2e.userId).map((w) => w.detail)).toEqual([
      expect.stringContaining('server tried to remove'),
    ])
    expect(alice.warnings).toHaveLength(2)
    // No key for mallory, ever; and bob still counts: the session did not rotate for a forged kick.
    expect(envelopesFor(acme, mallory.e2e.deviceId)).toBe(0)
    expect(sessionOf(alice, room, 'after')).toBe(sessionOf(alice, room, 'before'))
  }, 60_000)

  it('a replayed old join after a signed kick does not bring the member back', async () => {
    fed = await startFederation([ACME, GLOBEX])
    const acme = fed.get(ACME)
    const alice = await person(fed.urls[ACME]!, 'alice')
    const bob = await person(fed.urls[GLOBEX]!, 'bob')
    const carol = await person(fed.urls[ACME]!, 'carol', { connect: false })
    const room = await encryptedGroup(alice, bob)
    await alice.e2e.invite(room, carol.e2e.userId)
    await carol.e2e.join(room)
    const oldJoin = (await membershipOf(acme, await tokenOf(alice), room)).members.find(
      (m) => m.user_id === carol.e2e.userId,
    )!.statement!
    await alice.e2e.send(room, 'm.message', { body: 'three of us' })
    await alice.waitFor(room, 'three of us')
    expect(envelopesFor(acme, carol.e2e.deviceId)).toBe(1)

    await alice.e2e.kick(room, carol.e2e.userId)
    await alice.e2e.send(room, 'm.message', { body: 'after the kick' })
    await alice.waitFor(room, 'after the kick')
    // acme shows carol's old, validly signed join again.
    await heard(alice, room, () =>
      inject(acme, {
        room,
        type: 'm.member',
        stateKey: carol.e2e.userId,
        sender: carol.e2e.userId,
        content: { membership: 'join', statement: { ...oldJoin } },
      }),
    )
    await alice.e2e.send(room, 'm.message', { body: 'after the replay' })
    await alice.waitFor(room, 'after the replay')
    expect(envelopesFor(acme, carol.e2e.deviceId)).toBe(1)
    expect(alice.warnings.map((w) => [w.kind, w.user_id])).toEqual([
      ['membership_unsigned', carol.e2e.userId],
    ])
    expect(alice.warnings[0]!.detail).toContain('replayed')
  }, 60_000)
})

/** Resolves once the invited user's server holds the room (the invite arrived over federation). */
async function waitUntilRoom(server: TestServer, user: TestUser, room: string): Promise<void> {
  const sock = await connect(server, user)
  try {
    const listed = await http<{ rooms: Array<{ room_id: string }> }>(
      server,
      'GET',
      '/api/v1/rooms',
      undefined,
      user.access_token,
    )
    if (!listed.body.rooms.some((r) => r.room_id === room))
      await sock.next((f) => f.type === 'event' && f.room === room, 10_000)
  } finally {
    sock.close()
  }
}
