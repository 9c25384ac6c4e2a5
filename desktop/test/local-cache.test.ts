/**
 * The web client's encrypted local cache in real Chromium against a real homeserver: the app renders
 * the room list and a room's timeline from IndexedDB before (and without) the network; nothing on
 * disk is readable (no message text, token, user id, room id or room name in record names or bytes);
 * tampered records count as absent; sends made while the browser is offline (`context.setOffline`)
 * wait as pending and are delivered exactly once when it comes back.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Federation } from '../../homeserver/test/support/federation.ts'
import { expectText, openPage, say, signUp, startWebSuite, type WebSuite } from './support/browser.ts'

const ACME = 'acme.localhost'

let suite: WebSuite
let fed: Federation
let browser: Browser
const problems: string[] = []

beforeAll(async () => {
  suite = await startWebSuite([ACME])
  ;({ fed, browser } = suite)
}, 120_000)

afterAll(() => suite?.close())

/** Every record of the cache database as raw bytes: names and values (iv + ciphertext), base64. */
async function rawRecords(page: Page): Promise<Array<{ name: string; bytes: string }>> {
  return page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const open = indexedDB.open('parley-cache')
      open.onsuccess = () => resolve(open.result)
      open.onerror = () => reject(open.error)
    })
    const store = db.transaction('records').objectStore('records')
    const [names, values] = await Promise.all(
      [store.getAllKeys(), store.getAll()].map(
        (req) =>
          new Promise<unknown[]>((resolve, reject) => {
            req.onsuccess = () => resolve(req.result as unknown[])
            req.onerror = () => reject(req.error)
          }),
      ),
    )
    db.close()
    const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes))
    return names!.map((name, i) => {
      const { iv, ct } = values![i] as { iv: Uint8Array; ct: ArrayBuffer }
      return { name: String(name), bytes: b64(new Uint8Array([...iv, ...new Uint8Array(ct)])) }
    })
  })
}

/** Flips one bit of every record's ciphertext. */
async function tamperAll(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const open = indexedDB.open('parley-cache')
      open.onsuccess = () => resolve(open.result)
      open.onerror = () => reject(open.error)
    })
    const tx = db.transaction('records', 'readwrite')
    const store = tx.objectStore('records')
    let count = 0
    await new Promise<void>((resolve, reject) => {
      const cursor = store.openCursor()
      cursor.onsuccess = () => {
        const c = cursor.result
        if (!c) return resolve()
        const { iv, ct } = c.value as { iv: Uint8Array; ct: ArrayBuffer }
        const bytes = new Uint8Array(ct.slice(0))
        bytes[0]! ^= 1
        c.update({ iv, ct: bytes.buffer })
        count++
        c.continue()
      }
      cursor.onerror = () => reject(cursor.error)
    })
    await new Promise((resolve) => (tx.oncomplete = resolve))
    db.close()
    return count
  })
}

async function newGroup(page: Page, name: string): Promise<string> {
  await page.getByLabel('Group name').fill(name)
  await page.getByRole('button', { name: 'New group' }).click()
  await expectText(page, '.room-name', name, problems)
  return (await page.locator('[data-room-id]').getAttribute('data-room-id'))!
}

