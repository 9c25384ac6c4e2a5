/**
 * The virtualised timeline in real Chromium against a real homeserver that serves the web client: a
 * room of 100,000 messages (seeded through the server's sequencer, with timestamps over 100 days from
 * an injected clock) renders with a bounded DOM; the unread divider and its "jump" control; day
 * separators and grouped senders; scrolling to the start; new messages stick to the bottom or wait
 * behind a "new messages" control; after a reload, scrolling up pages older history in while the row
 * on screen stays put. Timings are printed (not asserted): sync, opening the room, scroll frames.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import type { CommittedEvent } from '../../homeserver/src/services/sequencer.ts'
import {
  createRoom,
  http,
  register,
  roomPath,
  startTestServer,
  type TestServer,
  type TestUser,
} from '../../homeserver/test/helpers.ts'
import { axeViolations, buildWebClient, expectText, launchChromium, openPage } from './support/browser.ts'

const SERVER = 'acme.localhost'
const ROOM_NAME = 'Big room'
const N = 100_000
const DAY = 86_400_000
/** 01:00 UTC, about 102 days ago: message i is sent on day (i + 990) / 1000, a minute after the previous one. */
const DAY_ZERO = Math.floor(Date.now() / DAY) * DAY - 102 * DAY + 3600_000
const tsOf = (i: number) => DAY_ZERO + Math.floor((i + 990) / 1000) * DAY + ((i + 990) % 1000) * 60_000
const bodyOf = (i: number) =>
  i % 7 === 0
    ? `message ${i}: ${'a longer message that wraps over more than one line of the timeline '.repeat(4)}`
    : i % 11 === 0
      ? `message ${i}\nwith a second line`
      : `message ${i}`
const dayFormat = new Intl.DateTimeFormat('en', {
  weekday: 'long',
  year: 'numeric',
  month: 'long',
  day: 'numeric',
  timeZone: 'UTC',
})

let web: Awaited<ReturnType<typeof buildWebClient>>
let server: TestServer
let browser: Browser
let context: BrowserContext
let page: Page
let room: string
let sam: TestUser
let tess: TestUser
/** The seeded messages, in order. */
let seeded: CommittedEvent[] = []
let unreadCount = 0
let firstUnreadSeq = 0
/** When set, the server's clock: what the seeded events are stamped with. */
let clockAt: number | null = null
const problems: string[] = []
const timings: Record<string, string> = {}

/** Message i is sam's for three in five, tess's (the browser user) otherwise: runs of one sender. */
const senderOf = (i: number) => (i % 5 < 3 ? sam : tess)

function submit(sender: TestUser, body: string): Promise<CommittedEvent> {
  return server.services.sequencer.submit({
    room,
    type: 'm.message',
    sender: sender.user_id,
    content: { body, format: 'markdown' },
  })
}

beforeAll(async () => {
  const building = buildWebClient()
  server = await startTestServer(
    { serverName: SERVER, limits: { syncPageSize: 1000 } },
    { clock: { now: () => clockAt ?? Date.now() } },
  )
  sam = await register(server, 'sam')
  tess = await register(server, 'tess')
  room = await createRoom(server, sam, { kind: 'group', name: ROOM_NAME, invite: [tess.user_id] })
  const joined = await http(server, 'POST', roomPath(room, '/join'), {}, tess.access_token)
  expect(joined.status).toBe(200)
  // Straight into the sequencer (group commit, 2000 a transaction): far faster than 100k sends.
  const started = performance.now()
  const sends: Array<Promise<CommittedEvent>> = []
  for (let i = 0; i < N; i++) {
    clockAt = tsOf(i)
    sends.push(submit(senderOf(i), bodyOf(i)))
  }
  clockAt = null
  seeded = await Promise.all(sends)
  timings.seed = `${(performance.now() - started).toFixed(0)} ms for ${N} messages`
  // tess read up to message N - 300: what sam sent after it is unread.
  const read = seeded[N - 300]!
  server.services.repos.receipts.advance(room, tess.user_id, read.seq, read.event_id, Date.now())
  const unread = seeded.slice(N - 299).filter((e) => e.sender === sam.user_id)
  unreadCount = unread.length
  firstUnreadSeq = unread[0]!.seq
  web = await building
  // The web client is served from a directory given at start: restart the server with it.
  const dataDir = server.dataDir
  await server.close()
  server = await startTestServer(
    { serverName: SERVER, dataDir, webClientDir: web.dir, limits: { syncPageSize: 1000 } },
    { clock: { now: () => clockAt ?? Date.now() } },
  )
  browser = await launchChromium()
  context = await browser.newContext({
    timezoneId: 'UTC',
    locale: 'en-US',
    viewport: { width: 1280, height: 800 },
  })
}, 120_000)

