/**
 * IPC channel names of the DesktopApi (shared by preload and main; the argument schemas of the invoke
 * channels live in desktop-api.ts). Runs in both processes: imports neither Electron nor the DOM.
 */

/** Renderer -> main, `ipcRenderer.invoke`: every one has an argument schema in IPC_ARGS. */
export const IPC = {
  notify: 'parley:notify',
  setBadge: 'parley:set-badge',
  openExternal: 'parley:open-external',
  secretGet: 'parley:secret-get',
  secretSet: 'parley:secret-set',
  cacheKey: 'parley:cache-key',
  takeDeepLinks: 'parley:take-deep-links',
} as const

/** Main -> renderer, `webContents.send`: no arguments cross these; the preload pulls what they announce. */
export const IPC_EVENTS = {
  /** `parley://` links are waiting in main: the preload takes them with `IPC.takeDeepLinks`. */
  deepLink: 'parley:deep-link',
} as const
