/**
 * Room features of the web client in real Chromium against two federated homeservers: mentions
 * across servers (badge in the room list, a notification even in a group, cleared on opening),
 * broadcast rooms (only admins get a composer), and `parley://` links (a room link opens the room,
 * an invitation asks before joining, a link to a room the user is not in says so).
 */
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Federation } from '../../homeserver/test/support/federation.ts'
import { say, signUp, startWebSuite, type Recorded, type WebSuite } from './support/browser.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

let suite: WebSuite
let fed: Federation
let browser: Browser
let problems: string[]
let open: WebSuite['open']
let expectText: WebSuite['expectText']

beforeAll(async () => {
  suite = await startWebSuite([ACME, GLOBEX])
  ;({ fed, browser, problems, open, expectText } = suite)
}, 120_000)

afterAll(() => suite?.close())

const notifications = (page: Page) =>
  page.evaluate(() => (window as unknown as Recorded).recorded.notifications)

async function newRoom(
  page: Page,
  name: string,
  kind: 'New group' | 'New broadcast',
  invite = '',
): Promise<string> {
  await page.getByLabel('User id, e.g. @bob:globex.example').fill(invite)
  await page.getByLabel('Group name').fill(name)
  await page.getByRole('button', { name: kind }).click()
  await expectText(page, '.room-name', name)
  await expect.poll(() => page.locator('[aria-current="true"] .room-name').textContent()).toBe(name)
  return (await page.locator('main[data-room-id]').getAttribute('data-room-id'))!
}

