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
  /**
   * The key that encrypts the local cache: 32 random bytes as base64url, created by the shell on first
   * use and kept in the OS keychain (`safeStorage`). `null` in web mode, where the cache key lives in
   * the browser profile instead (clearly weaker: see docs/desktop.md).
   */
  cacheKey(): Promise<string | null>
  /** Calls `listener` for each `parley://` link the OS opens the app with; returns the unsubscribe. */
  onDeepLink(listener: (link: DeepLink) => void): () => void
}

/** A parsed `parley://` link (parsed and validated by the shell before it reaches the renderer). */
export interface DeepLink {
  readonly kind: 'room' | 'invite'
  readonly room: string
}

/**
 * The platform's API: the one the Electron preload exposes on `window.parleyDesktop` (tests inject a
 * recording one the same way) over the browser's, so that a partial one falls back per method.
 */
export function platformDesktopApi(): DesktopApi {
  const exposed = (globalThis as { parleyDesktop?: Partial<DesktopApi> }).parleyDesktop
  return { ...webDesktopApi(), ...exposed }
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
    cacheKey: async () => null,
    onDeepLink: () => () => {},
  }
}
