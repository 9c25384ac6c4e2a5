/**
 * Key backup and a user's second device with real homeservers and the headless client (E2E.md
 * sections 2.1 and 2.5, section 3 row 16): alice@acme backs up her room keys, signs in on a second
 * device, restores it with the recovery key or passphrase, and the new device reads history and new
 * messages from bob@globex (two federated servers). A wrong secret fails closed; a server that swaps
 * the backup metadata gets no uploads; a server that injects a session record gets it skipped. Row 15,
 * second half: a room key forwarded by one's own second device without a request is refused. Also
 * the secret-storage slot of the homeserver (owner-only, size-limited).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { canonicalJson, fromBase64Url, toBase64Url } from '@parley/protocol'
import { e2e } from '@parley/protocol/crypto'
import { BackupError, type ParleyClient, type PassphraseKdf } from '@parley/protocol/client'
import { nodePassphraseKdf } from '@parley/protocol/node'
import { http, register, startTestServer, type TestServer, type TestUser } from './helpers.ts'
import { startFederation, type Federation } from './support/federation.ts'
import {
  bodies,
  e2ePerson,
  encryptedRoom,
  waitForRoom,
  type Person,
  type PersonOptions,
} from './support/e2e-person.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
/** argon2id at the lowest cost the crypto core accepts (1 pass, 64 MiB): the default 128 MiB is for users. */
const TEST_COST = { opslimit: e2e.MIN_PWHASH_OPSLIMIT, memlimit: e2e.MIN_PWHASH_MEMLIMIT }

let fed: Federation | null = null
const clients: ParleyClient[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await fed?.close()
  fed = null
})

async function person(server: string, username: string, options?: PersonOptions): Promise<Person> {
  const p = await e2ePerson(fed!.urls[server]!, username, options)
  clients.push(p.client)
  return p
}

/** The code of the {@link BackupError} `promise` rejects with. */
async function backupError(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    if (error instanceof BackupError) return error.code
    throw error
  }
  throw new Error('expected a BackupError')
}

/** Resolves with the next `own_devices` event of `p`. */
function nextOwnDevices(p: Person): Promise<readonly string[]> {
  return new Promise((resolve) => {
    const off = p.e2e.on('own_devices', ({ device_ids }) => {
      off()
      resolve(device_ids)
    })
  })
}

/** alice@acme and bob@globex in an encrypted DM. */
async function aliceAndBob(aliceOptions?: PersonOptions) {
  fed = await startFederation([ACME, GLOBEX])
  const alice = await person(ACME, 'alice', aliceOptions)
  const bob = await person(GLOBEX, 'bob')
  const dm = await alice.e2e.createRoom({ kind: 'dm', invite: [bob.e2e.userId], encrypted: true })
  await waitForRoom(bob.client, dm)
  await bob.e2e.join(dm)
  return { alice, bob, dm }
}

