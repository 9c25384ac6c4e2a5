/**
 * Main process. Secrets (the homeserver session, the cache key) encrypted with the OS keychain
 * (`safeStorage`, behind the {@link Keychain} interface so tests can run without Electron) and kept in
 * one JSON file of the user-data directory: base64 ciphertexts only, never plaintext on disk.
 */
import { open, readFile, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import { z } from 'zod'

/** `safeStorage`'s encrypt and decrypt. */
export interface Keychain {
  encrypt(plain: string): Uint8Array
  decrypt(cipher: Buffer): string
}

const StoredSecrets = z.record(z.string(), z.string())

export class SecretStore {
  readonly #file: string
  readonly #keychain: Keychain
  #secrets: Promise<Map<string, string>> | null = null
  #writes: Promise<void> = Promise.resolve()

  constructor(file: string, keychain: Keychain) {
    this.#file = file
    this.#keychain = keychain
  }

  /** The secret, or null if none is stored. Throws if the keychain cannot decrypt it. */
  async get(name: string): Promise<string | null> {
    const stored = (await this.#load()).get(name)
    return stored === undefined ? null : this.#keychain.decrypt(Buffer.from(stored, 'base64'))
  }

  /** Encrypts and stores the secret; resolves once the file is written. */
  async set(name: string, value: string): Promise<void> {
    const secrets = await this.#load()
    const previous = secrets.get(name)
    secrets.set(name, Buffer.from(this.#keychain.encrypt(value)).toString('base64'))
    const text = JSON.stringify(Object.fromEntries(secrets))
    // One write at a time, each to a temporary file that is fsynced, renamed over the old one, and
    // the rename fsynced: never a torn or empty file after a power cut (a lost cache key would sign
    // the user out and orphan their unsent messages).
    const write = this.#writes.then(() => this.#writeDurably(text))
    this.#writes = write.catch(() => {})
    try {
      await write
    } catch (err) {
      // Not on disk, so not in use either: a later get must not return a secret the next run lacks.
      if (secrets.get(name) !== undefined) {
        if (previous === undefined) secrets.delete(name)
        else secrets.set(name, previous)
      }
      throw err
    }
  }

  async #writeDurably(text: string): Promise<void> {
    const tmp = `${this.#file}.tmp`
    const file = await open(tmp, 'w', 0o600)
    try {
      await file.writeFile(text)
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(tmp, this.#file)
    const dir = await open(dirname(this.#file), 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  }

  #load(): Promise<Map<string, string>> {
    this.#secrets ??= readFile(this.#file, 'utf8').then(
      (text) => {
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = null
        }
        const parsed = StoredSecrets.safeParse(json)
        // An unreadable file starts empty (the user signs in again; the cache is rebuilt).
        return new Map(parsed.success ? Object.entries(parsed.data) : [])
      },
      () => new Map<string, string>(), // first start
    )
    return this.#secrets
  }
}
