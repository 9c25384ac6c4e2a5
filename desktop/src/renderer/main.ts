/**
 * Entry of the renderer: opens the encrypted local cache with the platform's key, then mounts the app
 * with the platform's DesktopApi (the Electron preload's, or the browser's in web mode).
 */
import './lib/zod-config.ts'
import { mount } from 'svelte'
import App from './App.svelte'
import type { AppStore } from './lib/chat.svelte.ts'
import { EncryptedStore } from './lib/cache/encrypted-store.ts'
import { MemoryAppStore } from './lib/cache/memory-store.ts'
import { platformDesktopApi } from './lib/desktop-api.ts'
import './app.css'

const desktop = platformDesktopApi()

async function openStore(): Promise<AppStore> {
  try {
    return await EncryptedStore.open(() => desktop.cacheKey())
  } catch (error) {
    console.warn('local cache unavailable, nothing will be kept across restarts:', String(error))
    return new MemoryAppStore()
  }
}

void openStore().then((store) =>
  mount(App, { target: document.getElementById('app')!, props: { desktop, store } }),
)
