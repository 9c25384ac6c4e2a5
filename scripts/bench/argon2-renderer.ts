/**
 * argon2id in Chromium (E2E.md section 3 row 19: unlock within 1.5 s): the libsodium build the app
 * ships (libsodium-wrappers-sumo, WebAssembly), in a fresh page per measurement, as the app's Web
 * Worker is fresh per derivation (lib/passphrase-kdf.ts). Each sample is what a user waits for:
 * loading libsodium, then one derivation (its first run also grows the WebAssembly memory).
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { CHROMIUM, CHROMIUM_ARGS } from './desktop-browser.ts'

/** The ESM builds the app bundles, from the root node_modules (both packages export no package.json). */
const MODULES = fileURLToPath(new URL('../../node_modules/', import.meta.url))
const WRAPPERS = join(MODULES, 'libsodium-wrappers-sumo/dist/modules-sumo-esm/libsodium-wrappers.mjs')
const SUMO = join(MODULES, 'libsodium-sumo/dist/modules-sumo-esm/libsodium-sumo.mjs')

const PAGE = `<!doctype html><script type="importmap">{"imports":{"libsodium-sumo":"/sumo.mjs"}}</script>
<script type="module">
const t0 = performance.now()
const { default: sodium } = await import('/wrappers.mjs')
await sodium.ready
const [ops, mib] = location.hash.slice(1).split('/').map(Number)
sodium.crypto_pwhash(32, 'a bench pass phrase', new Uint8Array(16), ops, mib * 1024 * 1024, sodium.crypto_pwhash_ALG_ARGON2ID13)
window.benchResult = Math.round(performance.now() - t0)
</script>`

/** Milliseconds per sample (libsodium load + one derivation) for each `[opslimit, MiB]`. */
export async function argon2InRenderer(
  costs: ReadonlyArray<readonly [number, number]>,
  samples: number,
): Promise<Array<{ opslimit: number; mib: number; ms: number[] }>> {
  const files: Record<string, string> = { '/wrappers.mjs': WRAPPERS, '/sumo.mjs': SUMO }
  const server = createServer((req, res) => {
    if (req.url === '/') {
      res.setHeader('content-type', 'text/html')
      res.end(PAGE)
      return
    }
    const file = files[req.url ?? '']
    if (!file) {
      res.statusCode = 404
      res.end()
      return
    }
    res.setHeader('content-type', 'text/javascript')
    res.end(readFileSync(file))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
  try {
    const out: Array<{ opslimit: number; mib: number; ms: number[] }> = []
    for (const [opslimit, mib] of costs) {
      const times: number[] = []
      for (let i = 0; i < samples; i++) {
        const page = await browser.newPage()
        await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/#${opslimit}/${mib}`)
        await page.waitForFunction(() => (window as unknown as { benchResult?: number }).benchResult, null, {
          timeout: 120_000,
        })
        times.push(await page.evaluate(() => (window as unknown as { benchResult: number }).benchResult))
        await page.close()
      }
      out.push({ opslimit, mib, ms: times })
    }
    return out
  } finally {
    await browser.close()
    server.close()
  }
}
