/**
 * argon2id of one passphrase, in a Web Worker (E2E.md section 2.5: "run in a Worker"): up to about a
 * second and 128 MiB (by default) that must not freeze the window. The same derivation as the crypto core's
 * `derivePassphraseKey` (it is that function); the parameters were checked by the caller.
 */
import { e2e, sodiumReady } from '@parley/protocol/crypto'

interface Request {
  readonly passphrase: string
  readonly params: e2e.PassphraseKdfParams
}

self.onmessage = async (event: MessageEvent<Request>) => {
  try {
    await sodiumReady()
    const key = e2e.derivePassphraseKey(event.data.passphrase, event.data.params)
    self.postMessage({ ok: true, key }, { transfer: [key.buffer] })
  } catch (error) {
    self.postMessage({ ok: false, error: error instanceof Error ? error.message : String(error) })
  }
}
