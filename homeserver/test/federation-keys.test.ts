/**
 * FED-6 at the replication level: a member server rotates its key mid-conversation (`rotate-key`,
 * then a restart). Events it originated before still verify everywhere with the old key, new ones
 * with the new key, and a third server replicating the room accepts both; the conversation goes on.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, createRoom, fullHistory, http, register, roomPath, tempDir, waitUntil } from './helpers.ts'
import { startFederation, visibleHead, type Federation } from './support/federation.ts'

const run = promisify(execFile)
const BIN = fileURLToPath(new URL('../bin/parley-homeserver.mjs', import.meta.url))
const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
const INITECH = 'initech.localhost'

let fed: Federation | null = null
afterEach(async () => {
  await fed?.close()
  fed = null
})

describe('FED-6: key rotation during a conversation', () => {
  it('events signed before and after the rotation verify on the owner and on a third replica', async () => {
    fed = await startFederation([ACME, GLOBEX, INITECH], () => ({ federation: { keyRefetchMs: 0 } }))
    const alice = await register(fed.get(ACME), 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    const carol = await register(fed.get(INITECH), 'carol')
    const room = await createRoom(fed.get(ACME), alice, {
      kind: 'group',
      invite: [bob.user_id, carol.user_id],
    })
    for (const [name, user] of [
      [GLOBEX, bob],
      [INITECH, carol],
    ] as const) {
      await waitUntil(() => fed!.get(name).services.repos.rooms.get(room) !== undefined, 10_000)
      expect(
        (await http(fed.get(name), 'POST', roomPath(room, '/join'), undefined, user.access_token)).status,
      ).toBe(200)
    }
    const say = async (body: string) => {
      const sock = await connect(fed!.get(GLOBEX), bob)
      sock.send({
        type: 'send',
        txn_id: body.replace(' ', '-'),
        room,
        event_type: 'm.message',
        content: { body },
      })
      const sent = await sock.next((f) => f.type === 'sent' && f.txn_id === body.replace(' ', '-'), 15_000)
      sock.close()
      return sent.seq as number
    }
    await say('before rotation')
    const oldKid = fed.get(GLOBEX).services.signer.kid

    const dataDir = fed.get(GLOBEX).dataDir
    await fed.stop(GLOBEX)
    const out = await run(process.execPath, [
      BIN,
      'rotate-key',
      '--data-dir',
      dataDir,
      '--server-name',
      GLOBEX,
    ])
    expect(out.stdout).toContain('rotated')
    await fed.start(GLOBEX)
    expect(fed.get(GLOBEX).services.signer.kid).not.toBe(oldKid)

    const seq = await say('after rotation')
    const heads = () => [ACME, GLOBEX, INITECH].map((n) => visibleHead(fed!.get(n), room))
    await waitUntil(() => heads().every((h) => h === seq), 15_000)
    const owner = await fullHistory(fed.get(ACME), alice.access_token, room)
    const third = await fullHistory(fed.get(INITECH), carol.access_token, room)
    expect(third.map((e) => e.event_id)).toEqual(owner.map((e) => e.event_id))
    expect(owner.filter((e) => e.type === 'm.message').map((e) => e.content.body)).toEqual([
      'before rotation',
      'after rotation',
    ])
    // The two messages carry origin signatures by different keys of globex.
    const kids = owner
      .filter((e) => e.type === 'm.message')
      .map((e) => fed!.get(INITECH).services.repos.events.get(e.event_id)!.origin_kid)
    expect(kids[0]).toBe(oldKid)
    expect(kids[1]).toBe(fed.get(GLOBEX).services.signer.kid)
    for (const faults of [ACME, INITECH].map((n) => fed!.get(n).services.replication.stats.faults))
      expect([...faults.keys()]).toEqual([])
  }, 60_000)

  it('a peer whose key changes without a signature by its old key is quarantined: no link, its sends wait', async () => {
    fed = await startFederation([ACME, GLOBEX], () => ({ federation: { keyRefetchMs: 0 } }))
    const alice = await register(fed.get(ACME), 'alice')
    const bob = await register(fed.get(GLOBEX), 'bob')
    const room = await createRoom(fed.get(ACME), alice, { kind: 'dm', invite: [bob.user_id] })
    await waitUntil(() => fed!.get(GLOBEX).services.repos.rooms.get(room) !== undefined, 10_000)

    // Same name and address, a new identity (a reinstall without its keys, or an impostor).
    await fed.stop(GLOBEX)
    const impostor = await fed.start(GLOBEX, { dataDir: await tempDir() })
    const err = await impostor.services.links.ensureLink(ACME).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    await waitUntil(() => fed!.get(ACME).services.peerKeys.peer(GLOBEX)?.state === 'quarantined', 10_000)
    expect(fed.get(ACME).services.links.linkTo(GLOBEX)).toBeNull()
    // Nothing of the room reached the impostor.
    expect(impostor.services.repos.rooms.get(room)).toBeUndefined()
  }, 30_000)
})
