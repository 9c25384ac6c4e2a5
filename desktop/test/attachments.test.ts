/**
 * Attachments and display names in the web client, in real Chromium against two federated
 * homeservers that serve it (production build, production CSP):
 * - an image and a PDF go from alice (acme) to bob (globex) in a DM: bob sees the image inline (in the
 *   box its size announced), downloads the PDF with the same bytes; the preview's blob: URL goes when
 *   the row leaves the DOM and comes back without a second download; axe finds nothing serious;
 * - a file over the server's limit fails with a clear error and the caption is not lost; files can be
 *   dropped on and pasted into the composer;
 * - IN-5: hostile display names and hostile attachment names and types (sent by scripted clients, so
 *   anything the schema lets through) run nothing, open no dialog, navigate nowhere, trip no CSP;
 *   SVG and HTML are never previewed (file chips; the server serves them as attachments), names show
 *   as text, cleaned of controls and bidi overrides, and capped in size.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { deflateSync } from 'node:zlib'
import WebSocket from 'ws'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemoryStore, ParleyClient } from '@parley/protocol/client'
import type { Federation } from '../../homeserver/test/support/federation.ts'
import {
  ARTIFACTS,
  axeViolations,
  expectText as expectTextOn,
  openPage,
  signUp,
  startWebSuite,
  type WebSuite,
} from './support/browser.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
/** A small upload limit, so that going over it is cheap. */
const LIMIT = 1024 * 1024

let suite: WebSuite
let fed: Federation
let browser: Browser
const problems: string[] = []
const clients: ParleyClient[] = []

beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true })
  suite = await startWebSuite([ACME, GLOBEX], () => ({ limits: { maxMediaBytes: LIMIT } }))
  ;({ fed, browser } = suite)
}, 120_000)

afterAll(async () => {
  for (const c of clients) c.close()
  await suite?.close()
})

/**
 * A fresh profile on one server's web client that also counts the blob: URLs the page holds (made
 * and not yet revoked) on `window.__blobUrls`.
 */
async function open(server: string, viewport = { width: 1280, height: 720 }): Promise<Page> {
  const context = await browser.newContext({ acceptDownloads: true, viewport })
  await context.addInitScript(() => {
    const live = new Set<string>()
    const create = URL.createObjectURL.bind(URL)
    const revoke = URL.revokeObjectURL.bind(URL)
    URL.createObjectURL = (obj: Blob | MediaSource) => {
      const url = create(obj)
      live.add(url)
      return url
    }
    URL.revokeObjectURL = (url: string) => {
      live.delete(url)
      revoke(url)
    }
    Object.assign(window, { __blobUrls: live })
  })
  return openPage(context, fed.urls[server]!, problems, server)
}

function expectText(page: Page, selector: string, text: string): Promise<void> {
  return expectTextOn(page, selector, text, problems)
}

const liveBlobUrls = (page: Page) =>
  page.evaluate(() => (window as unknown as { __blobUrls: Set<string> }).__blobUrls.size)

// ---- files ----

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})
function crc32(bytes: Buffer): number {
  let c = 0xffffffff
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** A real PNG (RFC 2083): `width` x `height` pixels, a colour gradient. */
function png(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
    const out = Buffer.alloc(body.length + 8)
    out.writeUInt32BE(data.length, 0)
    body.copy(out, 4)
    out.writeUInt32BE(crc32(body), body.length + 4)
    return out
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header[8] = 8 // bit depth
  header[9] = 2 // truecolour
  const raw = Buffer.alloc((width * 3 + 1) * height)
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const at = y * (width * 3 + 1) + 1 + x * 3
      raw[at] = (x * 255) / width
      raw[at + 1] = (y * 255) / height
      raw[at + 2] = 160
    }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

const PDF = Buffer.from(
  '%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n' +
    'binary \u00e9\u00ff\u0000\u0001 '.repeat(300) +
    '\n%%EOF\n',
  'latin1',
)

/** Attaches files through the composer's file input, then sends them with `caption`. */
async function sendFiles(
  page: Page,
  files: Array<{ name: string; mimeType: string; buffer: Buffer }>,
  caption = '',
): Promise<void> {
  await page.locator('[data-testid="file-input"]').setInputFiles(files)
  await page.locator('textarea[name="message"]').fill(caption)
  await page.getByRole('button', { name: 'Send', exact: true }).click()
}

/** Resolves when every preview `<img>` on the page has decoded (naturalWidth > 0), returning their sizes. */
async function loadedImages(page: Page, count: number) {
  await expect
    .poll(
      () =>
        page.evaluate(
          () =>
            [...document.querySelectorAll<HTMLImageElement>('[data-testid="attachment-image"] img')].filter(
              (img) => img.complete && img.naturalWidth > 0,
            ).length,
        ),
      { timeout: 15_000 },
    )
    .toBe(count)
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLImageElement>('[data-testid="attachment-image"] img')].map((img) => ({
      alt: img.alt,
      src: img.src,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
      width: img.getBoundingClientRect().width,
      height: img.getBoundingClientRect().height,
    })),
  )
}

