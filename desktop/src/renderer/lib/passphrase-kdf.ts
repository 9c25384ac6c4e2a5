/**
 * The renderer's {@link PassphraseKdf}: each derivation in a fresh Web Worker (lib/kdf.worker.ts),
 * ended as soon as it answers, so its memory (128 MiB by default) is given back at once.
 */
import type { PassphraseKdf } from '@parley/protocol/client'
import { e2e } from '@parley/protocol/crypto'

export function workerPassphraseKdf(): PassphraseKdf {
  return {
    derive(passphrase, params) {
      // Checked before a worker and its memory are spent on it.
      const checked = e2e.parsePassphraseKdfParams(params)
      return new Promise<Uint8Array>((resolve, reject) => {
        const worker = new Worker(new URL('./kdf.worker.ts', import.meta.url), { type: 'module' })
        worker.onmessage = (event: MessageEvent<{ ok: boolean; key?: Uint8Array; error?: string }>) => {
          worker.terminate()
          const { ok, key, error } = event.data
          if (ok && key instanceof Uint8Array && key.length === 32) resolve(key)
          else reject(new e2e.E2eError('bad_input', error ?? 'argon2id failed'))
        }
        worker.onerror = (event) => {
          worker.terminate()
          reject(new Error(event.message || 'the key derivation worker failed'))
        }
        worker.postMessage({ passphrase, params: checked })
      })
    },
  }
}
