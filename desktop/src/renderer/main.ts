/** Entry of the renderer: mounts the app with the platform's DesktopApi (web here; Electron's preload later). */
import './lib/zod-config.ts'
import { mount } from 'svelte'
import App from './App.svelte'
import { platformDesktopApi } from './lib/desktop-api.ts'
import './app.css'

mount(App, { target: document.getElementById('app')!, props: { desktop: platformDesktopApi() } })
