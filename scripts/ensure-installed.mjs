// Lets `npm start` and `npm test` work on a fresh clone: installs dependencies once if they are missing.
import { existsSync } from 'node:fs'
import { execSync } from 'node:child_process'

if (!existsSync(new URL('../node_modules/.package-lock.json', import.meta.url))) {
  console.log('node_modules missing: running npm ci (first run only)')
  execSync('npm ci', { stdio: 'inherit', env: { ...process.env, ELECTRON_SKIP_BINARY_DOWNLOAD: '1' } })
}
