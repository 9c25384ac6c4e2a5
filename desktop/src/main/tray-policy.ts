/**
 * Main process. Minimise-to-tray as decisions, without Electron: what closing the window does, the tray
 * menu, its tooltip and icon. main.ts wires them to BrowserWindow and Tray.
 */
import type { MenuItemSpec } from './menu-item.ts'
import { SEPARATOR } from './menu-item.ts'

export interface CloseState {
  /** Set by `before-quit` (tray Quit, Cmd+Q, the dock's Quit, macOS shutdown) and by OS session end. */
  readonly quitting: boolean
  /** Whether we created a tray icon to come back from. */
  readonly hasTray: boolean
  readonly platform: NodeJS.Platform
}

/**
 * What the window's `close` event does: `hide` (prevent it; the app keeps running for notifications and
 * the badge) or `close` (let it, so the app can quit).
 */
export function closeAction(state: CloseState): 'hide' | 'close' {
  if (state.quitting) return 'close'
  // macOS convention: closing a window never quits; the dock icon brings it back (`activate`).
  if (state.platform === 'darwin') return 'hide'
  // Without a tray there would be no way back to a hidden window: close, and quit with it.
  return state.hasTray ? 'hide' : 'close'
}

export interface TrayActions {
  show(): void
  quit(): void
}

export function trayMenuTemplate(actions: TrayActions): MenuItemSpec[] {
  return [
    { label: 'Show Parley', click: () => actions.show() },
    SEPARATOR,
    { label: 'Quit Parley', click: () => actions.quit() },
  ]
}

/** The tray tooltip, with the unread count the renderer sets as the badge. */
export function trayTooltip(unread: number): string {
  if (!Number.isInteger(unread) || unread <= 0) return 'Parley'
  return `Parley: ${unread} unread`
}

/**
 * The icon file (build-shell.mjs draws them into dist/main/icons). macOS gets a template image, which
 * the menu bar tints for light and dark (`Template` suffix; `@2x` is picked up automatically).
 */
export function trayIconFile(platform: NodeJS.Platform): string {
  return platform === 'darwin' ? 'trayTemplate.png' : 'tray.png'
}
