// Svelte 5 with runes; TypeScript in <script lang="ts"> via the vite plugin's preprocessing.
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte'

export default {
  preprocess: vitePreprocess(),
  compilerOptions: { runes: true, css: 'external' },
}
