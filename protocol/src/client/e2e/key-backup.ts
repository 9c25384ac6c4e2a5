/**
 * Key backup and secret storage on the client (E2E.md sections 2.1 and 2.5): creating a backup with a
 * recovery key (optionally wrapped under a passphrase), uploading every inbound group session as it is
 * stored, and unlocking a backup on a new device. {@link EndToEnd} owns one {@link KeyBackup}.
 *
 * What the server stores, all opaque to it: UIK-signed metadata `{version, kdf, key_check}`, session
 * records under `BK`, and secret storage (the UIK seed and `BK` sealed under `SSK`, plus `RK` wrapped
 * under the passphrase). Uploads go only to a backup whose metadata verifies with the user's UIK and
 * whose `key_check` matches this device's `BK` (row 16): a server that swaps the metadata gets nothing.
 *
 * Kept on the device (item `e2e:backup`): the backup version, `BK`, and the sealed records not yet
 * uploaded (a failed upload is retried on the next session, on reconnect, or by {@link KeyBackup.flush};
 * it never blocks decryption).
 */
import { z } from 'zod'
import * as e2e from '../../crypto/e2e/index.ts'
import { fromBase64Url, toBase64Url } from '../../encoding.ts'
import {
  BackupSessionRecord,
  MAX_BACKUP_RECORDS_PER_CALL,
  type SecretStorage,
  type SignedBackupMetadata,
} from '../../schema/keys.ts'
import type { HttpApi } from '../http.ts'
import type { ClientStore } from '../store.ts'

/**
 * Derives the argon2id key of a passphrase (`crypto/e2e` {@link e2e.derivePassphraseKey}) **off the
 * calling thread** (E2E.md section 2.5: "run in a Worker"). Node: `nodePassphraseKdf()` from
 * `@parley/protocol/node` (worker_threads); the desktop renderer supplies a Web Worker. The protocol's
 * browser-safe client cannot start threads itself, so the caller always supplies it.
 */
export interface PassphraseKdf {
  /** The 32-byte key of `passphrase` under `params` (already checked by the caller). */
  derive(passphrase: string, params: e2e.PassphraseKdfParams): Promise<Uint8Array>
}

/** Why a backup operation was refused. Nothing was changed on the device or the server. */
export type BackupErrorCode =
  /** The server has no backup (or no secret storage) for the user. */
  | 'no_backup'
  /** The recovery key or passphrase does not open this backup (or the recovery key has a typo). */
  | 'wrong_key'
  /** Metadata or secret storage do not verify with the user's identity key: the server changed them. */
  | 'untrusted_backup'
  /** The backup belongs to another identity key than the user's current device list. */
  | 'identity_mismatch'
  /** A passphrase was given but no {@link PassphraseKdf} (or the backup has no passphrase). */
  | 'no_passphrase'
  /** This device does not hold the user's identity key (enable backup on a verified device). */
  | 'no_identity'

