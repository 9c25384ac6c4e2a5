/**
 * Entry of the renderer: clears what older versions left in plaintext, opens the encrypted local cache
 * with the platform's key, then mounts the app with the platform's DesktopApi (the Electron
 * preload's, or the browser's in web mode).
 */
import './lib/zod-config.ts'
import { mount } from 'svelte'
import App from './App.svelte'
import { forgetLegacyStorage, openAppStore } from './lib/cache/open-store.ts'
import { platformDesktopApi } from './lib/desktop-api.ts'
import './app.css'

const desktop = platformDesktopApi()

void forgetLegacyStorage(localStorage)
  .catch(() => {})
  .then(() => openAppStore(desktop))
  .then(({ store, persistent }) =>
    mount(App, { target: document.getElementById('app')!, props: { desktop, store, persistent } }),
  )