describe('attachments and display names', () => {
  it('an image and a file cross from acme to globex: bob sees the image inline and downloads the same bytes', async () => {
    const alice = await open(ACME)
    const bob = await open(GLOBEX)
    await signUp(alice, 'alice')
    await signUp(bob, 'bob')

    // alice names herself; the name shows next to her user id, and on her messages.
    await alice.getByRole('button', { name: 'Set display name' }).click()
    await alice.getByLabel('Display name', { exact: true }).fill('Alice Liddell')
    await alice.getByRole('button', { name: 'Save' }).click()
    await expectText(alice, '[data-testid="my-name"]', 'Alice Liddell')

    await alice.getByLabel('User id, e.g. @bob:globex.example').fill(`@bob:${GLOBEX}`)
    await alice.getByRole('button', { name: 'Message', exact: true }).click()
    await expectText(alice, '.notice', `@bob:${GLOBEX} was invited`)
    const image = png(640, 480)
    await sendFiles(
      alice,
      [{ name: 'sunset.png', mimeType: 'image/png', buffer: image }],
      'the view from here',
    )
    await sendFiles(alice, [{ name: 'report.pdf', mimeType: 'application/pdf', buffer: PDF }])
    await expectText(alice, '[data-testid="attachment-file"]', 'report.pdf')
    await expect.poll(() => alice.locator('[data-testid="upload"], [data-testid="pending"]').count()).toBe(0)
    const mine = alice.locator('[data-testid="message"]', { hasText: 'the view from here' })
    expect(await mine.locator('.sender-name').textContent()).toBe('Alice Liddell')
    expect(await mine.locator('[data-testid="sender"]').getAttribute('title')).toBe(`@alice:${ACME}`)
    // The user id is part of what assistive technology reads for the sender.
    expect(await mine.locator('[data-testid="sender"]').textContent()).toContain(`@alice:${ACME}`)
    await loadedImages(alice, 1)

    // bob, on the other server, joins and sees both: the image in the box its size announced.
    const media: string[] = []
    bob.on('request', (r) => {
      if (r.url().includes('/api/v1/media/')) media.push(r.url())
    })
    await bob.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(bob, '[data-testid="message"]', 'the view from here')
    const [preview] = await loadedImages(bob, 1)
    expect(preview).toMatchObject({
      alt: 'sunset.png',
      naturalWidth: 640,
      naturalHeight: 480,
      width: 360,
      height: 270,
    })
    expect(preview!.src).toMatch(/^blob:/)
    // Profiles are not federated (yet): another server's user shows as their user id.
    const theirs = bob.locator('[data-testid="message"]', { hasText: 'the view from here' })
    expect(await theirs.locator('.sender-name').textContent()).toBe(`@alice:${ACME}`)
    expect(media).toHaveLength(1)
    expect(await liveBlobUrls(bob)).toBe(1)

    // The row leaves the DOM (another room): its blob: URL is revoked. Back again, the image shows
    // from the cache: no second download.
    await bob.getByLabel('Group name').fill('elsewhere')
    await bob.getByRole('button', { name: 'New group' }).click()
    await expectText(bob, '[aria-current="true"] .room-name', 'elsewhere')
    await expect.poll(() => liveBlobUrls(bob)).toBe(0)
    await bob.locator('.room-button', { hasText: `@alice:${ACME}` }).click()
    await loadedImages(bob, 1)
    expect(await liveBlobUrls(bob)).toBe(1)
    expect(media).toHaveLength(1)

    // The PDF: a chip with its name and size; the download has the same bytes.
    const chip = bob.locator('[data-testid="attachment-file"]', { hasText: 'report.pdf' })
    await expectText(bob, '[data-testid="attachment-file"]', '3.7 kB') // 3,652 bytes
    const [download] = await Promise.all([
      bob.waitForEvent('download'),
      chip.getByRole('button', { name: 'Download report.pdf' }).click(),
    ])
    expect(download.suggestedFilename()).toBe('report.pdf')
    expect(Buffer.compare(await readFile((await download.path())!), PDF)).toBe(0)
    expect(bob.url()).toBe(`${fed.urls[GLOBEX]}/`)

    expect(await axeViolations(bob)).toEqual([])
    await bob.screenshot({ path: `${ARTIFACTS}/attachments.png` })
    expect(problems).toEqual([])
  }, 120_000)

  it('a file over the limit fails clearly and keeps the caption; files can be dropped and pasted', async () => {
    const carol = await open(ACME)
    await signUp(carol, 'carol')
    await carol.getByLabel('Group name').fill('Uploads')
    await carol.getByRole('button', { name: 'New group' }).click()
    await expectText(carol, '[aria-current="true"] .room-name', 'Uploads')

    const huge = Buffer.alloc(LIMIT + 1, 7)
    await sendFiles(
      carol,
      [{ name: 'huge.bin', mimeType: 'application/octet-stream', buffer: huge }],
      'the whole archive',
    )
    const failed = carol.locator('[data-testid="upload"][data-state="failed"]')
    await failed.waitFor({ timeout: 15_000 })
    expect(await failed.getByRole('alert').textContent()).toBe(
      'huge.bin is too large: your server takes files up to 1 MB.',
    )
    expect(await failed.textContent()).toContain('the whole archive')
    expect(await axeViolations(carol)).toEqual([])
    // Back to the composer: the caption and the file, nothing lost; drop the file, send the words.
    await failed.getByRole('button', { name: 'Back to composer' }).click()
    expect(await carol.locator('textarea[name="message"]').inputValue()).toBe('the whole archive')
    await expectText(carol, '[data-testid="staged"]', 'huge.bin')
    await carol.getByRole('button', { name: 'Remove huge.bin' }).click()
    await carol.getByRole('button', { name: 'Send', exact: true }).click()
    await expectText(carol, '[data-testid="message"]', 'the whole archive')
    // The browser logs the 413 answer itself; nothing else went wrong.
    expect(problems.filter((p) => !p.includes('status of 413'))).toEqual([])
    problems.splice(0)

    // A file dropped on the composer and an image pasted into it go out together.
    const bytes = [...png(4, 3)]
    await carol.evaluate((pngBytes) => {
      const dropped = new DataTransfer()
      dropped.items.add(new File(['plain words'], 'note.txt', { type: 'text/plain' }))
      const form = document.querySelector('form.composer')!
      form.dispatchEvent(
        new DragEvent('dragover', { dataTransfer: dropped, bubbles: true, cancelable: true }),
      )
      form.dispatchEvent(new DragEvent('drop', { dataTransfer: dropped, bubbles: true, cancelable: true }))
      const pasted = new DataTransfer()
      pasted.items.add(new File([new Uint8Array(pngBytes)], 'pasted.png', { type: 'image/png' }))
      document
        .querySelector('textarea[name="message"]')!
        .dispatchEvent(
          new ClipboardEvent('paste', { clipboardData: pasted, bubbles: true, cancelable: true }),
        )
    }, bytes)
    await expectText(carol, '[data-testid="staged"]', 'pasted.png')
    expect(await carol.locator('[data-testid="staged"] li').count()).toBe(2)
    await carol.getByRole('button', { name: 'Send', exact: true }).click()
    await expectText(carol, '[data-testid="attachment-file"]', 'note.txt')
    expect((await loadedImages(carol, 1))[0]).toMatchObject({
      alt: 'pasted.png',
      naturalWidth: 4,
      width: 4,
      height: 3,
    })
    expect(await carol.locator('[data-testid="staged"]').count()).toBe(0)
    expect(problems).toEqual([])
  }, 90_000)

  it('IN-5: hostile display names, file names and types run nothing and are never rendered as markup', async () => {
    // Tall enough for every row of the room to be rendered at once (the list is virtualised).
    const vic = await open(ACME, { width: 1280, height: 2400 })
    let dialogs = 0
    vic.on('dialog', (d) => {
      dialogs++
      void d.dismiss()
    })
    await signUp(vic, 'vic')
    const vicId = `@vic:${ACME}`

    // Scripted senders on vic's server (display names are per server): anything the schema allows.
    const NAMES = [
      '<img src=x onerror="window.__pwned=1">',
      '"><svg onload="window.__pwned=2">',
      '\u202Egnp.exe',
      'W'.repeat(128),
      'Z' + '\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308\u0309'.repeat(10) + 'algo',
      'line one\r\nline two<script>window.__pwned=3</script>',
    ]
    const senders: ParleyClient[] = []
    for (const [i, name] of NAMES.entries()) {
      const client = await ParleyClient.register(fed.urls[ACME]!, `hostile${i}`, 'correct horse battery', {
        store: new MemoryStore(),
        WebSocket: WebSocket as never,
      })
      clients.push(client)
      await client.api.setProfile(name)
      senders.push(client)
    }
    // Longer than the server takes: refused (the UI's field stops at 128 as well, below).
    await expect(senders[0]!.api.setProfile('x'.repeat(10_000))).rejects.toMatchObject({ status: 400 })
    const owner = senders[0]!
    const memberIds = [...senders.slice(1).map((_, i) => `@hostile${i + 1}:${ACME}`), vicId]
    const room = await owner.api.createRoom({ kind: 'group', name: 'Hostile', invite: memberIds })
    for (const s of senders.slice(1)) await s.api.join(room)
    await Promise.all(senders.map((s) => s.connect()))

    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=6"><script>window.__pwned=7</script></svg>',
    )
    const image = png(2, 2)
    const upload = (s: ParleyClient, bytes: Buffer, type: string, name: string) =>
      s.api.uploadMedia(room, new Uint8Array(bytes), type, name)
    const files: Array<{ name: string; mime: string; bytes: Buffer; extra?: Record<string, unknown> }> = [
      {
        name: '<script>window.__pwned=4</script>.png',
        mime: 'image/png',
        bytes: image,
        extra: { width: 2, height: 2 },
      },
      {
        name: 'a.html',
        mime: 'text/html',
        bytes: Buffer.from('<script>window.__pwned=5</script><h1>hi</h1>'),
      },
      { name: 'x.svg', mime: 'image/svg+xml', bytes: svg, extra: { width: 100, height: 100 } },
      // Claims to be a PNG, is an SVG: the bytes decide, it is no image.
      { name: 'fake.png', mime: 'image/png', bytes: svg, extra: { width: 100, height: 100 } },
      { name: 'evil\r\nContent-Disposition: inline\r\n.txt', mime: 'text/plain', bytes: Buffer.from('text') },
      { name: '../../etc/passwd', mime: 'application/octet-stream', bytes: Buffer.from('root:x:0:0') },
      { name: 'wide.png', mime: 'image/png', bytes: image, extra: { width: 100_000, height: 1 } },
      { name: 'odd.png', mime: 'image/png; x="<script>"', bytes: image },
      // The digest in the signed content does not match the bytes: never shown.
      {
        name: 'tampered.png',
        mime: 'image/png',
        bytes: image,
        extra: { sha256: '0'.repeat(64), width: 2, height: 2 },
      },
    ]
    const ids: Record<string, string> = {}
    for (const [i, f] of files.entries()) {
      const s = senders[i % senders.length]!
      const up = await upload(s, f.bytes, f.mime, f.name)
      ids[f.name] = up.media_id
      const attachment = {
        media_id: up.media_id,
        name: f.name,
        mime: f.mime,
        size: up.size,
        sha256: up.sha256,
        ...f.extra,
      }
      await s.send(room, 'm.message', { body: `file ${i}`, attachment })
    }
    for (const [i, s] of senders.entries()) await s.send(room, 'm.message', { body: `hello from ${i}` })

    await vic.locator('[data-testid="join"]').click({ timeout: 15_000 })
    // And one through vic's own composer: an SVG with a hostile name goes out as a file.
    await expectText(vic, '[data-testid="message"]', 'hello from 5')
    await sendFiles(vic, [
      { name: '<img src=x onerror="window.__pwned=8">.svg', mimeType: 'image/svg+xml', buffer: svg },
    ])
    await expect
      .poll(() => vic.locator('[data-testid="message"]').count(), { timeout: 15_000 })
      .toBe(files.length + senders.length + 1)
    const previews = await loadedImages(vic, 2)
    expect(previews.map((p) => p.alt).sort()).toEqual(['<script>window.__pwned=4</script>.png', 'wide.png'])
    expect(previews.find((p) => p.alt === 'wide.png')).toMatchObject({ width: 360, height: 1 })
    await expectText(vic, '[data-testid="attachment-file"]', 'tampered.png')
    await expectText(
      vic,
      '[role="alert"]',
      'Could not load tampered.png: the file does not match what the sender sent',
    )
    await expectText(vic, '[data-testid="attachment-file"]', 'fake.png')

    const dom = await vic.evaluate(() => {
      const all = [...document.querySelectorAll('*')]
      // eslint-disable-next-line no-control-regex -- looking for control characters
      const bidiOrControl = /[\u0000-\u001f\u202a-\u202e\u2066-\u2069]/
      return {
        pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
        handlers: all.filter((el) => [...el.attributes].some((a) => a.name.toLowerCase().startsWith('on')))
          .length,
        dangerous: document.body.querySelectorAll(
          'script, iframe, object, embed, svg, math, style, frame, link, meta',
        ).length,
        images: [...document.querySelectorAll('img')].map((img) => ({
          src: img.getAttribute('src') ?? '',
          inPreview: img.closest('[data-testid="attachment-image"]') !== null,
        })),
        chips: [...document.querySelectorAll('[data-testid="attachment-file"] .file-name')].map(
          (n) => n.textContent,
        ),
        names: [...document.querySelectorAll('[data-testid="message"] .sender-name')].map((n) => ({
          text: n.textContent ?? '',
          children: n.children.length,
          title: n.parentElement!.getAttribute('title'),
          width: n.parentElement!.getBoundingClientRect().width,
          height: n.parentElement!.getBoundingClientRect().height,
        })),
        cleaned: [...document.querySelectorAll('.sender-name, .file-name')].every(
          (n) => !bidiOrControl.test(n.textContent ?? ''),
        ),
        rowHeights: [...document.querySelectorAll('[data-testid="message"]')].map(
          (m) => m.getBoundingClientRect().height,
        ),
      }
    })
    expect(dom.pwned).toBeNull()
    expect(dom.handlers).toBe(0)
    expect(dom.dangerous).toBe(0)
    for (const img of dom.images) {
      expect(img.src).toMatch(/^blob:/)
      expect(img.inPreview).toBe(true)
    }
    // SVG, HTML and what only claims to be an image are file chips, never previews.
    for (const name of [
      'a.html',
      'x.svg',
      'fake.png',
      'odd.png',
      'tampered.png',
      '<img src=x onerror="window.__pwned=8">.svg',
    ])
      expect(dom.chips).toContain(name)
    expect(dom.chips).toContain('evil Content-Disposition: inline .txt')
    expect(dom.chips).toContain('../../etc/passwd')
    // Names are text: markup shows as typed, controls and overrides are gone, size is capped.
    const texts = dom.names.map((n) => n.text)
    expect(texts).toContain('<img src=x onerror="window.__pwned=1">')
    expect(texts).toContain('"><svg onload="window.__pwned=2">')
    expect(texts).toContain('gnp.exe')
    expect(texts).toContain('line one line two<script>window.__pwned=3</script>')
    expect(texts).toContain('W'.repeat(63) + '…')
    expect(dom.cleaned).toBe(true)
    for (const n of dom.names) {
      expect(n.children).toBe(0)
      expect(n.title).toMatch(/^@(hostile\d|vic):acme\.localhost$/)
      expect(n.width).toBeLessThanOrEqual(24 * 16 + 1)
      expect(n.height).toBeLessThan(40)
    }
    for (const h of dom.rowHeights) expect(h).toBeLessThan(400)

    // The server serves SVG and HTML as downloads, never as pages.
    const token = (await owner.store.getSession())!.access_token
    for (const name of ['a.html', 'x.svg', 'fake.png']) {
      const res = await fetch(`${fed.urls[ACME]}/api/v1/media/${ids[name]}`, {
        headers: { authorization: `Bearer ${token}` },
      })
      const shownAs = res.headers.get('content-disposition') ?? ''
      if (name === 'fake.png') expect(shownAs).toMatch(/^inline/)
      else {
        expect(shownAs).toMatch(/^attachment/)
        expect(res.headers.get('content-type')).toBe('application/octet-stream')
      }
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('content-security-policy')).toContain('sandbox')
    }

    // A download is saved under a cleaned name, and nothing navigates.
    const [download] = await Promise.all([
      vic.waitForEvent('download'),
      vic.getByRole('button', { name: 'Download ../../etc/passwd' }).click(),
    ])
    expect(download.suggestedFilename()).toBe('_.._etc_passwd')
    expect((await readFile((await download.path())!)).toString()).toBe('root:x:0:0')

    // The UI's display-name field stops at the server's 128 characters; the name is capped on screen.
    await vic.getByRole('button', { name: 'Set display name' }).click()
    await vic.getByLabel('Display name', { exact: true }).fill('\u202E' + 'M'.repeat(10_000))
    expect((await vic.getByLabel('Display name', { exact: true }).inputValue()).length).toBeLessThanOrEqual(
      128,
    )
    await vic.getByRole('button', { name: 'Save' }).click()
    await expectText(vic, '[data-testid="my-name"]', 'MMMM')
    const mine = await vic.locator('[data-testid="my-name"]').evaluate((n) => ({
      text: n.textContent ?? '',
      width: n.getBoundingClientRect().width,
      sidebar: n.closest('aside')!.getBoundingClientRect().width,
    }))
    expect(mine.text).toBe('M'.repeat(63) + '…')
    expect(mine.width).toBeLessThanOrEqual(mine.sidebar)

    await vic.screenshot({ path: `${ARTIFACTS}/attachments-hostile.png` })
    expect(dialogs).toBe(0)
    expect(vic.url()).toBe(`${fed.urls[ACME]}/`)
    expect(problems).toEqual([])
  }, 120_000)

  it('in an encrypted DM a file leaves the browser as ciphertext, under a neutral name and type, and shows decrypted on the other server', async () => {
    const erin = await open(ACME)
    const frank = await open(GLOBEX)
    await signUp(erin, 'erin')
    await signUp(frank, 'frank')
    // A DM is end-to-end encrypted by default.
    await erin.getByLabel('User id, e.g. @bob:globex.example').fill(`@frank:${GLOBEX}`)
    await erin.getByRole('button', { name: 'Message', exact: true }).click()
    await erin.locator('.room-header [data-testid="room-encrypted"]').waitFor({ timeout: 15_000 })
    await frank.locator('[data-testid="join"]').click({ timeout: 15_000 })
    await expectText(erin, '.notice', `@frank:${GLOBEX} joined`)
    const image = png(64, 48)
    await sendFiles(erin, [{ name: 'sealed-canary.png', mimeType: 'image/png', buffer: image }])

    const acme = fed.get(ACME)
    const uploads = () =>
      acme.services.repos.db
        .prepare('SELECT sha256, size, content_type, filename FROM media WHERE owner = ?')
        .all(`@erin:${ACME}`) as Array<{
        sha256: string
        size: number
        content_type: string
        filename: string
      }>
    await expect.poll(() => uploads().length, { timeout: 15_000 }).toBe(1)
    const [row] = uploads()
    // One 64 KiB chunk: the file plus secretstream's 17 bytes.
    expect(row).toMatchObject({
      size: image.length + 17,
      content_type: 'application/octet-stream',
      filename: 'encrypted.bin',
    })
    const stored = await readFile(join(acme.dataDir, 'media', row!.sha256))
    expect(stored.length).toBe(image.length + 17)
    expect(stored.includes(image.subarray(0, 8))).toBe(false) // the PNG signature
    expect(stored.includes(image.subarray(12, 29))).toBe(false) // the IHDR chunk: size and depth
    await expect.poll(() => erin.locator('[data-testid="upload"]').count()).toBe(0)
    // frank's client downloads the ciphertext through globex, decrypts it, and shows the image.
    const [shown] = await loadedImages(frank, 1)
    expect(shown).toMatchObject({ alt: 'sealed-canary.png', naturalWidth: 64, naturalHeight: 48 })
    expect(problems).toEqual([])
  }, 90_000)
})
