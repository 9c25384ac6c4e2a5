/**
 * What the renderer asks of its platform (DESIGN.md section 9): one typed API. The Electron preload
 * provides it over IPC; in a browser, {@link webDesktopApi} does what a web page can.
 */
export interface DesktopApi {
  /** `desktop` (Electron shell) or `web`. */
  readonly platform: 'desktop' | 'web'
  /** An OS notification (mentions and DMs, not for the room on screen). */
  notify(title: string, body: string): void
  /** The unread count on the dock / taskbar / tab title. */
  setBadge(count: number): void
}

/**
 * The platform's API: the one the Electron preload exposes on `window.parleyDesktop` (tests inject a
 * recording one the same way), else the browser's.
 */
export function platformDesktopApi(): DesktopApi {
  const exposed = (globalThis as { parleyDesktop?: DesktopApi }).parleyDesktop
  return exposed ?? webDesktopApi()
}

/** The browser's version: notifications only if the user allowed them, the badge in the tab title. */
export function webDesktopApi(): DesktopApi {
  return {
    platform: 'web',
    notify(title, body) {
      if (typeof Notification !== 'undefined' && Notification.permission === 'granted')
        new Notification(title, { body })
    },
    setBadge(count) {
      document.title = count > 0 ? `(${count}) Parley` : 'Parley'
    },
  }
}
