/**
 * The Electron main process: one sandboxed window on `app://parley/`, every policy of main/*.ts
 * applied (navigation, new windows, permissions, IPC checks), secrets in safeStorage, notifications,
 * badge, single-instance lock and `parley://` deep links. The logic lives in the plain modules next
 * to it, which have unit tests; this file only wires them to Electron.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { app, BrowserWindow, ipcMain, Notification, protocol, safeStorage, session, shell } from 'electron'
import { IPC, type IpcChannel } from '../shared/desktop-api.ts'
import { APP_CSP, resolveAppFile } from './app-protocol.ts'
import { deepLinkFromArgv, parseDeepLink, type DeepLink } from './deep-links.ts'
import { checkIpc } from './ipc-guard.ts'
import { APP_ORIGIN, externalUrl, mayNavigate } from './navigation.ts'
import { permissionAllowed } from './permissions.ts'
import { windowOptions } from './window-options.ts'

const RENDERER = join(__dirname, '..', 'web')
let window: BrowserWindow | null = null
let pendingLink: DeepLink | null = null

protocol.registerSchemesAsPrivileged([
  { scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } },
])

if (!app.requestSingleInstanceLock()) app.quit()
app.setAsDefaultProtocolClient('parley')
app.setAppUserModelId('example.parley.desktop')

app.on('second-instance', (_event, argv) => {
  const link = deepLinkFromArgv(argv)
  if (link) deliverLink(link)
  if (window) {
    if (window.isMinimized()) window.restore()
    window.focus()
  }
})
app.on('open-url', (event, url) => {
  event.preventDefault()
  const link = parseDeepLink(url)
  if (link) deliverLink(link)
})

function deliverLink(link: DeepLink): void {
  if (window) window.webContents.send('parley:deep-link', link)
  else pendingLink = link
}

/**
 * Secrets (the homeserver session, the cache key), encrypted with the OS keychain (safeStorage) and
 * kept in one file of the user-data directory: base64 ciphertexts only, never plaintext on disk.
 */
const secrets = new Map<string, string>()
const secretsFile = () => join(app.getPath('userData'), 'secrets.json')

async function loadSecrets(): Promise<void> {
  try {
    const stored = JSON.parse(await readFile(secretsFile(), 'utf8')) as unknown
    if (stored && typeof stored === 'object')
      for (const [k, v] of Object.entries(stored)) if (typeof v === 'string') secrets.set(k, v)
  } catch {
    // First start, or an unreadable file: start empty (the user signs in again).
  }
}

function handle<C extends IpcChannel>(channel: C, run: (...args: never[]) => unknown): void {
  ipcMain.handle(channel, (event, ...args: unknown[]) => {
    const checked = checkIpc(channel, event, args)
    if (!checked.ok) throw new Error(`refused: ${checked.reason}`)
    return (run as (...a: unknown[]) => unknown)(...(checked.args as unknown[]))
  })
}

async function createWindow(): Promise<void> {
  window = new BrowserWindow(windowOptions(join(__dirname, '..', 'preload', 'preload.cjs')))
  const contents = window.webContents
  contents.on('will-navigate', (event, url) => {
    if (!mayNavigate(url)) event.preventDefault()
  })
  contents.on('will-redirect', (event, url) => {
    if (!mayNavigate(url)) event.preventDefault()
  })
  contents.setWindowOpenHandler(({ url }) => {
    const external = externalUrl(url)
    if (external) void shell.openExternal(external)
    return { action: 'deny' }
  })
  contents.on('will-attach-webview', (event) => event.preventDefault())
  window.once('ready-to-show', () => window?.show())
  await window.loadURL(`${APP_ORIGIN}/`)
  if (pendingLink) deliverLink(pendingLink)
}

void app.whenReady().then(async () => {
  protocol.handle('app', async (request) => {
    const file = resolveAppFile(RENDERER, request.url)
    if (!file) return new Response('not found', { status: 404 })
    const body = await readFile(file.path)
    return new Response(body, { headers: { 'content-type': file.type, 'content-security-policy': APP_CSP } })
  })
  session.defaultSession.setPermissionRequestHandler((contents, permission, callback) =>
    callback(permissionAllowed(permission, contents.getURL())),
  )
  session.defaultSession.setPermissionCheckHandler((_contents, permission, origin) =>
    permissionAllowed(permission, origin),
  )
  handle(IPC.notify, (title: string, body: string) => {
    if (window?.isFocused()) return
    new Notification({ title, body }).show()
  })
  handle(IPC.setBadge, (count: number) => app.setBadgeCount(count))
  handle(IPC.openExternal, (url: string) => {
    const external = externalUrl(url)
    if (external) void shell.openExternal(external)
  })
  handle(IPC.secretGet, (key: string) => {
    const stored = secrets.get(key)
    return stored === undefined ? null : safeStorage.decryptString(Buffer.from(stored, 'base64'))
  })
  handle(IPC.secretSet, async (key: string, value: string) => {
    secrets.set(key, safeStorage.encryptString(value).toString('base64'))
    await writeFile(secretsFile(), JSON.stringify(Object.fromEntries(secrets)), { mode: 0o600 })
  })
  await loadSecrets()
  await createWindow()
})

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit()
})
