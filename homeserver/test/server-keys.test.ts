/**
 * Server keys and discovery (DESIGN.md section 6, TESTPLAN.md FED-6): the well-known document, key
 * files, `rotate-key`, and one homeserver pinning another's keys over HTTP, with the `peers` CLI.
 */
import { execFile } from 'node:child_process'
import { readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  fromBase64Url,
  keyDocumentSigningBytes,
  toBase64Url,
  utf8,
  verifyKeyDocument,
  type KeyDocument,
} from '@parley/protocol'
import { generateSeed, signerFromSeed, verifySignature } from '@parley/protocol/signing'
import { ManualClock } from '../src/clock.ts'
import type { PeerInfo } from '../src/federation/peer-keys.ts'
import { http, rawRequest, startTestServer, tempDir, type TestServer } from './helpers.ts'

const run = promisify(execFile)
const BIN = fileURLToPath(new URL('../bin/parley-homeserver.mjs', import.meta.url))
const cli = (dataDir: string, serverName: string, ...args: string[]) =>
  run(process.execPath, [BIN, ...args, '--data-dir', dataDir, '--server-name', serverName])

const ACME = 'acme.localhost'
const BETA = 'beta.localhost'

const servers: TestServer[] = []
const dirs: string[] = []
afterAll(async () => {
  for (const s of servers) await s.close()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

/** A server whose data directory outlives it (restarts, CLI runs); everything is cleaned up at the end. */
async function serve(...args: Parameters<typeof startTestServer>): Promise<TestServer> {
  const server = await startTestServer(...args)
  servers.push(server)
  if (!dirs.includes(server.dataDir)) dirs.push(server.dataDir)
  return server
}

async function documentOf(server: TestServer): Promise<KeyDocument> {
  const res = await http<KeyDocument>(server, 'GET', '/.well-known/parley/server')
  expect(res.status).toBe(200)
  return res.body
}

const verifyDoc = (doc: unknown, serverName = ACME) =>
  verifyKeyDocument(doc, { serverName, now: Date.now(), verify: verifySignature })

const modeOf = async (path: string) => (await stat(path)).mode & 0o777

describe('GET /.well-known/parley/server', () => {
  let hs: TestServer
  beforeAll(async () => {
    hs = await serve()
  })

  it('serves a self-signed document that verifies, signed by the current key only', async () => {
    const doc = await documentOf(hs)
    const verified = verifyDoc(doc)
    expect(verified).toMatchObject({ ok: true, value: { signedBy: [hs.services.signer.kid] } })
    expect(doc.verify_keys).toEqual({ [hs.services.signer.kid]: toBase64Url(hs.services.signer.publicKey) })
    expect(doc.old_verify_keys).toEqual({})
    expect(doc.link).toBe(`ws://127.0.0.1:${hs.port}/api/v1/federation`)
    expect(doc.valid_until_ts).toBeGreaterThan(Date.now() + 23 * 3600_000)
  })

  it('refuses the same document once tampered with', async () => {
    const doc = await documentOf(hs)
    expect(verifyDoc({ ...doc, link: 'ws://evil.example/api/v1/federation' })).toMatchObject({
      ok: false,
      error: { code: 'bad_signature' },
    })
    expect(verifyDoc(doc, BETA)).toMatchObject({ ok: false, error: { code: 'wrong_server' } })
  })

  it('keeps private keys in keys/ (0700) as files readable by the owner only (0600)', async () => {
    expect(await modeOf(join(hs.dataDir, 'keys'))).toBe(0o700)
    const files = await readdir(join(hs.dataDir, 'keys'))
    expect(files).toEqual([`${hs.services.signer.kid.replace(':', '_')}.json`])
    expect(await modeOf(join(hs.dataDir, 'keys', files[0]!))).toBe(0o600)
    expect(await readdir(hs.dataDir)).not.toContain('server-key.json')
  })

  it('never takes the link from the Host header', async () => {
    const res = await rawRequest(hs, 'GET', '/.well-known/parley/server', { host: 'evil.example' })
    expect((JSON.parse(res.body.toString()) as KeyDocument).link).toBe(
      `ws://127.0.0.1:${hs.port}/api/v1/federation`,
    )
  })

  it('derives the link from federation.publicUrl when set', async () => {
    const pub = await serve({ federation: { publicUrl: 'https://chat.acme.example/' } })
    const doc = await documentOf(pub)
    expect(doc.link).toBe('wss://chat.acme.example/api/v1/federation')
    expect(verifyDoc(doc).ok).toBe(true)
  })

  it('moves a legacy server-key.json into keys/ and keeps serving its key', async () => {
    const dataDir = await tempDir()
    dirs.push(dataDir)
    const seed = generateSeed()
    const legacy = signerFromSeed('ed25519:legacy1', seed)
    await writeFile(
      join(dataDir, 'server-key.json'),
      JSON.stringify({ kid: legacy.kid, seed: toBase64Url(seed) }),
      {
        mode: 0o644,
      },
    )
    const first = await serve({ dataDir })
    expect((await documentOf(first)).verify_keys).toEqual({ [legacy.kid]: toBase64Url(legacy.publicKey) })
    expect(await readdir(dataDir)).not.toContain('server-key.json')
    expect(await modeOf(join(dataDir, 'keys', 'ed25519_legacy1.json'))).toBe(0o600)
    await first.close()
    const again = await serve({ dataDir })
    expect(again.services.signer.kid).toBe(legacy.kid)
  })
})

describe('start-up with damaged keys', () => {
  it('refuses to start without the private key of the current key, naming the file', async () => {
    const hs = await serve()
    const kid = hs.services.signer.kid
    await hs.close()
    await rm(join(hs.dataDir, 'keys', `${kid.replace(':', '_')}.json`))
    await expect(startTestServer({ dataDir: hs.dataDir })).rejects.toThrow(
      `the private key of ${kid} is missing`,
    )
  })

  it('refuses to start when a key file does not match the public key on record', async () => {
    const hs = await serve()
    const kid = hs.services.signer.kid
    await hs.close()
    const path = join(hs.dataDir, 'keys', `${kid.replace(':', '_')}.json`)
    await rm(path)
    await writeFile(path, JSON.stringify({ kid, seed: toBase64Url(generateSeed()), created_ts: 1 }), {
      mode: 0o600,
    })
    await expect(startTestServer({ dataDir: hs.dataDir })).rejects.toThrow('does not match the public key')
  })
})

describe('parley-homeserver rotate-key', () => {
  let dataDir: string
  let first: KeyDocument
  let second: KeyDocument
  const kidsOf = (doc: KeyDocument) => Object.keys(doc.verify_keys)

  beforeAll(async () => {
    const hs = await serve()
    dataDir = hs.dataDir
    first = await documentOf(hs)
    await hs.close()
  })

  it('retires the old key into old_verify_keys and signs the new document with both keys', async () => {
    const [oldKid] = kidsOf(first)
    const before = Date.now()
    const out = await cli(dataDir, ACME, 'rotate-key')
    const after = Date.now()
    expect(out.stdout).toContain('rotated')
    const hs = await serve({ dataDir })
    second = await documentOf(hs)
    const [newKid] = kidsOf(second)
    expect(newKid).not.toBe(oldKid)
    expect(hs.services.signer.kid).toBe(newKid)
    expect(second.old_verify_keys).toEqual({
      [oldKid!]: { key: first.verify_keys[oldKid!], expired_ts: expect.any(Number) },
    })
    const expiredTs = second.old_verify_keys[oldKid!]!.expired_ts
    expect(expiredTs).toBeGreaterThanOrEqual(before)
    expect(expiredTs).toBeLessThanOrEqual(after)

    expect(verifyDoc(second)).toMatchObject({ ok: true, value: { signedBy: [newKid, oldKid].sort() } })
    // Each signature on its own, with the key a peer pinned before.
    const message = keyDocumentSigningBytes(second)
    const sigs = second.signatures[ACME]!
    expect(Object.keys(sigs).sort()).toEqual([newKid, oldKid].sort())
    expect(
      verifySignature(fromBase64Url(first.verify_keys[oldKid!]!)!, message, fromBase64Url(sigs[oldKid!]!)!),
    ).toBe(true)
    expect(verifySignature(hs.services.signer.publicKey, message, fromBase64Url(sigs[newKid!]!)!)).toBe(true)

    // The old key still verifies what it signed before its expiry, not after.
    expect(hs.services.serverKeys.keyFor(oldKid!, expiredTs - 1)).not.toBeNull()
    expect(hs.services.serverKeys.keyFor(oldKid!, expiredTs)).toBeNull()
    const files = await readdir(join(dataDir, 'keys'))
    expect(files).toHaveLength(2)
    for (const f of files) expect(await modeOf(join(dataDir, 'keys', f))).toBe(0o600)
    await hs.close()
  })

  it('after a second rotation keeps both old keys, co-signed by the key it replaced only', async () => {
    await cli(dataDir, ACME, 'rotate-key')
    const hs = await serve({ dataDir })
    const third = await documentOf(hs)
    const [firstKid] = kidsOf(first)
    const [secondKid] = kidsOf(second)
    const [thirdKid] = kidsOf(third)
    expect(Object.keys(third.old_verify_keys).sort()).toEqual([firstKid, secondKid].sort())
    expect(third.old_verify_keys[firstKid!]).toEqual(second.old_verify_keys[firstKid!])
    expect(verifyDoc(third)).toMatchObject({ ok: true, value: { signedBy: [secondKid, thirdKid].sort() } })
    await hs.close()
  })
})

describe('peer keys between two homeservers over HTTP', () => {
  const clock = new ManualClock()
  let a: TestServer
  let b: TestServer
  let bDir: string
  let bPort: number
  let firstKid: string
  let impostorKid: string
  const peersOfA = async () =>
    JSON.parse((await cli(a.dataDir, ACME, 'peers', '--json')).stdout) as PeerInfo[]

  beforeAll(async () => {
    b = await serve({ serverName: BETA })
    bDir = b.dataDir
    bPort = b.port
    a = await serve({ peers: { [BETA]: b.url } }, { clock })
  })

  it("pins the peer's keys on first use", async () => {
    firstKid = b.services.signer.kid
    const key = await a.services.peerKeys.keyFor(BETA, firstKid, clock.now())
    expect(key).toMatchObject({ ok: true })
    expect(key.ok && toBase64Url(key.value)).toBe(toBase64Url(b.services.signer.publicKey))
    const peers = await peersOfA()
    expect(peers).toMatchObject([
      { serverName: BETA, state: 'trusted', reason: null, keys: [{ kid: firstKid, expiredTs: null }] },
    ])
  })

  it('accepts a rotation co-signed by the old key, with one rate-limited fetch; old signatures still verify (FED-6)', async () => {
    const signedAt = clock.now()
    const signature = b.services.signer.sign(utf8('an event signed before the rotation'))
    await b.close()
    await cli(bDir, BETA, 'rotate-key')
    b = await serve({ serverName: BETA, dataDir: bDir, port: bPort })
    const newKid = b.services.signer.kid

    // Fetched less than a minute ago: the unknown key id does not trigger another fetch yet.
    expect(await a.services.peerKeys.keyFor(BETA, newKid, clock.now())).toMatchObject({
      ok: false,
      error: { code: 'rate_limited' },
    })
    clock.advance(60_000)
    const key = await a.services.peerKeys.keyFor(BETA, newKid, clock.now())
    expect(key.ok && toBase64Url(key.value)).toBe(toBase64Url(b.services.signer.publicKey))
    expect(a.services.peerKeys.peer(BETA)!.state).toBe('trusted')

    const old = await a.services.peerKeys.keyFor(BETA, firstKid, signedAt)
    expect(old.ok && verifySignature(old.value, utf8('an event signed before the rotation'), signature)).toBe(
      true,
    )
    const expiredTs = a.services.peerKeys.peer(BETA)!.keys.find((k) => k.kid === firstKid)!.expiredTs!
    expect(await a.services.peerKeys.keyFor(BETA, firstKid, expiredTs)).toMatchObject({
      ok: false,
      error: { code: 'expired_key' },
    })
  })

  it('quarantines the peer when its key changes without a signature by the pinned key; `peers` shows it', async () => {
    await b.close()
    // Same name, same address, new identity: a reinstall without its keys, or an impostor.
    b = await serve({ serverName: BETA, port: bPort })
    impostorKid = b.services.signer.kid
    clock.advance(60_000)
    expect(await a.services.peerKeys.keyFor(BETA, impostorKid, clock.now())).toMatchObject({
      ok: false,
      error: { code: 'quarantined' },
    })
    // Lookups of keys pinned before fail too, until an admin acts.
    expect(await a.services.peerKeys.keyFor(BETA, firstKid, 0)).toMatchObject({
      ok: false,
      error: { code: 'quarantined' },
    })
    const listing = (await cli(a.dataDir, ACME, 'peers')).stdout
    expect(listing).toContain(`${BETA}  quarantined`)
    expect(listing).toMatch(
      new RegExp(`reason: new current key ${impostorKid} is not signed by a key we hold as current`),
    )
  })

  it('`peers trust` pins the current document and clears the quarantine for the running server', async () => {
    const out = await cli(a.dataDir, ACME, 'peers', 'trust', BETA, '--peer', `${BETA}=${b.url}`)
    expect(out.stdout).toContain(`trusted ${BETA}`)
    const key = await a.services.peerKeys.keyFor(BETA, impostorKid, clock.now())
    expect(key.ok && toBase64Url(key.value)).toBe(toBase64Url(b.services.signer.publicKey))
    const [peer] = await peersOfA()
    expect(peer).toMatchObject({ state: 'trusted', reason: null })
    expect(peer!.keys.filter((k) => k.expiredTs === null).map((k) => k.kid)).toEqual([impostorKid])
  })

  it('`peers forget` drops the peer and its keys', async () => {
    expect((await cli(a.dataDir, ACME, 'peers', 'forget', BETA)).stdout).toContain(`forgot ${BETA}`)
    expect((await cli(a.dataDir, ACME, 'peers')).stdout.trim()).toBe('no peers')
    await expect(cli(a.dataDir, ACME, 'peers', 'forget', BETA)).rejects.toMatchObject({
      stderr: expect.stringContaining(`no peer ${BETA}`),
    })
  })

  it('refuses a peer whose document is not signed by the key pinned in federation.pinnedKeys', async () => {
    const wrong = toBase64Url(signerFromSeed('ed25519:x', generateSeed()).publicKey)
    const strict = await serve(
      {
        serverName: 'gamma.localhost',
        peers: { [BETA]: b.url },
        federation: { pinnedKeys: { [BETA]: [wrong] } },
      },
      { clock },
    )
    expect(await strict.services.peerKeys.keyFor(BETA, impostorKid, clock.now())).toMatchObject({
      ok: false,
      error: { code: 'pin_mismatch' },
    })
    expect(strict.services.peerKeys.list()).toEqual([])

    const right = toBase64Url(b.services.signer.publicKey)
    const pinned = await serve(
      {
        serverName: 'delta.localhost',
        peers: { [BETA]: b.url },
        federation: { pinnedKeys: { [BETA]: [right] } },
      },
      { clock },
    )
    expect(await pinned.services.peerKeys.keyFor(BETA, impostorKid, clock.now())).toMatchObject({ ok: true })
  })
})