describe('key backup and a second device across two servers', () => {
  it('a second device restored with the recovery key reads the backed-up history and new messages, and everyone shares keys with it', async () => {
    const { alice, bob, dm } = await aliceAndBob()
    const { recoveryKey } = await alice.e2e.enableBackup()
    expect(recoveryKey).toMatch(/^[1-9A-HJ-NP-Za-km-z ]+$/)
    await alice.e2e.send(dm, 'm.message', { body: 'old from alice' })
    await bob.waitFor(dm, 'old from alice')
    await bob.e2e.send(dm, 'm.message', { body: 'old from bob' })
    await alice.waitFor(dm, 'old from bob')
    // Both sessions (alice's own, and bob's she received) went to the backup as they were stored.
    await alice.e2e.flushBackup()
    const stored = fed!.get(ACME).services.repos.keys.sessions(alice.e2e.userId)
    expect(stored).toHaveLength(2)

    const second = await person(ACME, 'alice', { login: true })
    expect(second.e2e.deviceId).not.toBe(alice.e2e.deviceId)
    expect(second.e2e.needsVerification).toBe(true)
    expect(second.e2e.identityKey).toBeNull()
    await second.readHistory(dm)
    expect(bodies(second, dm)).toEqual(['waiting', 'waiting'])

    const verification: boolean[] = []
    second.e2e.on('verification', ({ needsVerification }) => verification.push(needsVerification))
    const aliceSeesSibling = nextOwnDevices(alice)
    const report = await second.e2e.restoreFromBackup({ recoveryKey })
    expect(report).toEqual({ imported: 2, rejected: 0 })
    expect(second.e2e.needsVerification).toBe(false)
    expect(verification).toEqual([false])
    expect(second.e2e.identityKey).toBe(alice.e2e.identityKey)
    // History covered by the backup decrypts (the room_key events re-decrypted what was waiting).
    expect(bodies(second, dm)).toEqual(['old from alice', 'old from bob'])

    // The new signed list: version 2, chained to version 1, both devices; the first device adopts it.
    expect(await aliceSeesSibling).toEqual([alice.e2e.deviceId, second.e2e.deviceId])
    const lists = await bob.client.api.queryKeys([alice.e2e.userId])
    const list = lists.device_lists[alice.e2e.userId]!
    expect(list.version).toBe(2)
    expect(list.devices.map((d) => d.device_id)).toEqual([alice.e2e.deviceId, second.e2e.deviceId])

    // Bob (other server) accepts the newer list signed by the same identity key: his key reaches it.
    await bob.e2e.send(dm, 'm.message', { body: 'new from bob' })
    await second.waitFor(dm, 'new from bob')
    await alice.waitFor(dm, 'new from bob')
    // The first device shares its session with its sibling at the current index.
    await alice.e2e.send(dm, 'm.message', { body: 'new from alice' })
    await second.waitFor(dm, 'new from alice')
    // And the second device's own messages reach both.
    await second.e2e.send(dm, 'm.message', { body: 'from the second device' })
    await bob.waitFor(dm, 'from the second device')
    await alice.waitFor(dm, 'from the second device')
    expect([...alice.warnings, ...bob.warnings, ...second.warnings]).toEqual([])
  }, 90_000)

  it('a wrong recovery key or passphrase fails closed and changes nothing; the right passphrase restores', async () => {
    const kdf = nodePassphraseKdf()
    const options = { e2e: { passphraseKdf: kdf, passphraseCost: TEST_COST } }
    const { alice, bob, dm } = await aliceAndBob(options)
    const { recoveryKey } = await alice.e2e.enableBackup({ passphrase: 'tr0ub4dor & 3' })
    await bob.e2e.send(dm, 'm.message', { body: 'before the new device' })
    await alice.waitFor(dm, 'before the new device')
    await alice.e2e.flushBackup()

    const second = await person(ACME, 'alice', { ...options, login: true })
    const otherKey = e2e.encodeRecoveryKey(e2e.generateRecoveryKey())
    const typo = recoveryKey.slice(0, -1) + (recoveryKey.endsWith('2') ? '3' : '2')
    expect(await backupError(second.e2e.restoreFromBackup({ recoveryKey: otherKey }))).toBe('wrong_key')
    expect(await backupError(second.e2e.restoreFromBackup({ recoveryKey: typo }))).toBe('wrong_key')
    expect(await backupError(second.e2e.restoreFromBackup({ passphrase: 'tr0ub4dor & 4' }))).toBe('wrong_key')
    // Nothing changed: still unverified, no identity, the published list is still version 1.
    expect(second.e2e.needsVerification).toBe(true)
    expect(second.e2e.identityKey).toBeNull()
    const list = (await alice.client.api.queryKeys([alice.e2e.userId])).device_lists[alice.e2e.userId]!
    expect(list.version).toBe(1)
    expect(second.warnings).toEqual([])

    expect(await second.e2e.restoreFromBackup({ passphrase: 'tr0ub4dor & 3' })).toEqual({
      imported: 1,
      rejected: 0,
    })
    await second.readHistory(dm)
    expect(bodies(second, dm)).toEqual(['before the new device'])
  }, 90_000)

  it('row 16: a server that swaps the backup metadata gets no upload', async () => {
    const { alice, bob, dm } = await aliceAndBob()
    const keys = fed!.get(ACME).services.repos.keys
    const me = alice.e2e.userId
    await alice.e2e.enableBackup()
    const honest = keys.backup(me)!
    // A new backup version (a new recovery key) replaces the first.
    await alice.e2e.enableBackup()
    const current = keys.backup(me)!
    expect(current.version).not.toBe(honest.version)

    // 1. The server puts back the earlier, genuinely signed metadata: its key_check is not our BK.
    keys.replaceBackup({ ...honest, updated_ts: Date.now() })
    await bob.e2e.send(dm, 'm.message', { body: 'a new session for alice' })
    await alice.waitFor(dm, 'a new session for alice')
    expect(await backupError(alice.e2e.flushBackup())).toBe('untrusted_backup')
    expect(keys.sessions(me)).toEqual([])

    // 2. Metadata of the current version with the server's own key, signed by another identity.
    const forger = e2e.generateIdentityKey()
    const serverBk = e2e.deriveBackupKeys(e2e.generateRecoveryKey()).bk
    const forged = e2e.signBackupMetadata(forger, me, current.version, serverBk)
    keys.replaceBackup({ ...current, metadata: canonicalJson({ ...forged }), updated_ts: Date.now() })
    await alice.e2e.send(dm, 'm.message', { body: 'and one of her own' })
    expect(await backupError(alice.e2e.flushBackup())).toBe('untrusted_backup')
    expect(keys.sessions(me)).toEqual([])
    expect(alice.warnings.length).toBeGreaterThan(0)
    expect(new Set(alice.warnings.map((w) => w.kind))).toEqual(new Set(['backup_untrusted']))

    // The real metadata back: the pending records go up.
    keys.replaceBackup({ ...current, updated_ts: Date.now() })
    await alice.e2e.flushBackup()
    expect(keys.sessions(me)).toHaveLength(2)
  }, 90_000)

  it('row 16: a session record the server injects fails the AEAD and is skipped on restore', async () => {
    const { alice, bob, dm } = await aliceAndBob()
    const keys = fed!.get(ACME).services.repos.keys
    const me = alice.e2e.userId
    const { recoveryKey } = await alice.e2e.enableBackup()
    await alice.e2e.send(dm, 'm.message', { body: 'the real one' })
    await bob.waitFor(dm, 'the real one')
    await alice.e2e.flushBackup()
    const version = keys.backup(me)!.version
    const [real] = keys.sessions(me)

    // The server makes up a session "from alice" under a key of its own, and moves a real record
    // under another session id; both go into alice's backup.
    const fake = e2e.OutboundGroupSession.create({
      roomId: dm,
      senderUser: me,
      senderDev: alice.e2e.deviceId,
      membershipEpoch: new Uint8Array(32),
    })
    const serverBk = e2e.deriveBackupKeys(e2e.generateRecoveryKey()).bk
    const injected = e2e.encryptBackupSession(serverBk, version, fake.exportRoomKey())
    const moved = {
      ...(JSON.parse(real!.record) as object),
      session_id: toBase64Url(e2e.generateIdentityKey().publicKey),
    }
    const now = Date.now()
    keys.putSession(
      me,
      { room_id: dm, session_id: injected.session_id, record: canonicalJson({ ...injected }) },
      now,
    )
    keys.putSession(me, { room_id: dm, session_id: moved.session_id, record: canonicalJson(moved) }, now)

    const second = await person(ACME, 'alice', { login: true })
    expect(await second.e2e.restoreFromBackup({ recoveryKey })).toEqual({ imported: 1, rejected: 2 })
    expect(second.warnings.map((w) => w.kind)).toEqual(['backup_record_rejected', 'backup_record_rejected'])
    await second.readHistory(dm)
    expect(bodies(second, dm)).toEqual(['the real one'])
    // A message in the injected session stays unreadable: its key was never imported.
    const realEvent = second.seen.get(dm)![0]!.event
    const forgedEvent = {
      ...realEvent,
      event_id: `${realEvent.event_id}x`,
      content: { ...fake.encrypt({ room_id: dm, type: 'm.message', content: { body: 'forged' } }) },
    }
    expect(second.e2e.decrypt(forgedEvent).status).toBe('waiting')
  }, 90_000)

  it("row 15: a room key of bob's session forwarded unrequested by alice's own second device is refused; the message stays waiting", async () => {
    const { alice, bob } = await aliceAndBob()
    const { recoveryKey } = await alice.e2e.enableBackup()
    const second = await person(ACME, 'alice', { login: true })
    const aliceSeesSibling = nextOwnDevices(alice)
    await second.e2e.restoreFromBackup({ recoveryKey })
    await aliceSeesSibling
    const me = alice.e2e.userId

    // A session that device A never got and device B did: bob opens a new room with alice, and the
    // envelope of its first session for A is lost on the way (servers may drop, E2E.md section 1;
    // here bob's client leaves it out of the one to-device send). A forward must be of a session
    // created by ANOTHER device: B sharing a session B created itself is ordinary key sharing (B is
    // its creator), so the forwarded session here is bob's.
    const room = await encryptedRoom(bob, [alice], 'group')
    await waitForRoom(second.client, room)
    const sendToDevice = bob.client.sendToDevice.bind(bob.client)
    let dropped = 0
    bob.client.sendToDevice = (eventType, messages) => {
      const forAlice = messages[me]
      if (eventType !== 'm.room_key' || !forAlice?.[alice.e2e.deviceId])
        return sendToDevice(eventType, messages)
      dropped++
      const rest = { ...forAlice }
      delete rest[alice.e2e.deviceId]
      return sendToDevice(eventType, { ...messages, [me]: rest })
    }
    await bob.e2e.send(room, 'm.message', { body: 'only B got the key' })
    bob.client.sendToDevice = sendToDevice
    expect(dropped).toBe(1)
    await second.waitFor(room, 'only B got the key')
    await alice.waitUntil(() => (alice.seen.get(room) ?? []).length === 1)
    const bobEvent = alice.seen.get(room)![0]!.event
    const sessionId = (bobEvent.content as { session_id: string }).session_id
    expect(bodies(alice, room)).toEqual(['waiting'])

    // Device B, unasked, seals bob's session key (as B holds it) to device A in a valid envelope of
    // its own: the envelope opens (B is in alice's signed list), but B is not the session's creator.
    const stored = JSON.parse((await second.store.getItem(`e2e:in:${sessionId}`))!) as unknown
    const roomKey = e2e.InboundGroupSession.fromState(stored).exportRoomKey()
    const bDevice = JSON.parse((await second.store.getItem('e2e:device'))!) as { dxk: { secret: string } }
    const keys = await second.client.api.queryKeys([me])
    const ownList = e2e.verifyDeviceList(keys.device_lists[me], {
      userId: me,
      uik: fromBase64Url(second.e2e.identityKey!)!,
    })
    const target = ownList.devices.find((d) => d.deviceId === alice.e2e.deviceId)!
    const envelope = e2e.sealEnvelope(
      e2e.encodeRoomKeyPayload(roomKey),
      {
        userId: me,
        deviceId: second.e2e.deviceId,
        dxk: e2e.dhKeyPair(fromBase64Url(bDevice.dxk.secret)!),
      },
      {
        userId: me,
        deviceId: target.deviceId,
        dxk: target.dxk,
        dsk: target.dsk,
        signedPrekey: keys.prekeys[me]![target.deviceId]!,
      },
    )
    const keysForA: string[] = []
    alice.e2e.on('room_key', ({ session_id }) => keysForA.push(session_id))
    const handled = new Promise<void>((resolve) =>
      alice.client.on('to_device', (m) => {
        if (m.sender_device === second.e2e.deviceId) resolve()
      }),
    )
    await second.client.sendToDevice('m.room_key', {
      [me]: { [target.deviceId]: envelope as unknown as Record<string, unknown> },
    })
    await handled

    expect(alice.warnings.map((w) => [w.kind, w.user_id])).toEqual([['room_key_rejected', me]])
    expect(alice.warnings[0]!.detail).toContain('creator')
    expect(keysForA).toEqual([])
    expect(alice.e2e.decrypt(bobEvent)).toEqual({ status: 'waiting', sessionId })
    expect(bodies(alice, room)).toEqual(['waiting'])

    // The control: B's envelopes do reach A. A session B created itself is B's to share, and A reads it.
    await second.e2e.send(room, 'm.message', { body: 'B shares its own session' })
    await alice.waitFor(room, 'B shares its own session')
    expect(bodies(alice, room)).toEqual(['waiting', 'B shares its own session'])
    expect(alice.warnings).toHaveLength(1)
    expect([...bob.warnings, ...second.warnings]).toEqual([])
  }, 90_000)
})