afterAll(async () => {
  console.info(
    `timeline timings:\n${Object.entries(timings)
      .map(([k, v]) => `  ${k}: ${v}`)
      .join('\n')}`,
  )
  await browser?.close()
  await server?.stop()
  await web?.remove()
})

const scroller = (p: Page) => p.locator('[data-testid="timeline"]')

/** The scroller's position, and the rows in the DOM. */
function snapshot(p: Page) {
  return p.evaluate(() => {
    const s = document.querySelector<HTMLElement>('[data-testid="timeline"]')!
    const seqs = [...s.querySelectorAll<HTMLElement>('[data-testid="message"]')].map((m) =>
      Number(m.dataset.seq),
    )
    return {
      top: s.scrollTop,
      height: s.scrollHeight,
      client: s.clientHeight,
      messages: seqs.length,
      minSeq: Math.min(...seqs),
      maxSeq: Math.max(...seqs),
    }
  })
}

/** Where an element is relative to the scroller's viewport (null if it is not in the DOM). */
function placeOf(p: Page, selector: string) {
  return p.evaluate((sel) => {
    const s = document.querySelector<HTMLElement>('[data-testid="timeline"]')!.getBoundingClientRect()
    const el = document.querySelector<HTMLElement>(sel)
    if (!el) return null
    const r = el.getBoundingClientRect()
    return { top: r.top - s.top, bottom: r.bottom - s.top, visible: r.top >= s.top && r.bottom <= s.bottom }
  }, selector)
}

/**
 * The message at the middle of the viewport: the row a reader is looking at. (Not the first one: the
 * oldest loaded message may rightly lose its sender name or day separator once older ones arrive.)
 */
function rowOnScreen(p: Page) {
  return p.evaluate(() => {
    const s = document.querySelector<HTMLElement>('[data-testid="timeline"]')!.getBoundingClientRect()
    const middle = s.top + s.height / 2
    for (const m of document.querySelectorAll<HTMLElement>('[data-testid="message"]')) {
      const r = m.getBoundingClientRect()
      if (r.top >= middle) return { id: m.dataset.eventId!, top: r.top - s.top }
    }
    return null
  })
}

/** Scrolls the timeline by `step` px a frame for `frames` frames; the frame intervals, in ms. */
function scrollFrames(p: Page, step: number, frames: number) {
  return p.evaluate(
    ({ step, frames }) =>
      new Promise<number[]>((resolve) => {
        const s = document.querySelector<HTMLElement>('[data-testid="timeline"]')!
        const deltas: number[] = []
        let last = performance.now()
        const frame = (now: number) => {
          deltas.push(now - last)
          last = now
          s.scrollTop += step
          if (deltas.length < frames) requestAnimationFrame(frame)
          else resolve(deltas.slice(1))
        }
        requestAnimationFrame(frame)
      }),
    { step, frames },
  )
}

function frameStats(deltas: number[]): string {
  const sorted = [...deltas].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(1)
  const mean = deltas.reduce((a, b) => a + b, 0) / deltas.length
  return `${deltas.length} frames, mean ${mean.toFixed(1)} ms, p50 ${at(0.5)}, p95 ${at(0.95)}, max ${at(1)}`
}

