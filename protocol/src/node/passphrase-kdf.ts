/**
 * The Node.js {@link PassphraseKdf}: argon2id in a `worker_threads` Worker, so a 0.3-2.5 s key
 * derivation (E2E.md section 2.5, "run in a Worker") never blocks the caller's event loop. Runs in Node
 * only (CLIs, bots, tests); the desktop renderer supplies its own Web Worker implementation.
 */
import { Worker } from 'node:worker_threads'
import type { PassphraseKdf } from '../client/e2e/key-backup.ts'
import * as e2e from '../crypto/e2e/index.ts'
import { fromBase64Url } from '../encoding.ts'

const WORKER_URL = new URL('./passphrase-kdf-worker.mjs', import.meta.url)

/** A {@link PassphraseKdf} that runs each derivation in a fresh worker thread (E2E.md section 2.5). */
export function nodePassphraseKdf(): PassphraseKdf {
  return {
    derive(passphrase, params) {
      if (typeof passphrase !== 'string' || passphrase.length === 0)
        return Promise.reject(new e2e.E2eError('bad_input', 'passphrase must be a non-empty string'))
      let checked: e2e.PassphraseKdfParams
      try {
        // Checked here, before a thread and up to 1 GiB are spent on it.
        checked = e2e.parsePassphraseKdfParams(params)
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)))
      }
      return new Promise<Uint8Array>((resolve, reject) => {
        const worker = new Worker(WORKER_URL, {
          workerData: {
            passphrase,
            salt: fromBase64Url(checked.salt),
            opslimit: checked.opslimit,
            memlimit: checked.memlimit,
          },
        })
        let settled = false
        worker.once('message', (message: { ok: boolean; key?: Uint8Array; error?: string }) => {
          settled = true
          if (message.ok && message.key instanceof Uint8Array && message.key.length === 32)
            resolve(message.key)
          else reject(new e2e.E2eError('bad_input', 'argon2id failed (out of memory?)'))
        })
        worker.once('error', (error) => {
          settled = true
          reject(error)
        })
        worker.once('exit', (code) => {
          if (!settled) reject(new Error(`passphrase KDF worker exited with code ${code}`))
        })
      })
    },
  }
}