describe('passphrase KDF', () => {
  it('production code wraps the recovery key at the default parameters (opslimit 3, 128 MiB: within the 1.5 s of row 19)', async () => {
    const seen: e2e.PassphraseKdfParams[] = []
    // Records what the client asks for and answers at once: the parameters are what is tested here.
    const recording: PassphraseKdf = {
      derive: (_passphrase, params) => {
        seen.push(params)
        return Promise.resolve(new Uint8Array(32).fill(9))
      },
    }
    fed = await startFederation([ACME])
    const alice = await person(ACME, 'alice', { e2e: { passphraseKdf: recording } })
    await alice.e2e.enableBackup({ passphrase: 'a passphrase' })
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ algorithm: 'argon2id13', opslimit: 3, memlimit: 128 * 1024 * 1024 })
    expect(e2e.DEFAULT_PWHASH_OPSLIMIT).toBe(3)
    expect(e2e.DEFAULT_PWHASH_MEMLIMIT).toBe(128 * 1024 * 1024)
    const stored = fed.get(ACME).services.keys.getSecretStorage(alice.e2e.userId).secret_storage
    expect(stored.passphrase?.kdf).toEqual(seen[0])
  }, 60_000)

  it('a passphrase without a PassphraseKdf is refused before anything is created', async () => {
    fed = await startFederation([ACME])
    const alice = await person(ACME, 'alice')
    expect(await backupError(alice.e2e.enableBackup({ passphrase: 'x' }))).toBe('no_passphrase')
    expect(fed.get(ACME).services.repos.keys.backup(alice.e2e.userId)).toBeUndefined()
  }, 60_000)
})

