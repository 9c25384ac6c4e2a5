// Runs in a worker thread (see passphrase-kdf.ts): argon2id of one passphrase, off the caller's
// event loop. The same computation as crypto/e2e/backup.ts `derivePassphraseKey` (NFKC, UTF-8,
// crypto_pwhash ALG_ARGON2ID13, 32 bytes); passphrase-kdf.test.ts checks that both agree. Parameters
// were checked by the caller before the worker started.
import { parentPort, workerData } from 'node:worker_threads'
import sodium from 'libsodium-wrappers-sumo'

await sodium.ready
const { passphrase, salt, opslimit, memlimit } = workerData
const password = new TextEncoder().encode(passphrase.normalize('NFKC'))
try {
  const key = sodium.crypto_pwhash(
    32,
    password,
    salt,
    opslimit,
    memlimit,
    sodium.crypto_pwhash_ALG_ARGON2ID13,
  )
  parentPort.postMessage({ ok: true, key }, [key.buffer])
} catch (err) {
  parentPort.postMessage({ ok: false, error: String(err) })
} finally {
  sodium.memzero(password)
}
