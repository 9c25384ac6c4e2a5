/**
 * End-to-end encryption in the web client (issue 5, "Done means"), in real Chromium against two
 * federated homeservers that serve it:
 * - two users of two servers chat in an encrypted DM (encrypted by default) and an encrypted group
 *   (opted in, irreversible): lock shown, messages, a reaction and the room-list preview decrypted on
 *   the other side; both see the same safety number and a QR code, and one marks the other verified;
 * - the renderer ran the primitives' known-answer self-test (E2E.md section 3 row 1) before making keys;
 * - "server can't read": every canary is absent from both servers' files (database, WAL, media, file
 *   names) and logs;
 * - row 13 in the UI: the verified contact's identity key is swapped (the server hands out a new one):
 *   sending is held with a blocking dialog, nothing is sent, and accepting the new key lets it go;
 * - row 12 in the UI: the room owner's server writes an unsigned join of a third user into its log:
 *   the app shows "the server tried to add" that user, who gets no room key, and the member still reads.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemoryStore, ParleyClient } from '@parley/protocol/client'
import type { e2e } from '@parley/protocol/crypto'
import WebSocket from 'ws'
import { memoryLogger } from '../../homeserver/test/helpers.ts'
import { dataBytes, Identity, inject } from '../../homeserver/test/support/e2e.ts'
import type { Federation } from '../../homeserver/test/support/federation.ts'
import { say, signUp, startWebSuite, type WebSuite } from './support/browser.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

let suite: WebSuite
let fed: Federation
let problems: string[]
let open: WebSuite['open']
let expectText: WebSuite['expectText']
const logs: Record<string, ReturnType<typeof memoryLogger>> = {
  [ACME]: memoryLogger(),
  [GLOBEX]: memoryLogger(),
}

beforeAll(async () => {
  suite = await startWebSuite([ACME, GLOBEX], undefined, (name) => ({ logger: logs[name]!.logger }))
  ;({ fed, problems, open, expectText } = suite)
}, 120_000)

afterAll(() => suite?.close())

const roomId = async (page: Page) => (await page.locator('main[data-room-id]').getAttribute('data-room-id'))!

/** Signs up and waits until the device's keys are made and published (after the self-test). */
async function signUpWithKeys(page: Page, username: string): Promise<void> {
  await signUp(page, username)
  await page.locator('.shell[data-e2e="ready"]').waitFor({ timeout: 15_000 })
}

async function startDm(page: Page, user: string): Promise<void> {
  await page.getByLabel('User id, e.g. @bob:globex.example').fill(user)
  await page.getByRole('button', { name: 'Message', exact: true }).click()
  await page.locator('.room-header [data-testid="room-encrypted"]').waitFor({ timeout: 15_000 })
}

async function openVerify(page: Page): Promise<string> {
  await page.locator('[data-testid="verify"]').click()
  const number = page.locator('[data-testid="safety-number"]')
  await number.waitFor({ timeout: 15_000 })
  return (await number.textContent())!
}

