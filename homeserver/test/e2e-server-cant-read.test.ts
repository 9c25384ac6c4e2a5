/**
 * "Server can't read" (E2E.md section 3 row 10, TESTPLAN E2E-1): a full federated session of the real
 * client library, alice@acme and bob@globex, an encrypted DM, an encrypted group and an encrypted
 * attachment fetched over federation. Every byte on the federation link between the two servers and
 * on both client links passes a capturing TCP proxy. Afterwards nothing the users said, no attachment
 * byte, no attachment key and no secret key of either client store is found (plain, base64 or
 * base64url, at any alignment) in either server's data directory (database, WAL, media files, file
 * names), in their logs, or in any captured byte.
 */
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { e2e } from '@parley/protocol/crypto'
import { memoryLogger } from './helpers.ts'
import { ChaosProxy } from './support/chaos-proxy.ts'
import { dataBytes, findCanaries } from './support/e2e.ts'
import { e2ePerson, encryptedRoom, storedSecrets, type Person } from './support/e2e-person.ts'
import { startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

let fed: Federation | null = null
const proxies: ChaosProxy[] = []
const people: Person[] = []
afterEach(async () => {
  for (const p of people.splice(0)) p.client.close()
  await fed?.close()
  fed = null
  for (const proxy of proxies.splice(0)) await proxy.close()
})

async function capturing(target: string | (() => string)): Promise<ChaosProxy> {
  const proxy = await ChaosProxy.start(target, { capture: true })
  proxies.push(proxy)
  return proxy
}

/** The attachment event's content, as the sender puts it inside the encrypted message. */
interface FileContent {
  body: string
  file: {
    server: string
    media_id: string
    upload_id: string
    name: string
    mime: string
  } & e2e.AttachmentInfo
}

describe('the servers cannot read an encrypted federated session', () => {
  it('no message, attachment byte, attachment key or client secret on disk, in logs or on any wire', async () => {
    const logs: Record<string, ReturnType<typeof memoryLogger>> = {
      [ACME]: memoryLogger(),
      [GLOBEX]: memoryLogger(),
    }
    // One capturing proxy in front of each server for the other's federation traffic: each server's
    // peer map points at the proxy, so links and key fetches both ways pass it.
    const own: Record<string, string> = {}
    const federationLink = {
      [ACME]: await capturing(() => own[ACME]!),
      [GLOBEX]: await capturing(() => own[GLOBEX]!),
    }
    fed = await startFederation(
      [ACME, GLOBEX],
      (name, urls) => {
        Object.assign(own, urls)
        const other = name === ACME ? GLOBEX : ACME
        return { peers: { [other]: federationLink[other].url } }
      },
      (name) => ({ logger: logs[name]!.logger }),
    )
    const aliceLink = await capturing(fed.urls[ACME]!)
    const bobLink = await capturing(fed.urls[GLOBEX]!)
    const alice = await e2ePerson(aliceLink.url, 'alice')
    const bob = await e2ePerson(bobLink.url, 'bob')
    people.push(alice, bob)

    const dmText = 'canary-dm-5a1c alice to bob'
    const replyText = 'canary-dm-e83b bob to alice'
    const groupText = 'canary-group-91fd to the group'
    const fileName = 'canary-file-name-0d4e.pdf'
    const dm = await encryptedRoom(alice, [bob], 'dm')
    await alice.e2e.send(dm, 'm.message', { body: dmText })
    await bob.waitFor(dm, dmText)
    await bob.e2e.send(dm, 'm.message', { body: replyText })
    await alice.waitFor(dm, replyText)

    const group = await encryptedRoom(alice, [bob], 'group')
    await alice.e2e.send(group, 'm.message', { body: groupText })
    await bob.waitFor(group, groupText)

    // An attachment of two chunks: encrypted on the device, the ciphertext uploaded under a neutral
    // name, its key, name and type only inside the encrypted message.
    const plain = Buffer.concat([
      Buffer.from('canary-attachment-bytes-6c2e '.repeat(2500)),
      randomBytes(30_000),
    ])
    const uploadId = randomBytes(16).toString('base64url')
    const sealed = e2e.encryptAttachment(plain, { roomId: group, uploadId })
    const uploaded = await alice.client.api.uploadMedia(
      group,
      sealed.ciphertext,
      'application/octet-stream',
      'blob',
    )
    const { ciphertext: _ciphertext, ...info } = sealed
    const content: FileContent = {
      body: 'a file',
      file: {
        server: ACME,
        media_id: uploaded.media_id,
        upload_id: uploadId,
        name: fileName,
        mime: 'application/pdf',
        ...info,
      },
    }
    await alice.e2e.send(group, 'm.file', content as never)
    await bob.waitUntil(() =>
      (bob.seen.get(group) ?? []).some((x) => x.result.status === 'decrypted' && x.result.type === 'm.file'),
    )
    const received = bob.seen
      .get(group)!
      .map((x) => x.result)
      .find((r) => r.status === 'decrypted' && r.type === 'm.file')
    const file = (received as unknown as { content: FileContent }).content.file
    const download = await bob.client.api.downloadRemoteMedia(file.server, file.media_id)
    expect(
      Buffer.from(e2e.decryptAttachment(download.bytes, file, { roomId: group, uploadId: file.upload_id })),
    ).toEqual(plain)
    expect([...alice.warnings, ...bob.warnings]).toEqual([])

    const secrets: Record<string, string | Uint8Array> = {
      dmText,
      replyText,
      groupText,
      fileName,
      'attachment, first bytes': plain.subarray(0, 64),
      'attachment, second chunk': plain.subarray(70_000, 70_064),
      'attachment key': Buffer.from(sealed.key, 'base64url'),
    }
    for (const [who, p] of [
      ['alice', alice],
      ['bob', bob],
    ] as const)
      storedSecrets(p.store).forEach(
        (s, i) => (secrets[`${who} stored secret ${i}`] = Buffer.from(s, 'base64url')),
      )
    // The search itself works: it finds a canary on bob's screen and inside a longer base64url
    // string, and bob's secrets in his own store.
    expect(Object.keys(secrets).length).toBeGreaterThan(7 + 2 * 5)
    const screen = JSON.stringify(bob.seen.get(group)!.map((x) => x.result))
    const wrapped = Buffer.from(`xy${groupText}z`).toString('base64url')
    expect(findCanaries({ screen, wrapped }, { groupText })).toEqual([
      'screen: groupText',
      'wrapped: groupText',
    ])
    const bobStore = [...bob.store.items().values()].join()
    const bobSecrets = Object.entries(secrets).filter(([name]) => name.startsWith('bob stored'))
    expect(findCanaries({ bobStore }, Object.fromEntries(bobSecrets))).toHaveLength(bobSecrets.length)

    const haystacks: Record<string, Buffer | string> = {
      'acme disk': await dataBytes(fed.get(ACME).dataDir),
      'globex disk': await dataBytes(fed.get(GLOBEX).dataDir),
      'acme log': logs[ACME]!.text(),
      'globex log': logs[GLOBEX]!.text(),
      'federation link to acme': federationLink[ACME].captured(),
      'federation link to globex': federationLink[GLOBEX].captured(),
      'alice link': aliceLink.captured(),
      'bob link': bobLink.captured(),
    }
    // Everything went through the proxies, and the media reached globex's disk (fetched over federation).
    for (const where of Object.keys(haystacks)) expect(haystacks[where]!.length, where).toBeGreaterThan(0)
    expect(
      (haystacks['globex disk'] as Buffer).includes(Buffer.from(sealed.ciphertext.subarray(0, 64))),
    ).toBe(true)
    expect(findCanaries(haystacks, secrets)).toEqual([])
  }, 60_000)
})
