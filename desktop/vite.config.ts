/** Builds the renderer (Svelte 5) into dist/web: the web client, and the UI the Electron shell loads. */
import { fileURLToPath } from 'node:url'
import { svelte } from '@sveltejs/vite-plugin-svelte'
import { defineConfig } from 'vite'

export default defineConfig({
  root: fileURLToPath(new URL('./src/renderer', import.meta.url)),
  base: './',
  plugins: [svelte()],
  build: {
    outDir: fileURLToPath(new URL('./dist/web', import.meta.url)),
    emptyOutDir: true,
    // Svelte's component styles go to a CSS file: the CSP allows no inline styles.
    cssCodeSplit: false,
    // Assets stay files: the CSP's img-src allows 'self' and blob:, not data: URIs.
    assetsInlineLimit: 0,
    target: 'es2022',
  },
})
