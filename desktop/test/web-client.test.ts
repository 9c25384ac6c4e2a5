/**
 * The web client in real Chromium against two real federated homeservers that serve it
 * (`--web-client`): two people of two organisations sign up, start a DM across servers, exchange
 * markdown messages; hostile markdown renders inert (IN-4 subset); no console errors or CSP
 * violations. Screenshots of the main views go to desktop/test-artifacts/.
 */
import { mkdir } from 'node:fs/promises'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Federation } from '../../homeserver/test/support/federation.ts'
import {
  ARTIFACTS,
  axeViolations,
  say,
  signUp,
  startWebSuite,
  type Recorded,
  type WebSuite,
} from './support/browser.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

let suite: WebSuite
let fed: Federation
let problems: string[]
let open: WebSuite['open']
let expectText: WebSuite['expectText']

beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true })
  suite = await startWebSuite([ACME, GLOBEX])
  ;({ fed, problems, open, expectText } = suite)
}, 120_000)

afterAll(() => suite?.close())

describe('web client in Chromium', () => {
  it('two organisations chat in a DM across their servers', async () => {
    const alice = await open(ACME)
    const bob = await open(GLOBEX)
    await alice.screenshot({ path: `${ARTIFACTS}/sign-in.png` })
    expect(await axeViolations(alice)).toEqual([])
    await signUp(alice, 'alice')
    await signUp(bob, 'bob')

    await alice.getByLabel('User id, e.g. @bob:globex.example').fill(`@bob:${GLOBEX}`)
    await alice.getByRole('button', { name: 'Message', exact: true }).click()
    await expectText(alice, '.notice', `@bob:${GLOBEX} was invited`)
    await say(alice, 'hello **bob**')
    await expectText(alice, '[data-testid="message"]', 'hello bob')

    // bob sees the invitation on his own server, joins, and reads the message rendered.
    await bob.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(bob, '[data-testid="message"]', 'hello bob')
    expect(await bob.locator('[data-testid="message"] strong').first().textContent()).toBe('bob')

    await say(bob, 'hi alice, from globex')
    await expectText(alice, '[data-testid="message"]', 'hi alice, from globex')
    // alice is in the room: no notification for it. Once she looks elsewhere, bob's next DM notifies
    // her, and the unread count shows on the room and the badge.
    await alice.getByLabel('Group name').fill('elsewhere')
    await alice.getByRole('button', { name: 'New group' }).click()
    await expectText(alice, '.room-name', 'elsewhere')
    await say(bob, 'are you there?')
    await expect
      .poll(() => alice.evaluate(() => (window as unknown as Recorded).recorded.notifications), {
        timeout: 15_000,
      })
      .toEqual([{ title: `@bob:${GLOBEX}`, body: 'are you there?' }])
    await expect
      .poll(() => alice.evaluate(() => (window as unknown as Recorded).recorded.badge), { timeout: 15_000 })
      .toBe(1)
    await expectText(alice, '.badge', '1')
    // The DM is named after bob, with his presence (he is online on his own server).
    await alice.locator('.room-button', { hasText: `@bob:${GLOBEX}` }).click()
    await alice.locator('.room-button .presence[data-presence="online"]').waitFor({ timeout: 15_000 })
    await expect.poll(() => bob.locator('[data-testid="pending"]').count(), { timeout: 15_000 }).toBe(0)
    await alice.screenshot({ path: `${ARTIFACTS}/dm.png` })
    expect(await axeViolations(alice)).toEqual([])

    // bob reacts to alice's first message; alice edits it, then deletes it: both sides see each step.
    const first = (side: Page) => side.locator('[data-testid="message"]', { hasText: 'hello' }).first()
    await first(bob).getByRole('button', { name: 'React with 👍' }).click()
    await expectText(alice, '.reaction', '👍 1')
    await first(alice).getByRole('button', { name: 'Edit' }).click()
    await say(alice, 'hello **bob**, edited')
    await expectText(bob, '[data-testid="message"]', 'hello bob, edited')
    await first(bob).locator('[data-testid="edited"]').waitFor({ timeout: 15_000 })
    await first(alice).getByRole('button', { name: 'Delete' }).click()
    await bob.locator('[data-testid="deleted"]').first().waitFor({ timeout: 15_000 })
    expect(await bob.locator('[data-testid="message"]', { hasText: 'hello bob' }).count()).toBe(0)

    // bob opens the room again (reading it to the end) and starts typing: alice sees both.
    await bob.locator('.room-button', { hasText: `@alice:${ACME}` }).click()
    await expectText(alice, '[data-testid="seen-by"]', `@bob:${GLOBEX}`)
    await bob.locator('textarea[name="message"]').pressSequentially('typing away')
    await expectText(alice, '[data-testid="typing"]', `@bob:${GLOBEX} typing`)
    await bob.locator('textarea[name="message"]').fill('')

    // Hostile markdown arrives as inert text: no element with a handler, no javascript: link.
    await say(bob, '<img src=x onerror="window.__pwned=1"> [click](javascript:window.__pwned=2)')
    await expectText(alice, '[data-testid="message"]', 'click')
    expect(await alice.locator('[data-testid="message"] img').count()).toBe(0)
    expect(await alice.locator('[data-testid="message"] a[href^="javascript"]').count()).toBe(0)
    expect(await alice.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined()

    expect(problems).toEqual([])
  }, 90_000)

  it('sends to a room whose server is down wait as pending, survive a reload with the draft, and arrive once', async () => {
    const carol = await open(ACME)
    const dave = await open(GLOBEX)
    await signUp(carol, 'carol')
    await signUp(dave, 'dave')
    await carol.getByLabel('User id, e.g. @bob:globex.example').fill(`@dave:${GLOBEX}`)
    await carol.getByRole('button', { name: 'Message', exact: true }).click()
    await expectText(carol, '.notice', `@dave:${GLOBEX} was invited`)
    await dave.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(carol, '.notice', `@dave:${GLOBEX} joined`)

    // The room's owner (carol's server) goes down: dave's server queues his messages durably.
    await fed.stop(ACME)
    await say(dave, 'while acme was down 1')
    await say(dave, 'while acme was down 2')
    await expect.poll(() => dave.locator('[data-testid="pending"]').count(), { timeout: 15_000 }).toBe(2)
    await dave.locator('textarea[name="message"]').fill('a draft I keep')
    await dave.reload()
    await expectText(dave, '[data-testid="me"]', '@dave:')
    await dave.locator('.room-button', { hasText: `@carol:${ACME}` }).click()
    await expect.poll(() => dave.locator('[data-testid="pending"]').count(), { timeout: 15_000 }).toBe(2)
    await expect.poll(() => dave.locator('textarea[name="message"]').inputValue()).toBe('a draft I keep')
    await dave.screenshot({ path: `${ARTIFACTS}/pending.png` })

    await fed.start(ACME)
    await expect.poll(() => dave.locator('[data-testid="pending"]').count(), { timeout: 30_000 }).toBe(0)
    await carol.reload()
    await expectText(carol, '[data-testid="me"]', '@carol:')
    await carol.locator('.room-button', { hasText: `@dave:${GLOBEX}` }).click()
    await expectText(carol, '[data-testid="message"]', 'while acme was down 2')
    for (const text of ['while acme was down 1', 'while acme was down 2'])
      expect(await carol.locator('[data-testid="message"]', { hasText: text }).count()).toBe(1)
    expect(
      problems.filter((p) => !p.includes('Failed to load resource') && !p.includes('WebSocket')),
    ).toEqual([])
  }, 120_000)

  it('a group across servers: a third person is invited from the room header, joins, chats, leaves', async () => {
    const frank = await open(ACME)
    const gina = await open(GLOBEX)
    const hank = await open(ACME)
    await signUp(frank, 'frank')
    await signUp(gina, 'gina')
    await signUp(hank, 'hank')
    await frank.getByLabel('User id, e.g. @bob:globex.example').fill(`@gina:${GLOBEX}`)
    await frank.getByLabel('Group name').fill('Ops')
    await frank.getByRole('button', { name: 'New group' }).click()
    await expectText(frank, '.room-header h2', 'Ops')
    await frank.getByLabel('Invite someone by user id').fill(`@hank:${ACME}`)
    await frank.getByRole('button', { name: 'Invite', exact: true }).click()
    await expectText(frank, '.notice', `@hank:${ACME} was invited`)
    for (const page of [gina, hank]) await page.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(frank, '.notice', `@gina:${GLOBEX} joined`)
    await expectText(frank, '.notice', `@hank:${ACME} joined`)
    await say(frank, 'welcome to ops')
    for (const page of [gina, hank]) await expectText(page, '[data-testid="message"]', 'welcome to ops')
    await say(gina, 'thanks from globex')
    for (const page of [frank, hank]) await expectText(page, '[data-testid="message"]', 'thanks from globex')
    await frank.screenshot({ path: `${ARTIFACTS}/group.png` })
    // Ctrl+K: jump to a room by typing part of its name.
    await frank.getByLabel('Group name').fill('Elsewhere')
    await frank.getByLabel('User id, e.g. @bob:globex.example').fill('')
    await frank.getByRole('button', { name: 'New group' }).click()
    await expectText(frank, '.room-header h2', 'Elsewhere')
    await frank.keyboard.press('Control+k')
    await frank.getByRole('combobox', { name: 'Jump to a room' }).pressSequentially('op')
    await frank.keyboard.press('Enter')
    await expectText(frank, '.room-header h2', 'Ops')
    expect(await axeViolations(frank)).toEqual([])
    await hank.getByRole('button', { name: 'Leave room' }).click()
    await expectText(frank, '.notice', `@hank:${ACME} left`)
    await expectText(gina, '.notice', `@hank:${ACME} left`)
  }, 120_000)

  it('IN-4/IN-5: hostile messages and room names run nothing under the production CSP', async () => {
    const payloads = [
      '<img src=x onerror="window.__pwned=1">',
      '<svg onload="window.__pwned=2"></svg>',
      '<iframe src="javascript:parent.__pwned=3"></iframe>',
      '<script>window.__pwned=4</script>',
      '[a](javascript:window.__pwned=5)',
      '[b](data:text/html,<script>parent.__pwned=6</script>)',
      '[c](jav&#x09;ascript:window.__pwned=7)',
      '<a href="javascript:window.__pwned=8">d</a>',
      '<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned=9">',
      '<details open ontoggle="window.__pwned=10">e</details>',
      '"><img src=x onerror=window.__pwned=11>',
      '![f](x" onerror="window.__pwned=12)',
      '<style>body{display:none}</style>g',
      '[h](  javascript:window.__pwned=13  )',
    ]
    const ivan = await open(ACME)
    let dialogs = 0
    ivan.on('dialog', (d) => {
      dialogs++
      void d.dismiss()
    })
    await signUp(ivan, 'ivan')
    await ivan.getByLabel('Group name').fill('<img src=x onerror="window.__pwned=99">')
    await ivan.getByRole('button', { name: 'New group' }).click()
    for (const [i, payload] of payloads.entries()) await say(ivan, `${i} ${payload}`)
    await expect
      .poll(() => ivan.locator('[data-testid="message"]').count(), { timeout: 15_000 })
      .toBe(payloads.length)
    const dom = await ivan.evaluate(() => {
      const bodies = [...document.querySelectorAll('[data-testid="message"] .body')]
      const all = bodies.flatMap((b) => [...b.querySelectorAll('*')])
      return {
        pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
        handlers: all.filter((el) => [...el.attributes].some((a) => a.name.startsWith('on'))).length,
        dangerous: all.filter((el) =>
          ['SCRIPT', 'IFRAME', 'STYLE', 'SVG', 'MATH', 'IMG', 'OBJECT', 'EMBED'].includes(
            el.tagName.toUpperCase(),
          ),
        ).length,
        links: all
          .filter((el) => el.tagName === 'A')
          .map((a) => a.getAttribute('href'))
          .filter((h) => h !== null),
        hidden: getComputedStyle(document.body).display === 'none',
      }
    })
    expect(dom.pwned).toBeNull()
    expect(dom.handlers).toBe(0)
    expect(dom.dangerous).toBe(0)
    for (const href of dom.links) expect(href).toMatch(/^(https?:|mailto:)/)
    expect(dom.hidden).toBe(false)
    expect(dialogs).toBe(0)
    expect(ivan.url()).toBe(`${fed.urls[ACME]}/`)
    // The CSP itself: an inline handler that slipped past the sanitiser would still not run.
    // (Code run through DevTools is exempt from the CSP, so eval cannot be probed from here; the
    // header has no 'unsafe-eval': homeserver/test/web-client-route.test.ts.)
    await ivan.evaluate(() => {
      const img = document.createElement('img')
      img.setAttribute('onerror', 'window.__pwned=100')
      img.src = 'data:,x'
      document.body.append(img)
    })
    await expect
      .poll(() => problems.some((p) => p.includes('CSP violation: script-src')), { timeout: 5_000 })
      .toBe(true)
    expect(await ivan.evaluate(() => (window as unknown as { __pwned?: number }).__pwned ?? null)).toBeNull()
    problems.splice(0) // the violations above were provoked on purpose
  }, 90_000)
})
