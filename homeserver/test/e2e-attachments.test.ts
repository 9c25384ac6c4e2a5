/**
 * An encrypted attachment across two real federated homeservers (E2E.md section 2.5; the attachment
 * part of section 3 row 10), as the desktop app sends one: alice@acme encrypts the file with the
 * crypto core, uploads only the ciphertext under a neutral name and type, and sends the real name,
 * type, size and key in an `m.encrypted` message; bob@globex downloads through globex (sha256
 * checked), decrypts for the room and gets the file back. Neither server stores or logs the file's
 * bytes, name, type or key, and both keep the upload as opaque `application/octet-stream`.
 */
import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { ENCRYPTED_UPLOAD, encryptFile, type ParleyClient } from '@parley/protocol/client'
import { e2e } from '@parley/protocol/crypto'
import { Attachment, type Attachment as AttachmentType } from '@parley/protocol/schema'
import { memoryLogger, type TestServer } from './helpers.ts'
import { dataBytes } from './support/e2e.ts'
import { e2ePerson, waitForRoom } from './support/e2e-person.ts'
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

/** What a server keeps about its media: the stored type and name of every upload and copy. */
function storedMedia(s: TestServer): unknown[] {
  const db = s.services.repos.db
  return [
    ...db.prepare('SELECT content_type, filename FROM media').all(),
    ...db.prepare('SELECT content_type, filename FROM remote_media').all(),
  ]
}

describe('end-to-end encrypted attachments across two servers', () => {
  it('the servers store, relay and serve only opaque ciphertext; the member decrypts the file for the room', async () => {
    const logs: Record<string, ReturnType<typeof memoryLogger>> = {
      [ACME]: memoryLogger(),
      [GLOBEX]: memoryLogger(),
    }
    fed = await startFederation([ACME, GLOBEX], undefined, (name) => ({ logger: logs[name]!.logger }))
    const alice = await e2ePerson(fed.urls[ACME]!, 'alice')
    const bob = await e2ePerson(fed.urls[GLOBEX]!, 'bob')
    clients.push(alice.client, bob.client)
    const dm = await alice.e2e.createRoom({ kind: 'dm', invite: [`@bob:${GLOBEX}`], encrypted: true })
    await waitForRoom(bob.client, dm)
    await bob.e2e.join(dm)

    // A PNG (signature first) with a canary inside, over two 64 KiB chunks.
    const canary = 'canary-attachment-51c9 secret plans'
    const name = 'canary-name-a2e7.png'
    const plaintext = Buffer.concat([
      Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
      Buffer.from(canary),
      randomBytes(100_000),
    ])
    const sealed = await encryptFile(plaintext, dm)
    const uploadId = sealed.encryption.upload_id
    const up = await alice.client.api.uploadMedia(
      dm,
      sealed.ciphertext,
      ENCRYPTED_UPLOAD.mime,
      ENCRYPTED_UPLOAD.name,
    )
    expect(up).toMatchObject({ size: sealed.ciphertext.length, content_type: 'application/octet-stream' })
    const attachment: AttachmentType = Attachment.parse({
      media_id: up.media_id,
      name,
      mime: 'image/png',
      size: plaintext.length,
      sha256: up.sha256,
      encryption: sealed.encryption,
    })
    await alice.e2e.send(dm, 'm.message', { body: 'canary-caption-0d4b', attachment })

    await bob.waitFor(dm, 'canary-caption-0d4b')
    const received = bob.seen.get(dm)!.at(-1)!
    if (received.result.status !== 'decrypted') throw new Error(`not decrypted: ${received.result.status}`)
    const got = Attachment.parse(received.result.content.attachment)
    expect(got).toEqual(attachment)

    const download = await bob.client.api.downloadAttachment(got, received.event.sender)
    expect(download).toMatchObject({ contentType: 'application/octet-stream', filename: 'encrypted.bin' })
    const info = { ...got.encryption!, size: got.size }
    const decrypted = e2e.decryptAttachment(download.bytes, info, {
      roomId: dm,
      uploadId: got.encryption!.upload_id,
    })
    expect(Buffer.from(decrypted).equals(plaintext)).toBe(true)
    // Bound to its room: the same file announced in another room does not decrypt.
    expect(() =>
      e2e.decryptAttachment(download.bytes, info, { roomId: '!other:acme.localhost', uploadId }),
    ).toThrow(e2e.E2eError)

    // Both servers hold the upload (acme) and its copy (globex) as opaque bytes under the neutral name.
    expect(storedMedia(fed.get(ACME))).toEqual([
      { content_type: 'application/octet-stream', filename: 'encrypted.bin' },
    ])
    expect(storedMedia(fed.get(GLOBEX))).toEqual([
      { content_type: 'application/octet-stream', filename: 'encrypted.bin' },
    ])
    // Nothing of the file, its name, type or key is in either server's files or logs.
    const secrets = [canary, name, 'canary-caption-0d4b', sealed.encryption.key, 'image/png']
    for (const server of [ACME, GLOBEX]) {
      const files = (await dataBytes(fed.get(server).dataDir)).toString('latin1')
      const log = logs[server]!.text()
      for (const secret of secrets) {
        expect(files.includes(secret), `${secret} in ${server}'s files`).toBe(false)
        expect(log.includes(secret), `${secret} in ${server}'s log`).toBe(false)
      }
      // Nor the plaintext bytes themselves (a slice past the canary, from the random part).
      expect(Buffer.from(files, 'latin1').includes(plaintext.subarray(1000, 1064))).toBe(false)
    }
  }, 60_000)
})
