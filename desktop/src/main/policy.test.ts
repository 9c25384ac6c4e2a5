/**
 * The Electron shell's policies as plain modules (the binary cannot run here): window options,
 * navigation and external links, the app:// path guard, permissions, deep links and their inbox, the
 * IPC guard; and the static check of the built main and preload (with the tray icons the build draws),
 * including that it catches a weakened build. Tray, context menu, cache key and the preload's deep-link
 * relay have their own test files next to their modules.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile as readBytes, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { IPC, IPC_ARGS, IPC_EVENTS } from '../shared/desktop-api.ts'
import { WEB_CLIENT_CSP } from '../../../homeserver/src/routes/web-client.ts'
import { APP_CSP, resolveAppFile } from './app-protocol.ts'
import { deepLinkFromArgv, DeepLinkInbox, parseDeepLink } from './deep-links.ts'
import { checkIpc } from './ipc-guard.ts'
import { externalUrl, mayNavigate } from './navigation.ts'
import { permissionAllowed } from './permissions.ts'
import { windowOptions } from './window-options.ts'

const run = promisify(execFile)
const DESKTOP = fileURLToPath(new URL('../..', import.meta.url))
const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'

describe('window options', () => {
  it('sandboxed, isolated, no Node, no webviews, spellcheck on', () => {
    expect(windowOptions('/app/preload.cjs').webPreferences).toEqual({
      preload: '/app/preload.cjs',
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      webviewTag: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      spellcheck: true,
      navigateOnDragDrop: false,
    })
  })
})

describe('navigation and external links', () => {
  it('stays inside app://parley', () => {
    expect(mayNavigate('app://parley/')).toBe(true)
    expect(mayNavigate('app://parley/rooms/x')).toBe(true)
    for (const url of [
      'https://evil.example/',
      'app://other/',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'nonsense',
    ])
      expect(mayNavigate(url), url).toBe(false)
  })

  it('opens only http, https and mailto links outside, parsed, without credentials', () => {
    expect(externalUrl('https://example.com/a?b=c')).toBe('https://example.com/a?b=c')
    expect(externalUrl('mailto:bob@example.com')).toBe('mailto:bob@example.com')
    for (const url of [
      'javascript:alert(1)',
      'file:///etc/passwd',
      'smb://host/share',
      'ms-msdt:/id',
      'https://user:pass@example.com/',
      'not a url',
      'vbscript:x',
    ])
      expect(externalUrl(url), url).toBeNull()
  })
})

describe('app:// path guard', () => {
  const root = '/opt/parley/web'
  it('serves files of the renderer, index.html for /', () => {
    expect(resolveAppFile(root, 'app://parley/')).toEqual({
      path: '/opt/parley/web/index.html',
      type: 'text/html; charset=utf-8',
    })
    expect(resolveAppFile(root, 'app://parley/assets/index-1.js')?.path).toBe(
      '/opt/parley/web/assets/index-1.js',
    )
  })
  it('refuses everything outside it, other hosts and unknown types', () => {
    // Dot segments, literal or percent-encoded, are resolved by URL parsing itself: never above the root.
    for (const url of ['app://parley/../../secret.js', 'app://parley/%2e%2e/secret.js'])
      expect(resolveAppFile(root, url)?.path, url).toBe('/opt/parley/web/secret.js')
    for (const url of [
      'app://parley/assets/..%2f..%2fsecret.js',
      'app://parley/a%5c..%5c..%5csecret.js',
      'app://parley/%00.js',
      'app://other/index.html',
      'https://parley/index.html',
      'app://parley/notes.txt',
    ])
      expect(resolveAppFile(root, url), url).toBeNull()
  })
  it('has a strict CSP: no inline code, no eval beyond wasm', () => {
    expect(APP_CSP).toContain("default-src 'none'")
    expect(APP_CSP).toContain("script-src 'self' 'wasm-unsafe-eval'")
    expect(APP_CSP).not.toMatch(/unsafe-inline|'unsafe-eval'/)
  })
  it('lets images come from the app and from blob: URLs only (attachments), like the web client', () => {
    const directives = (csp: string) =>
      new Map(
        csp.split(';').map((d) => {
          const [name, ...values] = d.trim().split(/\s+/)
          return [name!, values] as const
        }),
      )
    const app = directives(APP_CSP)
    expect(app.get('img-src')).toEqual(["'self'", 'blob:'])
    expect(app.get('default-src')).toEqual(["'none'"])
    expect(app.has('media-src') || app.has('frame-src') || app.has('object-src')).toBe(false)
    // The same policy as the homeserver's web-client route, but for where the homeserver is.
    const web = directives(WEB_CLIENT_CSP)
    for (const [name, values] of web)
      if (name !== 'connect-src' && name !== 'manifest-src') expect(app.get(name), name).toEqual(values)
  })
})

describe('permissions', () => {
  it('notifications from the app, nothing else', () => {
    expect(permissionAllowed('notifications', 'app://parley/')).toBe(true)
    expect(permissionAllowed('notifications', 'https://evil.example/')).toBe(false)
    for (const p of ['media', 'geolocation', 'clipboard-read', 'openExternal', 'midi', 'pointerLock'])
      expect(permissionAllowed(p, 'app://parley/'), p).toBe(false)
  })
})

describe('deep links', () => {
  it('opens rooms and invitations with valid room ids only', () => {
    expect(parseDeepLink(`parley://room/${encodeURIComponent(ROOM)}`)).toEqual({ kind: 'room', room: ROOM })
    expect(parseDeepLink(`parley://invite/${encodeURIComponent(ROOM)}`)).toEqual({
      kind: 'invite',
      room: ROOM,
    })
    for (const url of [
      'parley://room/not-a-room',
      `parley://delete/${encodeURIComponent(ROOM)}`,
      `parley://room/${encodeURIComponent(ROOM)}?x=1`,
      `https://room/${encodeURIComponent(ROOM)}`,
      'parley://room/%E0%A4%A',
      'parley://' + 'a'.repeat(600),
    ])
      expect(parseDeepLink(url), url).toBeNull()
    expect(
      deepLinkFromArgv(['/usr/bin/parley', '--flag', `parley://room/${encodeURIComponent(ROOM)}`]),
    ).toEqual({
      kind: 'room',
      room: ROOM,
    })
  })

  it('finds the link the OS launched the app with in argv, ignoring look-alikes', () => {
    const link = `parley://invite/${encodeURIComponent(ROOM)}`
    expect(deepLinkFromArgv(['C:\\Parley\\Parley.exe', link])).toEqual({ kind: 'invite', room: ROOM })
    expect(deepLinkFromArgv(['/opt/Parley/parley', '--no-sandbox'])).toBeNull()
    expect(deepLinkFromArgv(['/opt/Parley/parley', `--x=${link}`, 'parley://room/bad'])).toBeNull()
  })

  it('keeps links in the inbox until taken, oldest first, bounded, without repeats', () => {
    const inbox = new DeepLinkInbox(3)
    expect(inbox.take()).toEqual([])
    const other = '!BBBBBBBBBBBBBBBBBBBBBB:globex.example'
    inbox.push({ kind: 'room', room: ROOM })
    inbox.push({ kind: 'room', room: ROOM })
    inbox.push({ kind: 'invite', room: ROOM })
    expect(inbox.size).toBe(2)
    expect(inbox.take()).toEqual([
      { kind: 'room', room: ROOM },
      { kind: 'invite', room: ROOM },
    ])
    expect(inbox.take()).toEqual([])
    for (const room of [ROOM, other, ROOM, other]) inbox.push({ kind: 'room', room })
    expect(inbox.take().map((l) => l.room)).toEqual([other, ROOM, other])
  })
})

describe('IPC guard', () => {
  const fromApp = { senderFrame: { url: 'app://parley/', parent: null } }
  it('accepts well-formed calls from the app window', () => {
    expect(checkIpc(IPC.notify, fromApp, ['@bob:globex.example', 'hi'])).toEqual({
      ok: true,
      args: ['@bob:globex.example', 'hi'],
    })
    expect(checkIpc(IPC.setBadge, fromApp, [3])).toMatchObject({ ok: true })
    expect(checkIpc(IPC.cacheKey, fromApp, [])).toEqual({ ok: true, args: [] })
    expect(checkIpc(IPC.takeDeepLinks, fromApp, [])).toEqual({ ok: true, args: [] })
  })
  it('has a schema for every invoke channel, and event channels apart from them', () => {
    expect(Object.keys(IPC_ARGS).sort()).toEqual(Object.values(IPC).sort())
    for (const channel of Object.values(IPC_EVENTS)) expect(Object.values(IPC)).not.toContain(channel)
  })
  it('refuses other senders and malformed arguments', () => {
    expect(
      checkIpc(IPC.notify, { senderFrame: { url: 'https://evil.example/', parent: null } }, ['a', 'b']),
    ).toEqual({
      ok: false,
      reason: 'sender not allowed',
    })
    expect(checkIpc(IPC.notify, { senderFrame: { url: 'app://parley/', parent: {} } }, ['a', 'b']).ok).toBe(
      false,
    )
    expect(checkIpc(IPC.notify, { senderFrame: null }, ['a', 'b']).ok).toBe(false)
    for (const args of [[], ['only one'], ['a', 'b', 'extra'], [1, 2], ['x'.repeat(201), 'b']])
      expect(checkIpc(IPC.notify, fromApp, args).ok, JSON.stringify(args).slice(0, 40)).toBe(false)
    expect(checkIpc(IPC.setBadge, fromApp, [-1]).ok).toBe(false)
    expect(checkIpc(IPC.secretGet, fromApp, ['../etc/passwd']).ok).toBe(false)
    for (const channel of [IPC.cacheKey, IPC.takeDeepLinks]) {
      expect(checkIpc(channel, fromApp, ['extra']).ok, channel).toBe(false)
      expect(checkIpc(channel, { senderFrame: { url: 'https://evil.example/', parent: null } }, []).ok).toBe(
        false,
      )
      expect(checkIpc(channel, { senderFrame: { url: 'app://parley/', parent: {} } }, []).ok).toBe(false)
    }
  })
})

describe('static check of the built shell', () => {
  it('passes on our build and fails on a weakened one', async () => {
    await run(process.execPath, [join(DESKTOP, 'scripts/build-shell.mjs')])
    const ok = await run(process.execPath, [join(DESKTOP, 'scripts/check-shell.mjs')])
    expect(ok.stdout).toContain('no findings')
    // The tray icons: PNGs of the sizes tray-policy.ts expects (IHDR width and height at bytes 16-23).
    for (const [file, size] of [
      ['tray.png', 32],
      ['trayTemplate.png', 16],
      ['trayTemplate@2x.png', 32],
    ] as const) {
      const png = await readBytes(join(DESKTOP, 'dist/main/icons', file))
      expect(png.subarray(0, 8).toString('hex'), file).toBe('89504e470d0a1a0a')
      expect([png.readUInt32BE(16), png.readUInt32BE(20)], file).toEqual([size, size])
    }
    const dir = await mkdtemp(join(tmpdir(), 'parley-shell-'))
    try {
      const bad = join(dir, 'main.cjs')
      await writeFile(
        bad,
        'new BrowserWindow({ webPreferences: { nodeIntegration: true, contextIsolation: false } })',
      )
      const failed = await run(process.execPath, [join(DESKTOP, 'scripts/check-shell.mjs'), bad]).catch(
        (e: { code: number; stderr: string }) => e,
      )
      expect(failed).toMatchObject({ code: 1 })
      expect((failed as { stderr: string }).stderr).toContain('nodeIntegration must stay off')
      // A shell that would put the cache key on disk under a plain-text safeStorage key fails too.
      await writeFile(
        bad,
        (await readBytes(join(DESKTOP, 'dist/main/main.cjs'), 'utf8')) +
          '\nsafeStorage.setUsePlainTextEncryption(true)',
      )
      const plain = await run(process.execPath, [join(DESKTOP, 'scripts/check-shell.mjs'), bad]).catch(
        (e: { code: number; stderr: string }) => e,
      )
      expect(plain).toMatchObject({ code: 1 })
      expect((plain as { stderr: string }).stderr).toContain('plain-text key')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe('electron-builder.yml', () => {
  it('targets every platform, sets the fuses, and shares the app id with notifications', async () => {
    const { parse } = await import('yaml')
    const { readFile } = await import('node:fs/promises')
    const text = await readFile(join(DESKTOP, '..', 'electron-builder.yml'), 'utf8')
    const config = parse(text) as Record<string, unknown>
    expect(config.win).toMatchObject({ target: ['nsis'] })
    expect(config.mac).toMatchObject({ target: ['dmg', 'zip'] })
    expect(config.linux).toMatchObject({ target: ['AppImage', 'deb'] })
    expect(config.electronFuses).toMatchObject({
      runAsNode: false,
      enableCookieEncryption: true,
      onlyLoadAppFromAsar: true,
      enableEmbeddedAsarIntegrityValidation: true,
    })
    const main = await readFile(join(DESKTOP, 'src/main/main.ts'), 'utf8')
    expect(main).toContain(`app.setAppUserModelId('${String(config.appId)}')`)
  })
})