describe('encrypted local cache', () => {
  let context: BrowserContext
  let page: Page
  const CANARY = 'canary-7f3a plaintext that must never be on disk'

  it('renders the room list and the timeline from the cache before the network answers', async () => {
    context = await browser.newContext()
    page = await openPage(context, fed.urls[ACME]!, problems, 'ann')
    await signUp(page, 'ann')
    await newGroup(page, 'Canary Club')
    await say(page, CANARY)
    await expectText(page, '[data-testid="message"]', CANARY, problems)
    await page.locator('[data-cache="saved"]').waitFor()

    // The network holds every API call and never opens the WebSocket: what shows comes from the cache.
    let offline = true
    const held: Array<() => Promise<void>> = []
    await page.route(/\/api\/v1\//, (route) =>
      offline ? void held.push(() => route.continue()) : route.continue(),
    )
    await page.routeWebSocket(/\/api\/v1\/ws/, (ws) => {
      if (!offline) ws.connectToServer()
    })
    await page.reload()
    await expectText(page, '[data-testid="me"]', '@ann:', problems)
    await expectText(page, '[data-testid="room-preview"]', `You: ${CANARY}`, problems)
    await page.getByRole('button', { name: 'Canary Club' }).click()
    await expectText(page, '[data-testid="message"]', CANARY, problems)
    expect(await page.locator('[data-status]').getAttribute('data-status')).not.toBe('online')

    // The network answers: the app catches up and goes online.
    offline = false
    for (const release of held) await release().catch(() => {}) // the reload cancelled them
    await page.reload()
    await page.locator('[data-status="online"]').waitFor({ timeout: 15_000 })
    await page.getByRole('button', { name: 'Canary Club' }).click()
    await say(page, 'after the restart')
    await expectText(page, '[data-testid="message"]', 'after the restart', problems)
    expect(await page.locator('[data-testid="message"]', { hasText: CANARY }).count()).toBe(1)
  }, 90_000)

  it('keeps nothing readable on disk: no text, token, user id, room id or room name', async () => {
    await page.locator('[data-cache="saved"]').waitFor()
    const room = (await page.locator('[data-room-id]').getAttribute('data-room-id'))!
    const records = await rawRecords(page)
    expect(records.length).toBeGreaterThanOrEqual(4) // session, cursor, outbox, rooms, timeline
    const disk = Buffer.concat(
      records.flatMap((r) => [Buffer.from(r.name), Buffer.from(r.bytes, 'base64')]),
    ).toString('latin1')
    for (const secret of [
      CANARY.slice(0, 12),
      'after the restart',
      '@ann',
      'ann:',
      ACME,
      room,
      'Canary Club',
      'access_token',
    ])
      expect(disk.includes(secret), secret).toBe(false)
    for (const { name } of records) expect(name).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(await page.evaluate(() => localStorage.length + sessionStorage.length)).toBe(0)
  })

  it('treats tampered records as absent: the app asks to sign in again and nothing breaks', async () => {
    const before = problems.length
    expect(await tamperAll(page)).toBeGreaterThanOrEqual(4)
    await page.reload()
    await page.getByRole('button', { name: 'Create account' }).waitFor()
    expect(problems.slice(before)).toEqual([])
    await context.close()
  })

  it('sends made while the browser is offline wait as pending and arrive once when it is back', async () => {
    const ctx = await browser.newContext()
    const bea = await openPage(ctx, fed.urls[ACME]!, problems, 'bea')
    await signUp(bea, 'bea')
    await newGroup(bea, 'Offline Club')
    await bea.locator('[data-status="online"]').waitFor()

    await ctx.setOffline(true)
    await bea
      .locator('[data-status="offline"], [data-status="connecting"]')
      .first()
      .waitFor({ timeout: 15_000 })
    await say(bea, 'written offline 1')
    await say(bea, 'written offline 2')
    await expect.poll(() => bea.locator('[data-testid="pending"]').count()).toBe(2)

    await ctx.setOffline(false)
    await expect.poll(() => bea.locator('[data-testid="pending"]').count(), { timeout: 15_000 }).toBe(0)
    await bea.reload()
    await bea.getByRole('button', { name: 'Offline Club' }).click()
    await expectText(bea, '[data-testid="message"]', 'written offline 2', problems)
    for (const text of ['written offline 1', 'written offline 2'])
      expect(await bea.locator('[data-testid="message"]', { hasText: text }).count()).toBe(1)
    await ctx.close()
    expect(
      problems.filter((p) => !p.includes('Failed to load resource') && !p.includes('WebSocket')),
    ).toEqual([])
  }, 60_000)
})