async function openRoom(p: Page): Promise<number> {
  const started = performance.now()
  await p.getByRole('button', { name: ROOM_NAME }).click()
  await p.locator(`[data-testid="message"][data-seq="${seeded.at(-1)!.seq}"]`).waitFor({ timeout: 20_000 })
  return performance.now() - started
}

describe('virtualised timeline in Chromium', () => {
  it('renders a room of 100,000 messages with a bounded DOM and jumps to the first unread message', async () => {
    page = await openPage(context, server.url, problems)
    await page.getByLabel('User name').fill('tess')
    await page.getByLabel('Password').fill('correct horse battery')
    const signingIn = performance.now()
    await page.getByRole('button', { name: 'Sign in' }).click()
    await expectText(page, '[data-testid="me"]', '@tess:')
    await page.locator('[data-status="online"]').waitFor({ timeout: 60_000 })
    timings.sync = `${(performance.now() - signingIn).toFixed(0)} ms from sign-in to caught up (${N + 4} events)`

    timings.open = `${(await openRoom(page)).toFixed(0)} ms from click to the newest message on screen`
    const shown = await snapshot(page)
    expect(shown.messages).toBeGreaterThan(5)
    expect(shown.messages).toBeLessThan(200)
    expect(shown.maxSeq).toBe(seeded.at(-1)!.seq)
    // The list stands for all of the room: its height is that of 100k rows, not of the rendered ones.
    expect(shown.height).toBeGreaterThan(N * 20)
    expect(await page.locator('.timeline > li').count()).toBeLessThan(200)

    // The unread messages start ~300 messages up: a control says how many and jumps to the divider.
    const jump = page.getByTestId('jump-unread')
    await expect.poll(() => jump.textContent()).toBe(`${unreadCount} new messages — jump`)
    expect(await page.getByTestId('unread-divider').count()).toBe(0)
    await jump.click()
    await expect
      .poll(() => placeOf(page, '[data-testid="unread-divider"]').then((p) => p?.visible ?? false))
      .toBe(true)
    const dividerRow = page.locator('.row', { has: page.getByTestId('unread-divider') })
    expect(await dividerRow.getByTestId('message').getAttribute('data-seq')).toBe(String(firstUnreadSeq))
    expect(await jump.count()).toBe(0)
    expect(await axeViolations(page)).toEqual([])
    expect(problems).toEqual([])
  }, 90_000)

  it('scrolls smoothly through the room up to its start, with day separators and grouped senders', async () => {
    const frames = await scrollFrames(page, -400, 120)
    timings.scrollUp = frameStats(frames)
    const midway = await snapshot(page)
    expect(midway.messages).toBeLessThan(200)

    const jumping = performance.now()
    await scroller(page).evaluate((s) => (s.scrollTop = 0))
    await page.getByTestId('history-start').waitFor()
    timings.jumpToStart = `${(performance.now() - jumping).toFixed(0)} ms to render the start of the room`
    expect(await page.getByText('Room created').count()).toBe(1)
    const top = await snapshot(page)
    expect(top.minSeq).toBe(seeded[0]!.seq)
    expect(top.messages).toBeLessThan(200)

    // Messages 0-9 are on day 0, message 10 opens day 1: one separator each, dated in the locale.
    const separators = await page.getByTestId('day-separator').allTextContents()
    expect(separators.map((s) => s.trim())).toEqual(
      expect.arrayContaining([dayFormat.format(tsOf(0)), dayFormat.format(tsOf(10))]),
    )
    const day1 = page.locator('.row', { has: page.getByText(dayFormat.format(tsOf(10))) })
    expect(await day1.getByTestId('message').getAttribute('data-seq')).toBe(String(seeded[10]!.seq))

    // A message continuing its sender's run (a minute apart) hides the name, except across days.
    const rows = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>('[data-testid="message"]')].map((m) => ({
        seq: Number(m.dataset.seq),
        grouped: m.dataset.grouped === 'true',
        nameShown: m.querySelector('.sender')!.getBoundingClientRect().width > 1,
      })),
    )
    const indexOfSeq = new Map(seeded.map((e, i) => [e.seq, i]))
    let grouped = 0
    for (const [k, row] of rows.entries()) {
      const i = indexOfSeq.get(row.seq)!
      const expected = k > 0 && i > 0 && senderOf(i) === senderOf(i - 1) && i !== 10
      expect(row.grouped, `message ${i}`).toBe(expected)
      expect(row.nameShown).toBe(!expected)
      if (expected) grouped++
    }
    expect(grouped).toBeGreaterThan(3)
    expect(problems).toEqual([])
  }, 60_000)

  it('keeps the view still when new messages arrive while scrolled up, and follows them at the bottom', async () => {
    await scroller(page).evaluate((s) => (s.scrollTop = s.scrollHeight / 2))
    await expect.poll(() => rowOnScreen(page).then((r) => r !== null)).toBe(true)
    const before = (await rowOnScreen(page))!
    for (let i = 0; i < 3; i++) await submit(sam, `while you were reading ${i}`)
    const control = page.getByTestId('new-messages')
    await expect.poll(() => control.textContent(), { timeout: 15_000 }).toBe('3 new messages below')
    const after = await placeOf(page, `[data-event-id="${before.id}"]`)
    expect(Math.abs(after!.top - before.top)).toBeLessThanOrEqual(1)

    await control.click()
    await expectText(page, '[data-testid="message"]', 'while you were reading 2')
    await expect.poll(() => snapshot(page).then((s) => s.height - s.client - s.top)).toBeLessThanOrEqual(8)
    expect(await control.count()).toBe(0)

    // At the bottom, a new message scrolls into view and is announced to screen readers.
    const arriving = performance.now()
    await submit(sam, 'a message to follow')
    await expectText(page, '[data-testid="message"]', 'a message to follow')
    timings.liveMessage = `${(performance.now() - arriving).toFixed(0)} ms from send to on screen`
    const followed = await page
      .locator('[data-testid="message"]', { hasText: 'a message to follow' })
      .getAttribute('data-seq')
    await expect.poll(() => placeOf(page, `[data-seq="${followed}"]`).then((p) => p?.visible)).toBe(true)
    await expectText(
      page,
      '[data-testid="announcer"]',
      `New message from ${sam.user_id}: a message to follow`,
    )
    expect(await page.getByTestId('new-messages').count()).toBe(0)
    expect(problems).toEqual([])
  }, 60_000)

  it('after a reload, scrolling up pages older history in and keeps the row on screen in place', async () => {
    await page.reload()
    await page.locator('[data-status="online"]').waitFor({ timeout: 30_000 })
    await openRoom(page)
    const opened = await snapshot(page)
    expect(opened.messages).toBeLessThan(200)

    for (let round = 0; round < 2; round++) {
      // Hold the history request, to see the loading row and the position before the page lands.
      let release!: () => void
      const held = new Promise<void>((resolve) => (release = resolve))
      await page.route('**/messages?**', async (route) => {
        await held
        await route.continue()
      })
      await scroller(page).evaluate((s) => (s.scrollTop = 0))
      await page.getByTestId('history-loading').waitFor()
      await expect
        .poll(() => placeOf(page, '[data-testid="history-loading"]').then((p) => p?.visible))
        .toBe(true)
      // At the top: the oldest message rendered is the oldest loaded.
      const oldest = (await snapshot(page)).minSeq
      const anchor = (await rowOnScreen(page))!
      const paging = performance.now()
      release()
      await page.locator(`[data-testid="message"][data-seq="${oldest - 1}"]`).waitFor({ state: 'attached' })
      timings[`page${round + 1}`] =
        `${(performance.now() - paging).toFixed(0)} ms for a page of older history`
      await page.unroute('**/messages?**')
      const after = await placeOf(page, `[data-event-id="${anchor.id}"]`)
      expect(Math.abs(after!.top - anchor.top)).toBeLessThanOrEqual(1)
      const now = await snapshot(page)
      expect(now.top).toBeGreaterThan(1000)
      expect(now.messages).toBeLessThan(200)
    }
    expect(problems).toEqual([])
  }, 60_000)
})
