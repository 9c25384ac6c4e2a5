// Builds the Electron main process and preload (TypeScript) into dist/main and dist/preload as
// CommonJS bundles; `electron` stays external. The renderer is built by vite into dist/web.
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['electron'],
  absWorkingDir: root,
  logLevel: 'warning',
}
await build({ ...common, entryPoints: ['src/main/main.ts'], outfile: 'dist/main/main.cjs' })
await build({ ...common, entryPoints: ['src/preload/preload.ts'], outfile: 'dist/preload/preload.cjs' })