describe('secret storage on the homeserver', () => {
  let s: TestServer
  let alice: TestUser
  let bob: TestUser
  beforeAll(async () => {
    s = await startTestServer()
    alice = await register(s)
    bob = await register(s)
  })
  afterAll(() => s.stop())

  const b64 = (n: number, fill = 1) => Buffer.alloc(n, fill).toString('base64url')
  const item = (name: string, bytes = 48) => ({ name, nonce: b64(24), ciphertext: b64(bytes) })
  const storage = (items = [item('uik'), item('bk')]) => ({
    suite: 'e2e/v1',
    version: 'v1',
    passphrase: null,
    items,
  })
  const put = (user: TestUser, body: unknown) =>
    http(s, 'PUT', '/api/v1/keys/secret-storage', body, user.access_token)
  const get = (user: TestUser) => http(s, 'GET', '/api/v1/keys/secret-storage', undefined, user.access_token)

  it('keeps the owner’s document, replaces it on the next put, and shows it to nobody else', async () => {
    expect((await get(alice)).status).toBe(404)
    expect((await put(alice, { secret_storage: storage() })).status).toBe(200)
    expect((await get(alice)).body).toEqual({ secret_storage: storage() })
    const next = storage([item('uik', 64)])
    expect((await put(alice, { secret_storage: next })).status).toBe(200)
    expect((await get(alice)).body).toEqual({ secret_storage: next })
    // Bob reads and writes only his own slot.
    expect((await get(bob)).status).toBe(404)
    expect((await put(bob, { secret_storage: storage() })).status).toBe(200)
    expect((await get(alice)).body).toEqual({ secret_storage: next })
    expect((await http(s, 'GET', '/api/v1/keys/secret-storage')).status).toBe(401)
  })

  it('refuses oversized, overfull and malformed documents with 400', async () => {
    const tooMany = storage(Array.from({ length: 17 }, (_, i) => item(`s${i}`)))
    const tooBig = storage([item('uik', 1025)])
    const badName = storage([item('UIK/../x')])
    const noItems = storage([])
    const extra = { ...storage(), note: 'x' }
    for (const body of [tooMany, tooBig, badName, noItems, extra]) {
      const res = await put(alice, { secret_storage: body })
      expect(res.status).toBe(400)
      expect(res.body).toMatchObject({ errcode: expect.any(String), error: expect.any(String) })
    }
  })
})
