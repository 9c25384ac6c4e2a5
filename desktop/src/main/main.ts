/**
 * The Electron main process: one sandboxed window on `app://parley/`, every policy of main/*.ts
 * applied (navigation, new windows, permissions, IPC checks), secrets and the cache key in safeStorage,
 * notifications, badge and tray, minimise-to-tray, the spellcheck context menu, single-instance lock and
 * `parley://` deep links. The logic lives in the plain modules next to it, which have unit tests; this
 * file only wires them to Electron.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  app,
  BrowserWindow,
  clipboard,
  ipcMain,
  Menu,
  Notification,
  powerMonitor,
  protocol,
  safeStorage,
  session,
  shell,
  Tray,
} from 'electron'
import { IPC, IPC_EVENTS, type IpcChannel } from '../shared/desktop-api.ts'
import { APP_CSP, resolveAppFile } from './app-protocol.ts'
import { cacheKeyProvider, keychainUsable } from './cache-key.ts'
import { contextMenuTemplate } from './context-menu.ts'
import { deepLinkFromArgv, DeepLinkInbox, parseDeepLink, type DeepLink } from './deep-links.ts'
import { checkIpc } from './ipc-guard.ts'
import { APP_ORIGIN, externalUrl, mayNavigate } from './navigation.ts'
import { permissionAllowed } from './permissions.ts'
import { SecretStore } from './secret-store.ts'
import { closeAction, trayIconFile, trayMenuTemplate, trayTooltip } from './tray-policy.ts'
import { windowOptions } from './window-options.ts'

const RENDERER = join(__dirname, '..', 'web')
let window: BrowserWindow | null = null
let tray: Tray | null = null
/** Set once the app is really quitting, so that closing the window no longer hides it to the tray. */
let quitting = false

protocol.registerSchemesAsPrivileged([
  { scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } },
])

// A second instance hands its argv (with any link) to the first through `second-instance` and quits.
const primary = app.requestSingleInstanceLock()
if (!primary) app.quit()
app.setAsDefaultProtocolClient('parley')
app.setAppUserModelId('example.parley.desktop')

/**
 * Deep links wait in main until the renderer pulls them (see DeepLinkInbox for why not push). On
 * Windows and Linux the OS starts the app with the link in argv; macOS sends `open-url`, possibly
 * before `ready`, which is why these listeners are registered at load.
 */
const deepLinks = new DeepLinkInbox()
const launchLink = deepLinkFromArgv(process.argv.slice(1))
if (launchLink) deepLinks.push(launchLink)

app.on('second-instance', (_event, argv) => {
  const link = deepLinkFromArgv(argv)
  if (link) deliverLink(link)
  showWindow()
})
app.on('open-url', (event, url) => {
  event.preventDefault()
  const link = parseDeepLink(url)
  if (link) deliverLink(link)
  showWindow()
})

function deliverLink(link: DeepLink): void {
  deepLinks.push(link)
  // Only an announcement: a page that is not listening (yet) loses nothing.
  window?.webContents.send(IPC_EVENTS.deepLink)
}

function showWindow(): void {
  if (!window) return
  if (window.isMinimized()) window.restore()
  window.show()
  window.focus()
}

const secrets = new SecretStore(join(app.getPath('userData'), 'secrets.json'), {
  encrypt: (plain) => safeStorage.encryptString(plain),
  decrypt: (cipher) => safeStorage.decryptString(cipher),
})
const cacheKey = cacheKeyProvider(secrets, () =>
  keychainUsable({
    encryptionAvailable: safeStorage.isEncryptionAvailable(),
    platform: process.platform,
    linuxBackend: process.platform === 'linux' ? safeStorage.getSelectedStorageBackend() : undefined,
  }),
)

function handle<C extends IpcChannel>(channel: C, run: (...args: never[]) => unknown): void {
  ipcMain.handle(channel, (event, ...args: unknown[]) => {
    const checked = checkIpc(channel, event, args)
    if (!checked.ok) throw new Error(`refused: ${checked.reason}`)
    return (run as (...a: unknown[]) => unknown)(...(checked.args as unknown[]))
  })
}

function createTray(): void {
  try {
    tray = new Tray(join(__dirname, 'icons', trayIconFile(process.platform)))
  } catch {
    return // no tray: closing the window quits (closeAction), as there would be no way back
  }
  tray.setToolTip(trayTooltip(0))
  tray.setContextMenu(Menu.buildFromTemplate(trayMenuTemplate({ show: showWindow, quit: () => app.quit() })))
  // Windows and most Linux trays; on macOS a click opens the menu instead, as menu bar extras do.
  tray.on('click', showWindow)
}

async function createWindow(): Promise<void> {
  const win = new BrowserWindow(windowOptions(join(__dirname, '..', 'preload', 'preload.cjs')))
  window = win
  const contents = win.webContents
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
  contents.on('context-menu', (_event, params) => {
    const template = contextMenuTemplate(params, {
      replaceMisspelling: (word) => contents.replaceMisspelling(word),
      addToDictionary: (word) => void contents.session.addWordToSpellCheckerDictionary(word),
      copyText: (text) => clipboard.writeText(text),
    })
    if (template.length > 0) Menu.buildFromTemplate(template).popup({ window: win })
  })
  win.on('close', (event) => {
    if (closeAction({ quitting, hasTray: tray !== null, platform: process.platform }) === 'close') return
    event.preventDefault()
    // A hidden full-screen window would leave an empty space on macOS: leave full screen first.
    if (win.isFullScreen()) {
      win.once('leave-full-screen', () => win.hide())
      win.setFullScreen(false)
    } else win.hide()
  })
  // Windows logs off or shuts down without `before-quit`: the window must not stand in the way.
  win.on('session-end', () => {
    quitting = true
  })
  win.on('closed', () => {
    if (window === win) window = null
  })
  win.once('ready-to-show', () => win.show())
  await win.loadURL(`${APP_ORIGIN}/`)
}

// Tray Quit, Cmd+Q, the dock's Quit and macOS shutdown all pass here before any window is closed. (Not
// so autoUpdater.quitAndInstall, which closes windows first: an updater must set `quitting` itself.)
app.on('before-quit', () => {
  quitting = true
})

void app.whenReady().then(async () => {
  if (!primary) return
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
  handle(IPC.setBadge, (count: number) => {
    app.setBadgeCount(count)
    tray?.setToolTip(trayTooltip(count))
  })
  handle(IPC.openExternal, (url: string) => {
    const external = externalUrl(url)
    if (external) void shell.openExternal(external)
  })
  handle(IPC.secretGet, (key: string) => secrets.get(key))
  handle(IPC.secretSet, (key: string, value: string) => secrets.set(key, value))
  handle(IPC.cacheKey, () => cacheKey())
  handle(IPC.takeDeepLinks, () => deepLinks.take())
  // Linux and macOS shutdown: quit properly instead of hiding to the tray.
  powerMonitor.on('shutdown', () => {
    quitting = true
    app.quit()
  })
  app.on('activate', showWindow) // macOS: a click on the dock icon brings the hidden window back
  createTray()
  await createWindow()
})

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit()
})
