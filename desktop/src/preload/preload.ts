/**
 * Preload (sandboxed renderer, isolated world): the only bridge between the page and the main process.
 * It exposes one object, `window.parleyDesktop` (the renderer's DesktopApi), whose methods invoke the
 * fixed IPC channels; no Electron or Node object ever reaches the page, and what main returns is checked
 * again before the page sees it.
 */
import { contextBridge, ipcRenderer } from 'electron'
import { isCacheKey } from '../shared/bridge-values.ts'
import { IPC, IPC_EVENTS } from '../shared/ipc-channels.ts'
import { createDeepLinkRelay } from './deep-link-relay.ts'

const onDeepLink = createDeepLinkRelay({
  // The event carries nothing: the listener gets no IpcRendererEvent to leak.
  onAnnounce: (announced) => void ipcRenderer.on(IPC_EVENTS.deepLink, () => announced()),
  take: () => ipcRenderer.invoke(IPC.takeDeepLinks),
})

contextBridge.exposeInMainWorld('parleyDesktop', {
  platform: 'desktop',
  notify: (title: string, body: string) => void ipcRenderer.invoke(IPC.notify, String(title), String(body)),
  setBadge: (count: number) => void ipcRenderer.invoke(IPC.setBadge, Number(count)),
  openExternal: (url: string) => void ipcRenderer.invoke(IPC.openExternal, String(url)),
  secretGet: (key: string) => ipcRenderer.invoke(IPC.secretGet, String(key)) as Promise<string | null>,
  secretSet: (key: string, value: string) => ipcRenderer.invoke(IPC.secretSet, String(key), String(value)),
  cacheKey: async (): Promise<string | null> => {
    const key: unknown = await ipcRenderer.invoke(IPC.cacheKey)
    return isCacheKey(key) ? key : null
  },
  onDeepLink,
})
