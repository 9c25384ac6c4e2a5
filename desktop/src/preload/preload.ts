/**
 * Preload (sandboxed renderer, isolated world): the only bridge between the page and the main process.
 * It exposes one object, `window.parleyDesktop` (the renderer's DesktopApi), whose methods invoke the
 * fixed IPC channels; no Electron or Node object ever reaches the page, and what main returns is checked
 * again before the page sees it.
 */
import { contextBridge, ipcRenderer } from 'electron'
import { NOTIFY_BODY_MAX, NOTIFY_TITLE_MAX, clip, isCacheKey } from '../shared/bridge-values.ts'
import { IPC, IPC_EVENTS } from '../shared/ipc-channels.ts'
import { createDeepLinkRelay } from './deep-link-relay.ts'

const onDeepLink = createDeepLinkRelay({
  // The event carries nothing: the listener gets no IpcRendererEvent to leak.
  onAnnounce: (announced) => void ipcRenderer.on(IPC_EVENTS.deepLink, () => announced()),
  take: () => ipcRenderer.invoke(IPC.takeDeepLinks),
})

/** Fire-and-forget calls: a refusal by main is not the page's problem (and must not go unhandled). */
const send = (channel: string, ...args: unknown[]) =>
  void ipcRenderer.invoke(channel, ...args).catch(() => {})

contextBridge.exposeInMainWorld('parleyDesktop', {
  platform: 'desktop',
  // Cut to what main accepts (shared/desktop-api.ts): a long message still notifies, shortened.
  notify: (title: string, body: string) =>
    send(IPC.notify, clip(String(title), NOTIFY_TITLE_MAX), clip(String(body), NOTIFY_BODY_MAX)),
  setBadge: (count: number) => send(IPC.setBadge, Number(count)),
  openExternal: (url: string) => send(IPC.openExternal, String(url)),
  secretGet: (key: string) => ipcRenderer.invoke(IPC.secretGet, String(key)) as Promise<string | null>,
  secretSet: (key: string, value: string) => ipcRenderer.invoke(IPC.secretSet, String(key), String(value)),
  cacheKey: async (): Promise<string | null> => {
    const key: unknown = await ipcRenderer.invoke(IPC.cacheKey)
    return isCacheKey(key) ? key : null
  },
  onDeepLink,
})