describe('end-to-end encryption in the web client', () => {
  const canaries = {
    dmFromAda: 'canary-ui-dm-7c41 from ada',
    dmFromBen: 'canary-ui-dm-0b9e from ben',
    groupFromAda: 'canary-ui-group-5d12 to the group',
    groupFromBen: 'canary-ui-group-e880 back',
    laterFromEli: 'canary-ui-later-3f60 once encrypted',
    history: 'canary-ui-history-91d4 for the backup',
  }

  it('two users of two servers chat in an encrypted DM and group; the servers hold no plaintext', async () => {
    const ada = await open(ACME)
    const ben = await open(GLOBEX)
    await signUpWithKeys(ada, 'ada')
    await signUpWithKeys(ben, 'ben')

    // A DM is encrypted without asking; the first message goes while ben is still invited.
    await startDm(ada, `@ben:${GLOBEX}`)
    await say(ada, canaries.dmFromAda)
    await expectText(ada, '[data-testid="message"]', canaries.dmFromAda)
    await expect.poll(() => ada.locator('[data-testid="pending"]').count()).toBe(0)
    await ben.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(ben, '[data-testid="message"]', canaries.dmFromAda)
    expect(await ben.locator('.room-header [data-testid="room-encrypted"]').textContent()).toContain(
      'Encrypted',
    )
    await say(ben, canaries.dmFromBen)
    await expectText(ada, '[data-testid="message"]', canaries.dmFromBen)
    // The room list shows the decrypted last message and the lock.
    await expect
      .poll(() => ada.locator('[aria-current="true"] [data-testid="room-preview"]').textContent())
      .toContain(canaries.dmFromBen)
    expect(await ada.locator('[aria-current="true"] [data-testid="room-encrypted"]').count()).toBe(1)
    // A reaction travels encrypted too, and shows on the other side.
    await ada
      .locator('[data-testid="message"]', { hasText: canaries.dmFromBen })
      .getByRole('button', { name: 'React with 👍' })
      .click()
    await ben.getByRole('button', { name: `👍 by @ada:${ACME}` }).waitFor({ timeout: 15_000 })
    // The server cannot tell a reaction from a message: the preview says what it was once decrypted.
    await expect
      .poll(() => ada.locator('[aria-current="true"] [data-testid="room-preview"]').textContent())
      .toBe('You: reacted 👍')
    // (An event may come before its room key, over another path: it shows as waiting, then decrypts.)
    await expect.poll(() => ada.locator('[data-testid="undecrypted"]').count()).toBe(0)

    // Both see the same safety number (60 digits) and a QR code; ada marks ben verified.
    const adaNumber = await openVerify(ada)
    const benNumber = await openVerify(ben)
    expect(adaNumber.replace(/\s/g, '')).toMatch(/^\d{60}$/)
    expect(benNumber).toBe(adaNumber)
    expect(await ada.locator('[data-testid="safety-qr"] path').getAttribute('d')).toMatch(/^M/)
    await ada.getByRole('button', { name: 'They match: mark as verified' }).click()
    await ada.locator('[data-testid="verified-state"]').waitFor()
    await ada.getByRole('button', { name: 'Close' }).click()
    await ben.getByRole('button', { name: 'Close' }).click()
    await expectText(ada, '[data-testid="verify"]', 'Verified')

    // An encrypted group (opted in when creating it).
    await ada.getByLabel('User id, e.g. @bob:globex.example').fill(`@ben:${GLOBEX}`)
    await ada.getByLabel('Group name').fill('Secret plans')
    await ada.getByLabel('End-to-end encrypted (cannot be turned off later)').check()
    await ada.getByRole('button', { name: 'New group' }).click()
    await ada.locator('.room-header [data-testid="room-encrypted"]').waitFor({ timeout: 15_000 })
    await expect.poll(() => ada.locator('.room-header h2').textContent()).toBe('Secret plans')
    await ben.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(ada, '.notice', `@ben:${GLOBEX} joined`)
    await say(ada, canaries.groupFromAda)
    await expectText(ben, '[data-testid="message"]', canaries.groupFromAda)
    await say(ben, canaries.groupFromBen)
    await expectText(ada, '[data-testid="message"]', canaries.groupFromBen)

    // The server cannot search encrypted rooms: the app searches what it decrypted, on the device.
    await ada.getByLabel('Search messages').fill('DM-0B9E')
    const hit = ada.locator('[data-testid="search-hit"]')
    await expect.poll(() => hit.count()).toBe(1)
    expect(await hit.textContent()).toContain(canaries.dmFromBen)
    await hit.click()
    await expect.poll(() => ada.locator('.room-header h2').textContent()).toBe(`@ben:${GLOBEX}`)
    await expectText(ada, '[data-testid="message"]', canaries.dmFromBen)

    // The servers relayed ciphertext only: no canary in any file, file name or log line of either.
    for (const name of [ACME, GLOBEX]) {
      const disk = await dataBytes(fed.get(name).dataDir)
      const log = logs[name]!.text()
      for (const canary of Object.values(canaries)) {
        expect(disk.includes(canary), `${name} disk: ${canary}`).toBe(false)
        expect(log.includes(canary), `${name} log: ${canary}`).toBe(false)
      }
    }
    expect(problems).toEqual([])
  }, 120_000)

  it('a group turned encrypted later: old messages stay readable, new ones travel encrypted', async () => {
    const eli = await open(ACME)
    const fay = await open(GLOBEX)
    await signUpWithKeys(eli, 'eli')
    await signUpWithKeys(fay, 'fay')
    await eli.getByLabel('User id, e.g. @bob:globex.example').fill(`@fay:${GLOBEX}`)
    await eli.getByLabel('Group name').fill('Open plans')
    await eli.getByRole('button', { name: 'New group' }).click()
    await expect
      .poll(() => eli.locator('.room-header h2').textContent(), { timeout: 15_000 })
      .toBe('Open plans')
    await fay.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(eli, '.notice', `@fay:${GLOBEX} joined`)
    await say(eli, 'said in the clear')
    await expectText(fay, '[data-testid="message"]', 'said in the clear')
    expect(await eli.locator('.room-header [data-testid="room-encrypted"]').count()).toBe(0)

    // Irreversible, so the app asks first; the members at that moment are signed in as the roots.
    await eli.getByRole('button', { name: 'Turn on encryption' }).click()
    await eli.getByRole('button', { name: 'Encrypt', exact: true }).click()
    await eli.locator('.room-header [data-testid="room-encrypted"]').waitFor({ timeout: 15_000 })
    await fay.locator('.room-header [data-testid="room-encrypted"]').waitFor({ timeout: 15_000 })
    await say(eli, canaries.laterFromEli)
    await expectText(fay, '[data-testid="message"]', canaries.laterFromEli)
    await say(fay, 'and back')
    await expectText(eli, '[data-testid="message"]', 'and back')
    expect(await fay.locator('[data-testid="message"]', { hasText: 'said in the clear' }).count()).toBe(1)
    for (const name of [ACME, GLOBEX])
      expect((await dataBytes(fed.get(name).dataDir)).includes(canaries.laterFromEli), name).toBe(false)
    expect(problems).toEqual([])
  }, 90_000)

  it("a user's new device is added from the key backup and reads the history (E2E.md 2.1, 2.5)", async () => {
    const gus = await open(ACME)
    const hal = await open(GLOBEX)
    await signUpWithKeys(gus, 'gus')
    await signUpWithKeys(hal, 'hal')
    // The first device sets up the backup and shows the recovery key once.
    await gus.getByRole('button', { name: 'Key backup' }).click()
    await gus.getByRole('button', { name: 'Set up key backup' }).click()
    const recoveryKey = (await gus.locator('[data-testid="recovery-key"]').textContent({ timeout: 15_000 }))!
    expect(recoveryKey.replace(/\s/g, '').length).toBeGreaterThan(40)
    await gus.getByRole('button', { name: 'I have saved it' }).click()
    await gus.locator('[data-testid="backup-on"]').waitFor()

    await startDm(gus, `@hal:${GLOBEX}`)
    await hal.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await say(gus, canaries.history)
    await expectText(hal, '[data-testid="message"]', canaries.history)
    await say(hal, 'reply before the new device')
    await expectText(gus, '[data-testid="message"]', 'reply before the new device')

    // gus signs in on a second device: nothing encrypted is readable until it is added.
    const second = await open(ACME)
    await second.getByLabel('User name').fill('gus')
    await second.getByLabel('Password').fill('correct horse battery')
    await second.getByRole('button', { name: 'Sign in' }).click()
    await second.locator('[data-testid="verify-device"]').waitFor({ timeout: 15_000 })
    await second.locator('.room-button', { hasText: `@hal:${GLOBEX}` }).click()
    await second.locator('[data-testid="undecrypted"]').first().waitFor({ timeout: 15_000 })
    await second.getByLabel('Recovery key or passphrase').fill(recoveryKey)
    await second.getByRole('button', { name: 'Add this device' }).click()
    await expectText(second, '[data-testid="restored"]', 'This device is added')
    // The history decrypts from the backup; new messages from hal reach the new device too.
    await expectText(second, '[data-testid="message"]', canaries.history)
    await expectText(second, '[data-testid="message"]', 'reply before the new device')
    await say(hal, 'hello both of your devices')
    await expectText(second, '[data-testid="message"]', 'hello both of your devices')
    await expectText(gus, '[data-testid="message"]', 'hello both of your devices')
    await say(second, 'sent from the new device')
    await expectText(hal, '[data-testid="message"]', 'sent from the new device')
    await expectText(gus, '[data-testid="message"]', 'sent from the new device')
    for (const name of [ACME, GLOBEX])
      expect((await dataBytes(fed.get(name).dataDir)).includes(canaries.history), name).toBe(false)
    expect(problems).toEqual([])
  }, 120_000)

  it("a verified contact's new identity key blocks sending until the user accepts it (row 13)", async () => {
    const cy = await open(ACME)
    const dee = await open(GLOBEX)
    await signUpWithKeys(cy, 'cy')
    await signUpWithKeys(dee, 'dee')
    await startDm(cy, `@dee:${GLOBEX}`)
    await dee.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await say(cy, 'before the swap')
    await expectText(dee, '[data-testid="message"]', 'before the swap')
    await openVerify(cy)
    await cy.getByRole('button', { name: 'They match: mark as verified' }).click()
    await cy.getByRole('button', { name: 'Close' }).click()

    // dee's identity key is replaced (as an identity reset, or a server handing out its own key):
    // a scripted device of dee publishes a version 1 list under a new identity key.
    const intruder = await ParleyClient.login(fed.urls[GLOBEX]!, 'dee', 'correct horse battery', {
      store: new MemoryStore(),
      WebSocket: WebSocket as never,
    })
    const session = (await intruder.store.getSession())!
    const identity = new Identity(`@dee:${GLOBEX}`)
    await intruder.api.publishDeviceList(wire(identity.next([session.device_id])))
    await intruder.api.publishPrekey(identity.prekey(session.device_id) as never)
    intruder.close()

    // cy's client hears of the change and checks at once: the blocking dialog comes before any send.
    const blocking = cy.locator('[data-testid="identity-blocked"]')
    await blocking.waitFor({ timeout: 15_000 })
    expect(await blocking.textContent()).toContain(`@dee:${GLOBEX}`)
    const room = await roomId(cy)
    await say(cy, 'held back')
    await expectText(cy, '[data-testid="unsent"]', 'held back')
    // Nothing left cy for that room: dee's timeline never gets it.
    expect(await dee.locator('[data-testid="message"]', { hasText: 'held back' }).count()).toBe(0)

    await cy.getByRole('button', { name: 'Accept the new key' }).click()
    await blocking.waitFor({ state: 'detached' })
    await cy.locator('[data-testid="unsent"]').getByRole('button', { name: 'Send again' }).click()
    await expect.poll(() => cy.locator('[data-testid="unsent"]').count(), { timeout: 15_000 }).toBe(0)
    await expectText(cy, `main[data-room-id="${room}"] [data-testid="message"]`, 'held back')
    // The new key is not verified: the header offers verification again.
    await expectText(cy, '[data-testid="verify"]', `Verify @dee:${GLOBEX}`)
    expect(problems).toEqual([])
  }, 90_000)

  it('the server tried to add a member: an unsigned join is shown as a warning and gets no room key (row 12)', async () => {
    const ivy = await open(ACME)
    const jo = await open(GLOBEX)
    await signUpWithKeys(ivy, 'ivy')
    await signUpWithKeys(jo, 'jo')
    await ivy.getByLabel('User id, e.g. @bob:globex.example').fill(`@jo:${GLOBEX}`)
    await ivy.getByLabel('Group name').fill('Signed only')
    await ivy.getByLabel('End-to-end encrypted (cannot be turned off later)').check()
    await ivy.getByRole('button', { name: 'New group' }).click()
    await ivy.locator('.room-header [data-testid="room-encrypted"]').waitFor({ timeout: 15_000 })
    await expect.poll(() => ivy.locator('.room-header h2').textContent()).toBe('Signed only')
    await jo.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(ivy, '.notice', `@jo:${GLOBEX} joined`)
    await say(ivy, 'before the server meddles')
    await expectText(jo, '[data-testid="message"]', 'before the server meddles')
    const room = await roomId(ivy)

    // kim@acme exists, with a signed device list and a prekey (so an envelope could be sealed to her
    // device if the app took her for a member), and stays offline: what is sent to her stays in
    // acme's to-device store for the test to read.
    const kimClient = await ParleyClient.register(fed.urls[ACME]!, 'kim', 'correct horse battery', {
      store: new MemoryStore(),
      WebSocket: WebSocket as never,
    })
    const kim = (await kimClient.store.getSession())!
    const kimIdentity = new Identity(kim.user_id)
    await kimClient.api.publishDeviceList(wire(kimIdentity.next([kim.device_id])))
    await kimClient.api.publishPrekey(kimIdentity.prekey(kim.device_id) as never)
    kimClient.close()

    // acme, the room's owner, writes kim's join into its log with no statement, bypassing its rules.
    const acme = fed.get(ACME)
    await inject(acme, {
      room,
      type: 'm.member',
      stateKey: kim.user_id,
      sender: kim.user_id,
      content: { membership: 'join' },
    })
    // The app got the event (the server's view shows kim in the room).
    await expectText(ivy, '.notice', `${kim.user_id} joined`)

    await say(ivy, 'after the server meddled')
    const warning = ivy.locator('[data-testid="e2e-warning"][data-kind="membership_unsigned"]')
    await warning.first().waitFor({ timeout: 15_000 })
    expect(await warning.count()).toBe(1)
    expect(await warning.textContent()).toContain(`The server tried to add ${kim.user_id}`)
    await expectText(jo, '[data-testid="message"]', 'after the server meddled')
    await expect.poll(() => ivy.locator('[data-testid="pending"]').count()).toBe(0)
    // No room key for kim's device, ever: nothing waits for it in acme's to-device store.
    const envelopes = acme.services.repos.toDevice
      .pending(kim.device_id, 0, 1000)
      .filter((m) => m.event_type === 'm.room_key')
    expect(envelopes).toEqual([])

    // acme also slips in a plaintext message "from jo": the app does not show it as jo's.
    await inject(acme, {
      room,
      type: 'm.message',
      sender: `@jo:${GLOBEX}`,
      content: { body: 'plaintext the server wrote' },
    })
    await expectText(ivy, '[data-testid="undecrypted"]', 'sent unencrypted in an encrypted room')
    expect(
      await ivy.locator('[data-testid="message"] .body', { hasText: 'plaintext the server wrote' }).count(),
    ).toBe(0)
    expect(problems).toEqual([])
  }, 90_000)
})

/** The crypto core's device list as the wire schema types it. */
function wire(list: e2e.SignedDeviceList) {
  return { ...list, devices: list.devices.map((d) => ({ ...d })) }
}
