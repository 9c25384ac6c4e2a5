/**
 * The preload: the only bridge between the sandboxed renderer and the main process. It exposes one
 * object, `window.parleyDesktop`, whose methods invoke the fixed IPC channels; no Electron or Node
 * object ever reaches the page.
 */
import { contextBridge, ipcRenderer } from 'electron'
import { IPC } from '../shared/ipc-channels.ts'

contextBridge.exposeInMainWorld('parleyDesktop', {
  platform: 'desktop',
  notify: (title: string, body: string) => void ipcRenderer.invoke(IPC.notify, String(title), String(body)),
  setBadge: (count: number) => void ipcRenderer.invoke(IPC.setBadge, Number(count)),
  openExternal: (url: string) => void ipcRenderer.invoke(IPC.openExternal, String(url)),
  secretGet: (key: string) => ipcRenderer.invoke(IPC.secretGet, String(key)) as Promise<string | null>,
  secretSet: (key: string, value: string) => ipcRenderer.invoke(IPC.secretSet, String(key), String(value)),
})
