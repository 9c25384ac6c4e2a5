// A static security check of the built Electron main and preload (in the spirit of electronegativity):
// fails on settings and calls that would weaken the sandbox. Run after build-shell.mjs.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const RULES = [
  [/nodeIntegration\s*:\s*true/, 'nodeIntegration must stay off'],
  [/nodeIntegrationInWorker\s*:\s*true/, 'nodeIntegrationInWorker must stay off'],
  [/contextIsolation\s*:\s*false/, 'contextIsolation must stay on'],
  [/sandbox\s*:\s*false/, 'the renderer must be sandboxed'],
  [/webSecurity\s*:\s*false/, 'webSecurity must stay on'],
  [/allowRunningInsecureContent\s*:\s*true/, 'no insecure content'],
  [/webviewTag\s*:\s*true/, 'no <webview>'],
  [/enableRemoteModule/, 'no remote module'],
  [/experimentalFeatures\s*:\s*true/, 'no experimental features'],
  [/\bdisableBlinkFeatures\b|\benableBlinkFeatures\b/, 'no Blink feature switches'],
  [/setPermissionRequestHandler\(\s*null/, 'a permission handler is required'],
  [/\.openExternal\((?![^)]*external)/, 'openExternal only with a URL checked by externalUrl()'],
  [/exposeInMainWorld\([^)]*ipcRenderer\s*[,)]/, 'never expose ipcRenderer itself'],
  [/\beval\(|new Function\(/, 'no eval'],
  [/setUsePlainTextEncryption\(\s*true/, 'safeStorage must not fall back to a plain-text key'],
]
const REQUIRED = [
  [/setWindowOpenHandler/, 'window.open must be handled (denied)'],
  [/will-navigate/, 'navigation must be guarded'],
  [/setPermissionRequestHandler/, 'permission requests must be handled'],
  [/setPermissionCheckHandler/, 'permission checks must be handled'],
  [/requestSingleInstanceLock/, 'single-instance lock'],
  [/isEncryptionAvailable\(\)/, 'the cache key needs safeStorage encryption'],
  [/getSelectedStorageBackend\(\)/, 'no cache key on a basic_text (no keyring) backend'],
]
let failed = 0
// Files to check: the arguments (absolute or relative to desktop/), else the built main and preload.
const files =
  process.argv.length > 2 ? process.argv.slice(2) : ['dist/main/main.cjs', 'dist/preload/preload.cjs']
for (const file of files) {
  const text = await readFile(file.startsWith('/') ? file : root + file, 'utf8')
  for (const [pattern, why] of RULES)
    if (pattern.test(text)) {
      console.error(`${file}: ${why} (${pattern})`)
      failed++
    }
  if (file.includes('main'))
    for (const [pattern, why] of REQUIRED)
      if (!pattern.test(text)) {
        console.error(`${file}: missing: ${why}`)
        failed++
      }
}
if (failed > 0) process.exit(1)
console.log('shell static check: no findings')