describe('rooms in the web client', () => {
  it('a mention from another server badges the room and notifies, also in a group; opening clears it', async () => {
    const ada = await open(ACME)
    const ben = await open(GLOBEX)
    await signUp(ada, 'ada')
    await signUp(ben, 'ben')
    await newRoom(ada, 'Design', 'New group', `@ben:${GLOBEX}`)
    await ben.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(ada, '.notice', `@ben:${GLOBEX} joined`)
    // ben looks at another room, so Design is off screen for him.
    await newRoom(ben, 'Elsewhere', 'New group')

    await say(ada, 'no ping for anyone here')
    await say(ada, `@ben:${GLOBEX} can you review this?`)
    await ben.locator('[data-testid="mentions"]').waitFor({ timeout: 15_000 })
    expect(await ben.locator('[data-testid="mentions"]').getAttribute('aria-label')).toBe('1 mention of you')
    await expect
      .poll(() => notifications(ben))
      .toEqual([{ title: `@ada:${ACME}`, body: `@ben:${GLOBEX} can you review this?` }])

    // The room list previews the last message (as text; the preview describes the button, whose name
    // stays the room's).
    const design = ben.getByRole('button', { name: /^Design/ })
    await expect
      .poll(() => design.locator('[data-testid="room-preview"]').textContent())
      .toBe(`@ada:${ACME}: @ben:${GLOBEX} can you review this?`)
    expect(await ben.getByRole('button', { name: 'Elsewhere', exact: true }).count()).toBe(1)
    await design.click()
    await expectText(ben, '[data-testid="message"]', 'can you review this?')
    // Each message says when it was sent: a machine-readable time, a full date as its tooltip.
    const time = ben.locator('[data-testid="message"]', { hasText: 'can you review this?' }).locator('time')
    expect(Date.now() - Date.parse((await time.getAttribute('datetime'))!)).toBeLessThan(10 * 60_000)
    expect(await time.getAttribute('title')).toMatch(/\d{4}/)
    expect(await ben.locator('[data-testid="mentions"]').count()).toBe(0)
    // After a reload the cleared count stays cleared (it is kept in the cache).
    await ben.reload()
    await expectText(ben, '.room-name', 'Design')
    expect(await ben.locator('[data-testid="mentions"]').count()).toBe(0)
    expect(problems).toEqual([])
  }, 90_000)

  it('in a broadcast room only admins get a composer', async () => {
    const cal = await open(ACME)
    const dot = await open(ACME)
    await signUp(cal, 'cal')
    await signUp(dot, 'dot')
    await newRoom(cal, 'Announcements', 'New broadcast', `@dot:${ACME}`)
    await say(cal, 'office closed on friday')
    await dot.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(dot, '[data-testid="message"]', 'office closed on friday')
    await dot.locator('[data-testid="read-only"]').waitFor()
    expect(await dot.locator('textarea[name="message"]').count()).toBe(0)
    expect(await cal.locator('textarea[name="message"]').count()).toBe(1)
    expect(problems).toEqual([])
  }, 60_000)

  it('parley:// links: a room opens, an invitation asks first, an unknown room is explained', async () => {
    const eve = await open(ACME)
    const fay = await open(GLOBEX)
    await signUp(eve, 'eve')
    await signUp(fay, 'fay')
    const first = await newRoom(fay, 'First', 'New group')
    await newRoom(fay, 'Second', 'New group')
    const deliver = (page: Page, link: { kind: 'room' | 'invite'; room: string }) =>
      page.evaluate((l) => (window as unknown as Recorded).openDeepLink(l), link)

    await deliver(fay, { kind: 'room', room: first })
    await expect.poll(() => fay.locator('[aria-current="true"] .room-name').textContent()).toBe('First')

    const party = await newRoom(eve, 'Party', 'New group', `@fay:${GLOBEX}`)
    await expectText(fay, '.room-name', 'Party')
    await deliver(fay, { kind: 'invite', room: party })
    await expectText(fay, '[data-testid="link-prompt"]', 'You were invited to')
    // Nothing happened without the user's say-so.
    expect(await fay.locator('[data-testid="join"]').count()).toBe(1)
    await fay.locator('[data-testid="link-prompt"]').getByRole('button', { name: 'Join' }).click()
    await expect.poll(() => fay.locator('[aria-current="true"] .room-name').textContent()).toBe('Party')
    expect(await fay.locator('[data-testid="link-prompt"]').count()).toBe(0)

    // A link that arrives on the sign-in screen waits for the sign-in and the room list.
    const lou = await open(ACME)
    await lou.getByRole('button', { name: 'Create account' }).waitFor()
    await deliver(lou, { kind: 'invite', room: party })
    await signUp(lou, 'lou')
    await expectText(lou, '[data-testid="link-prompt"]', 'You were invited to')

    await deliver(eve, { kind: 'room', room: first })
    await expectText(eve, '[data-testid="link-prompt"]', 'a room you are not in')
    await eve.getByRole('button', { name: 'Dismiss' }).click()
    expect(await eve.locator('[data-testid="link-prompt"]').count()).toBe(0)
    expect(problems).toEqual([])
  }, 90_000)

  it('presence: a DM shows the peer online, away after five minutes hidden, online again when back', async () => {
    const ivy = await open(ACME)
    const jonContext = await browser.newContext()
    const jon = await jonContext.newPage()
    await jon.clock.install()
    await jon.goto(fed.urls[ACME]!)
    await signUp(ivy, 'ivy')
    await signUp(jon, 'jon')
    await ivy.getByLabel('User id, e.g. @bob:globex.example').fill(`@jon:${ACME}`)
    await ivy.getByRole('button', { name: 'Message', exact: true }).click()
    await jon.locator('[data-testid="join"]').click({ timeout: 15_000 })
    const dot = ivy.locator('.room-button .presence')
    await expect.poll(() => dot.getAttribute('data-presence'), { timeout: 15_000 }).toBe('online')

    const setVisibility = (state: 'hidden' | 'visible') =>
      jon.evaluate((s) => {
        Object.defineProperty(document, 'visibilityState', { value: s, configurable: true })
        document.dispatchEvent(new Event('visibilitychange'))
      }, state)
    await setVisibility('hidden')
    // Five minutes on jon's clock, in 10 s steps: his client keeps pinging (and hearing pongs) as it
    // would over real minutes, so the connection stays up while the away timer runs.
    for (let step = 0; step < 29; step++) {
      await jon.clock.fastForward(10_000)
      await jon.locator('[data-status="online"]').waitFor()
    }
    expect(await dot.getAttribute('data-presence')).toBe('online')
    await jon.clock.fastForward(11_000)
    await expect.poll(() => dot.getAttribute('data-presence'), { timeout: 15_000 }).toBe('away')
    await setVisibility('visible')
    await expect.poll(() => dot.getAttribute('data-presence'), { timeout: 15_000 }).toBe('online')
    await jonContext.close()
    await expect.poll(() => dot.getAttribute('data-presence'), { timeout: 15_000 }).toBe('offline')
    expect(problems).toEqual([])
  }, 60_000)

  it('keyboard: Alt+Up/Down walk the room list (wrapping), Escape cancels a reply', async () => {
    const kim = await open(ACME)
    await signUp(kim, 'kim')
    for (const name of ['One', 'Two', 'Three']) await newRoom(kim, name, 'New group')
    const current = () => kim.locator('[aria-current="true"] .room-name').textContent()
    const order = await kim.locator('.room-button .room-name').allTextContents()
    expect(order).toHaveLength(3)
    const at = order.indexOf((await current())!)
    await kim.keyboard.press('Alt+ArrowDown')
    await expect.poll(current).toBe(order[(at + 1) % 3])
    await kim.keyboard.press('Alt+ArrowDown')
    await kim.keyboard.press('Alt+ArrowDown')
    await expect.poll(current).toBe(order[at])
    await kim.keyboard.press('Alt+ArrowUp')
    await expect.poll(current).toBe(order[(at + 2) % 3])

    await say(kim, 'reply to me')
    await kim
      .locator('[data-testid="message"]', { hasText: 'reply to me' })
      .getByRole('button', { name: 'Reply' })
      .click()
    await expectText(kim, '.composer-context', 'Replying to')
    await kim.keyboard.press('Escape')
    await expect.poll(() => kim.locator('.composer-context').count()).toBe(0)
    expect(problems).toEqual([])
  }, 60_000)

  it('a message refused for good stays on screen with the reason, a retry and a discard', async () => {
    const ned = await open(ACME)
    const ola = await open(ACME)
    await signUp(ned, 'ned')
    await signUp(ola, 'ola')
    await newRoom(ned, 'Strict', 'New group', `@ola:${ACME}`)
    await ola.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(ned, '.notice', `@ola:${ACME} joined`)
    // ned removes ola while her window still shows the room: what she writes next is refused.
    await ned.getByRole('button', { name: /members/ }).click()
    await ned.getByRole('button', { name: `Remove @ola:${ACME}` }).click()
    await expectText(ola, '.notice', `@ola:${ACME} left`)
    await say(ola, 'am I still here?')
    await expectText(ola, '[data-testid="unsent"]', 'am I still here?')
    await expectText(ola, '[data-testid="unsent"] .error', 'Not sent:')
    await ola.locator('[data-testid="unsent"]').getByRole('button', { name: 'Send again' }).click()
    await expect.poll(() => ola.locator('[data-testid="unsent"]').count()).toBe(1)
    await ola.locator('[data-testid="unsent"]').getByRole('button', { name: 'Discard' }).click()
    await expect.poll(() => ola.locator('[data-testid="unsent"]').count()).toBe(0)
  }, 60_000)

  it("what is typed before a room's draft has loaded is kept, and Enter sends it", async () => {
    const ida = await open(ACME)
    await signUp(ida, 'ida')
    await newRoom(ida, 'First', 'New group')
    await newRoom(ida, 'Second', 'New group')
    // Hold the outbox's lock: the next send's cache write waits, and every cache read queues behind it
    // (what a busy cache looks like), including the draft of the room opened next.
    await ida.evaluate(
      () =>
        new Promise<void>((held) =>
          navigator.locks.request(
            'parley-outbox',
            () =>
              new Promise<void>((release) => {
                ;(window as unknown as { releaseOutbox: () => void }).releaseOutbox = release
                held()
              }),
          ),
        ),
    )
    await say(ida, 'queued behind the lock')
    await ida.getByRole('button', { name: 'First', exact: true }).click()
    const box = ida.locator('textarea[name="message"]')
    await box.fill('typed before the draft loaded')
    await ida.evaluate(() => (window as unknown as { releaseOutbox: () => void }).releaseOutbox())
    // The held send went out and came back (so the draft read queued behind it has answered).
    await expect
      .poll(() =>
        ida
          .getByRole('button', { name: 'Second', exact: true })
          .locator('[data-testid="room-preview"]')
          .textContent(),
      )
      .toBe('You: queued behind the lock')
    expect(await box.inputValue()).toBe('typed before the draft loaded')
    await box.press('Enter')
    await expectText(ida, '[data-testid="message"]', 'typed before the draft loaded')
    expect(problems).toEqual([])
  }, 60_000)
})
