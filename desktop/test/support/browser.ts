/**
 * What every browser test of the web client needs: a build of the renderer, Debian's Chromium through
 * playwright-core, pages with a recording DesktopApi that collect console errors and CSP violations,
 * and the few UI steps every scenario takes (sign up, say something, wait for text).
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { build } from 'vite'
import type { ConfigInput } from '../../../homeserver/src/config.ts'
import type { StartOptions } from '../../../homeserver/src/server.ts'
import { startFederation, type Federation } from '../../../homeserver/test/support/federation.ts'

export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts', import.meta.url))

/**
 * A production build of the web client, as shipped, in its own temp directory (test files run in
 * parallel: no shared dist/). vitest runs with NODE_ENV=test, under which Vite would build Svelte's
 * development runtime (stack captures on every effect: several times slower rows).
 */
export async function buildWebClient(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'parley-web-'))
  const env = process.env.NODE_ENV
  process.env.NODE_ENV = 'production'
  try {
    await build({
      configFile: fileURLToPath(new URL('../../vite.config.ts', import.meta.url)),
      logLevel: 'warn',
      build: { outDir: dir, emptyOutDir: true },
    })
  } finally {
    process.env.NODE_ENV = env
  }
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) }
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

/** Homeservers serving a fresh build of the web client, and Chromium to drive it. */
export interface WebSuite {
  readonly fed: Federation
  readonly browser: Browser
  /** Console errors, page errors and CSP violations of every page opened with {@link open}. */
  readonly problems: string[]
  /** A page in a fresh browser profile on `server`'s web client, recording into {@link problems}. */
  open(server: string): Promise<Page>
  /** {@link expectText}, reporting the suite's problems on failure. */
  expectText(page: Page, selector: string, text: string): Promise<void>
  close(): Promise<void>
}

/**
 * Starts {@link WebSuite}: one homeserver per name, federated, each serving the web client, with
 * `overrides` of each one's configuration (e.g. a small upload limit).
 */
export async function startWebSuite(
  servers: readonly string[],
  overrides: (name: string) => Partial<ConfigInput> = () => ({}),
  /** Start options per server, e.g. an in-memory logger whose lines a test searches. */
  startOptions: (name: string) => StartOptions = () => ({}),
): Promise<WebSuite> {
  const web = await buildWebClient()
  const fed = await startFederation(
    [...servers],
    (name) => ({ ...overrides(name), webClientDir: web.dir }),
    startOptions,
  )
  const browser = await launchChromium()
  const problems: string[] = []
  return {
    fed,
    browser,
    problems,
    open: async (server) => openPage(await browser.newContext(), fed.urls[server]!, problems, server),
    expectText: (page, selector, text) => expectText(page, selector, text, problems),
    async close() {
      await browser.close()
      await fed.close()
      await web.remove()
    },
  }
}

/** What the recording DesktopApi saw (on `window.recorded`), and how tests hand it a deep link. */
export interface Recorded {
  recorded: { notifications: Array<{ title: string; body: string }>; badge: number }
  openDeepLink(link: { kind: 'room' | 'invite'; room: string }): void
}

/**
 * A page of `context` on `url` recording console errors, page errors and CSP violations into
 * `problems`, with a recording DesktopApi where the Electron preload would put the real one.
 */
export async function openPage(
  context: BrowserContext,
  url: string,
  problems: string[],
  label = url,
): Promise<Page> {
  const page = await context.newPage()
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${label} console: ${m.text()}`)
  })
  page.on('pageerror', (e) => problems.push(`${label} page error: ${e.message}`))
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`)
    })
    const recorded = { notifications: [] as Array<{ title: string; body: string }>, badge: 0 }
    Object.assign(window, {
      recorded,
      parleyDesktop: {
        platform: 'web',
        notify: (title: string, body: string) => recorded.notifications.push({ title, body }),
        setBadge: (count: number) => (recorded.badge = count),
        // Tests deliver parley:// links as the shell would: `window.openDeepLink({kind, room})`.
        onDeepLink: (listener: (link: unknown) => void) => {
          Object.assign(window, { openDeepLink: listener })
          return () => {}
        },
      },
    })
  })
  await page.goto(url)
  return page
}

const AXE = readFileSync(fileURLToPath(import.meta.resolve('axe-core/axe.min.js')), 'utf8')

/** axe-core's serious and critical findings on the page as it is (injected over DevTools, not past the CSP). */
export async function axeViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE)
  const results = await page.evaluate(async () => {
    const axe = (
      window as unknown as {
        axe: {
          run(): Promise<{ violations: Array<{ id: string; impact: string | null; nodes: unknown[] }> }>
        }
      }
    ).axe
    return (await axe.run()).violations
  })
  return results
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}, ${v.nodes.length} nodes)`)
}

/** Waits for an element matching `selector` with `text`; on timeout, the error shows what the page showed. */
export async function expectText(
  page: Page,
  selector: string,
  text: string,
  problems: string[] = [],
): Promise<void> {
  try {
    await page.locator(selector, { hasText: text }).first().waitFor({ timeout: 15_000 })
  } catch (error) {
    const shown = await page.locator('body').innerText()
    throw new Error(`${String(error)}\npage showed:\n${shown}\nproblems: ${problems.join('\n')}`)
  }
}

export async function signUp(page: Page, username: string): Promise<void> {
  await page.getByLabel('User name').fill(username)
  await page.getByLabel('Password').fill('correct horse battery')
  await page.getByRole('button', { name: 'Create account' }).click()
  await expectText(page, '[data-testid="me"]', `@${username}:`)
}

export async function say(page: Page, text: string): Promise<void> {
  const box = page.locator('textarea[name="message"]')
  await box.fill(text)
  await box.press('Enter')
}