/** A key backup operation failed closed (E2E.md section 3 row 16). */
export class BackupError extends Error {
  override name = 'BackupError'
  constructor(
    readonly code: BackupErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/** What unlocks a backup on a new device: the recovery key as written down, or the passphrase. */
export type BackupSecret = { readonly recoveryKey: string } | { readonly passphrase: string }

/** A backup opened with its secret: the user's identity key and what decrypts the records. */
export interface UnlockedBackup {
  readonly version: string
  readonly uik: e2e.SigningKeyPair
  readonly bk: Uint8Array
}

/** Result of downloading a backup's session records. */
export interface DownloadedSessions {
  /** Records that decrypted under `BK` (still to be imported). */
  readonly sessions: readonly e2e.InboundGroupSession[]
  /** Records that failed the AEAD or their checks (a server cannot inject sessions): skipped. */
  readonly rejected: ReadonlyArray<{ readonly session_id: string; readonly reason: string }>
}

/** Names of the secret-storage items (E2E.md section 2.5). */
const SECRET_UIK = 'uik'
const SECRET_BK = 'bk'

const B64 = z.string().regex(/^[A-Za-z0-9_-]*$/)
/** The device's backup state, item `e2e:backup`. */
const BackupState = z.object({
  version: z.string(),
  bk: B64,
  /** Sealed records waiting for upload, by session id (the newest export of each session wins). */
  pending: z.record(z.string(), BackupSessionRecord),
})
type BackupState = z.infer<typeof BackupState>
const STATE_ITEM = 'e2e:backup'

/** Options of {@link KeyBackup}. */
export interface KeyBackupOptions {
  readonly api: HttpApi
  readonly store: ClientStore
  readonly userId: string
  /** The user's identity public key (base64url) as this device knows it, or null. */
  readonly identityKey: () => string | null
  readonly kdf?: PassphraseKdf | undefined
  /** argon2id cost of new passphrase wraps; defaults to opslimit 3, 128 MiB (backup.ts DEFAULT_PWHASH_MEMLIMIT). Lower only in tests. */
  readonly passphraseCost?: e2e.PassphraseCost | undefined
  /** Called when an upload was refused because the server's metadata does not verify. */
  readonly onUntrusted: (detail: string) => void
}

/** The key backup of one device (E2E.md section 2.5). */
export class KeyBackup {
  readonly #o: KeyBackupOptions
  #state: BackupState | null
  /** Uploads run one at a time, in order. */
  #flushing: Promise<void> = Promise.resolve()

  private constructor(options: KeyBackupOptions, state: BackupState | null) {
    this.#o = options
    this.#state = state
  }

  /** Loads the device's backup state (none until {@link enable} or {@link adopt}). */
  static async load(options: KeyBackupOptions): Promise<KeyBackup> {
    const raw = await options.store.getItem(STATE_ITEM)
    let state: BackupState | null = null
    if (raw !== null) {
      try {
        const parsed = BackupState.safeParse(JSON.parse(raw))
        if (parsed.success) state = parsed.data
      } catch {
        // A damaged item: backup counts as off on this device until enabled or restored again.
      }
    }
    return new KeyBackup(options, state)
  }

  /** The backup version this device uploads to, or null. */
  get version(): string | null {
    return this.#state?.version ?? null
  }

  /** Records sealed but not uploaded yet. */
  get pendingCount(): number {
    return this.#state ? Object.keys(this.#state.pending).length : 0
  }

  /**
   * Creates a new backup version (E2E.md section 2.5): a fresh recovery key, UIK-signed metadata,
   * secret storage with the UIK seed and `BK` (and `RK` wrapped under `passphrase` by the
   * {@link PassphraseKdf}), then uploads `sessions`. Replaces any earlier version. Returns the recovery
   * key as the user writes it down.
   */
  async enable(
    uik: e2e.SigningKeyPair,
    sessions: Iterable<e2e.InboundGroupSession>,
    passphrase?: string,
  ): Promise<{ recoveryKey: string }> {
    const kdf = this.#o.kdf
    if (passphrase !== undefined && !kdf)
      throw new BackupError('no_passphrase', 'a passphrase needs a PassphraseKdf (EndToEnd.start options)')
    const rk = e2e.generateRecoveryKey()
    const { bk, ssk } = e2e.deriveBackupKeys(rk)
    try {
      let wrapped: e2e.WrappedRecoveryKey | null = null
      if (passphrase !== undefined && kdf) {
        const params = e2e.newPassphraseKdfParams(this.#o.passphraseCost)
        const key = await kdf.derive(passphrase, params)
        try {
          wrapped = e2e.sealRecoveryKey(rk, key, params)
        } finally {
          e2e.memzero(key)
        }
      }
      const version = toBase64Url(e2e.secretRandomBytes(12))
      const metadata = e2e.signBackupMetadata(uik, this.#o.userId, version, bk, wrapped?.kdf ?? null)
      const seed = uik.secretKey.slice(0, 32)
      const storage: SecretStorage = {
        suite: 'e2e/v1',
        version,
        passphrase: wrapped === null ? null : { ...wrapped, kdf: { ...wrapped.kdf } },
        items: [e2e.sealSecret(ssk, SECRET_UIK, seed), e2e.sealSecret(ssk, SECRET_BK, bk)],
      }
      e2e.memzero(seed)
      await this.#o.api.putBackup({ ...metadata, kdf: metadata.kdf === null ? null : { ...metadata.kdf } })
      await this.#o.api.putSecretStorage(storage)
      await this.#setState({ version, bk: toBase64Url(bk), pending: {} })
      for (const session of sessions) this.#seal(session)
      await this.#saveState()
      await this.flush()
      return { recoveryKey: e2e.encodeRecoveryKey(rk) }
    } finally {
      e2e.memzero(rk)
      e2e.memzero(ssk)
      e2e.memzero(bk)
    }
  }

  /**
   * Opens the server's backup with `secret` (E2E.md sections 2.1 and 2.5): recovers `RK` (from the
   * typed key, or by unwrapping it with the passphrase), opens secret storage under `SSK`, recovers the
   * UIK, and verifies the metadata's signature under that UIK and its `key_check` under `BK`. Changes
   * nothing. {@link BackupError}: `no_backup`, `wrong_key`, `untrusted_backup`, `no_passphrase`.
   */
  async unlock(secret: BackupSecret): Promise<UnlockedBackup> {
    const api = this.#o.api
    const [metadata, storage] = await Promise.all([api.getBackup(), api.getSecretStorage()])
    if (metadata === null || storage === null)
      throw new BackupError('no_backup', 'the server has no key backup for this user')
    const rk = await this.#recoveryKey(secret, storage)
    const { bk, ssk } = e2e.deriveBackupKeys(rk)
    e2e.memzero(rk)
    let seed: Uint8Array
    let storedBk: Uint8Array
    try {
      seed = openItem(ssk, storage, SECRET_UIK)
      storedBk = openItem(ssk, storage, SECRET_BK)
    } catch (error) {
      e2e.memzero(bk)
      // Either key is wrong or the server changed the items: both mean this secret does not open it.
      throw new BackupError('wrong_key', `secret storage does not open: ${describe(error)}`)
    } finally {
      e2e.memzero(ssk)
    }
    const uik = e2e.signingKeyPair(seed)
    e2e.memzero(seed)
    const sameBk = e2e.constantTimeEqual(storedBk, bk)
    e2e.memzero(storedBk)
    try {
      if (!sameBk) throw new e2e.E2eError('wrong_key', 'stored backup key differs from the derived one')
      const body = e2e.verifyBackupMetadata(metadata, { userId: this.#o.userId, uik: uik.publicKey }, bk)
      if (body.version !== storage.version) throw new e2e.E2eError('bad_input', 'versions differ')
      if (storage.passphrase !== null && !sameKdf(storage.passphrase.kdf, body.kdf))
        throw new e2e.E2eError('bad_input', 'passphrase parameters differ from the signed ones')
      return { version: body.version, uik, bk }
    } catch (error) {
      e2e.memzero(bk)
      throw new BackupError('untrusted_backup', `backup metadata refused: ${describe(error)}`)
    }
  }

  /** Downloads and decrypts the records of an unlocked backup; records failing the AEAD are skipped. */
  async download(unlocked: UnlockedBackup): Promise<DownloadedSessions> {
    const records = await this.#o.api.getBackupSessions(unlocked.version)
    const sessions: e2e.InboundGroupSession[] = []
    const rejected: Array<{ session_id: string; reason: string }> = []
    for (const record of records) {
      try {
        const payload = e2e.decryptBackupSession(unlocked.bk, unlocked.version, record)
        sessions.push(e2e.InboundGroupSession.fromTrustedBackup(payload))
      } catch (error) {
        rejected.push({ session_id: record.session_id, reason: describe(error) })
      }
    }
    return { sessions, rejected }
  }

  /** Makes this device upload to the unlocked backup from now on (after a restore). */
  async adopt(unlocked: UnlockedBackup): Promise<void> {
    await this.#setState({ version: unlocked.version, bk: toBase64Url(unlocked.bk), pending: {} })
  }

  /**
   * Seals an inbound session for upload and starts an upload in the background (E2E.md section 2.5).
   * Never throws and never waits for the network: a failed upload stays pending and is retried.
   */
  async track(session: e2e.InboundGroupSession): Promise<void> {
    if (!this.#state) return
    this.#seal(session)
    try {
      await this.#saveState()
    } catch {
      // Still pending in memory: uploaded with the next flush.
    }
    this.flush().catch(() => {})
  }

  /**
   * Uploads the pending records, after checking that the server's metadata is the one this device
   * signed or verified (same version, UIK signature, `key_check` of our `BK`). Rejects with
   * {@link BackupError} `untrusted_backup` (and nothing is uploaded) if it is not; with the network or
   * server error if an upload failed (the records stay pending).
   */
  flush(): Promise<void> {
    const run = this.#flushing.then(() => this.#flush())
    this.#flushing = run.catch(() => {})
    return run
  }

  async #flush(): Promise<void> {
    const state = this.#state
    if (!state || Object.keys(state.pending).length === 0) return
    await this.#checkServerMetadata(state)
    const records = Object.values(state.pending)
    for (let i = 0; i < records.length; i += MAX_BACKUP_RECORDS_PER_CALL) {
      const batch = records.slice(i, i + MAX_BACKUP_RECORDS_PER_CALL)
      await this.#o.api.putBackupSessions(state.version, batch)
      for (const record of batch)
        if (state.pending[record.session_id] === record) delete state.pending[record.session_id]
    }
    await this.#saveState()
  }

  async #checkServerMetadata(state: BackupState): Promise<void> {
    const uik = this.#o.identityKey()
    const uikBytes = uik === null ? null : fromBase64Url(uik)
    if (uikBytes === null) throw new BackupError('no_identity', 'no identity key to check the backup with')
    const metadata: SignedBackupMetadata | null = await this.#o.api.getBackup()
    const bk = bytes(state.bk)
    try {
      if (metadata === null) throw new e2e.E2eError('bad_input', 'the server has no backup metadata')
      const body = e2e.verifyBackupMetadata(metadata, { userId: this.#o.userId, uik: uikBytes }, bk)
      if (body.version !== state.version)
        throw new e2e.E2eError('bad_input', `server shows version ${body.version}, not ${state.version}`)
    } catch (error) {
      const detail = `backup upload refused: ${describe(error)}`
      this.#o.onUntrusted(detail)
      throw new BackupError('untrusted_backup', detail)
    } finally {
      e2e.memzero(bk)
    }
  }

  #seal(session: e2e.InboundGroupSession): void {
    const state = this.#state
    if (!state) return
    const bk = bytes(state.bk)
    try {
      const record = e2e.encryptBackupSession(bk, state.version, session.exportRoomKey())
      state.pending[record.session_id] = record
    } finally {
      e2e.memzero(bk)
    }
  }

  async #recoveryKey(secret: BackupSecret, storage: SecretStorage): Promise<Uint8Array> {
    if ('recoveryKey' in secret) {
      try {
        return e2e.decodeRecoveryKey(secret.recoveryKey)
      } catch (error) {
        throw new BackupError('wrong_key', `not a recovery key: ${describe(error)}`)
      }
    }
    const kdf = this.#o.kdf
    if (!kdf)
      throw new BackupError('no_passphrase', 'a passphrase needs a PassphraseKdf (EndToEnd.start options)')
    if (storage.passphrase === null) throw new BackupError('no_passphrase', 'this backup has no passphrase')
    let wrapped: e2e.WrappedRecoveryKey
    try {
      wrapped = e2e.parseWrappedRecoveryKey(storage.passphrase)
    } catch (error) {
      throw new BackupError('untrusted_backup', `passphrase wrap refused: ${describe(error)}`)
    }
    const key = await kdf.derive(secret.passphrase, wrapped.kdf)
    try {
      return e2e.openRecoveryKey(wrapped, key)
    } catch (error) {
      throw new BackupError('wrong_key', `the passphrase does not open this backup: ${describe(error)}`)
    } finally {
      e2e.memzero(key)
    }
  }

  async #setState(state: BackupState): Promise<void> {
    this.#state = state
    await this.#saveState()
  }

  #saveState(): Promise<void> {
    return this.#o.store.setItem(STATE_ITEM, JSON.stringify(this.#state))
  }
}

function openItem(ssk: Uint8Array, storage: SecretStorage, name: string): Uint8Array {
  const item = storage.items.find((i) => i.name === name)
  if (!item) throw new e2e.E2eError('bad_input', `secret storage has no ${name}`)
  return e2e.openSecret(ssk, item)
}

function sameKdf(a: e2e.PassphraseKdfParams, b: e2e.PassphraseKdfParams | null): boolean {
  return (
    b !== null &&
    a.algorithm === b.algorithm &&
    a.opslimit === b.opslimit &&
    a.memlimit === b.memlimit &&
    a.salt === b.salt
  )
}

function bytes(text: string): Uint8Array {
  const out = fromBase64Url(text)
  if (out === null) throw new e2e.E2eError('bad_input', 'stored key is not base64url')
  return out
}

function describe(error: unknown): string {
  if (error instanceof e2e.E2eError) return `${error.code}: ${error.message}`
  return error instanceof Error ? error.message : String(error)
}
