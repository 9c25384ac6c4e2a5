/**
 * This server's Ed25519 keys and the key document it publishes (DESIGN.md section 6).
 *
 * Every key the server ever had is kept. Private seeds live in files, `DATA/keys/ed25519_<id>.json`
 * (mode 0600, directory 0700), so a database copy or backup never carries them; public keys and
 * lifetimes live in the `server_keys` table. One key is current (`expired_ts` NULL). `rotate-key`
 * retires it (`expired_ts` = now) and makes a new one current; a running server loads its keys once at
 * start-up, so it signs with the new key after a restart. Until the next rotation the published
 * document is signed by the current key and by the key it replaced, so peers that pinned the old key
 * can accept the new one.
 *
 * The single `server-key.json` of earlier versions is moved into `keys/` on first start.
 */
import { chmod, link, mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import {
  buildKeyDocument,
  fromBase64Url,
  isKeyId,
  KEY_DOCUMENT_LIFETIME_MS,
  newKeyId,
  schema,
  toBase64Url,
  type KeyDocument,
  type ServerKeyInfo,
} from '@parley/protocol'
import { generateSeed, signerFromSeed, type Signer } from '@parley/protocol/signing'
import type { Clock } from '../clock.ts'
import type { ServerKeyRow, ServerKeysRepo } from '../db/repos/server-keys.ts'
import type { Logger } from '../logger.ts'

const Seed = z.string().refine((s) => fromBase64Url(s)?.length === 32, 'seed must be 32 bytes of base64url')
/** `keys/<file>`: one private key. */
const KeyFile = z.strictObject({ kid: schema.KeyId, seed: Seed, created_ts: z.number().int().min(0) })
/** The single key file of versions before rotation. */
const LegacyKeyFile = z.object({ kid: schema.KeyId, seed: Seed })

const KEYS_DIR = 'keys'
const LEGACY_FILE = 'server-key.json'

/** File name of a key: the kid with its colon replaced (colons are awkward on some file systems and in scp). */
export function keyFileName(kid: string): string {
  if (!isKeyId(kid)) throw new TypeError(`invalid key id ${kid}`)
  return `${kid.replace(':', '_')}.json`
}

/** Where the private keys of a data directory live. */
export function keysDir(dataDir: string): string {
  return join(dataDir, KEYS_DIR)
}

export interface ServerKeysOptions {
  readonly dataDir: string
  readonly serverName: string
  readonly repo: ServerKeysRepo
  readonly clock: Clock
  readonly log?: Logger
}

/** The keys a server loaded at start-up: the current signer, the one it replaced, every public key. */
export class ServerKeys {
  readonly #serverName: string
  readonly #current: Signer
  readonly #previous: Signer | null
  readonly #keys: readonly ServerKeyInfo[]
  readonly #byKid: ReadonlyMap<string, ServerKeyInfo>
  #cached: { link: string; issuedTs: number; document: KeyDocument } | null = null

  private constructor(
    serverName: string,
    rows: readonly ServerKeyRow[],
    current: Signer,
    previous: Signer | null,
  ) {
    this.#serverName = serverName
    this.#current = current
    this.#previous = previous
    this.#keys = rows.map((r) => ({ kid: r.kid, publicKey: r.public_key, expiredTs: r.expired_ts }))
    this.#byKid = new Map(this.#keys.map((k) => [k.kid, k]))
  }

  /**
   * Loads the keys of a data directory, creating the first key on first start and moving a legacy
   * `server-key.json` into `keys/`. Throws if the current key's private seed is missing or does not
   * match its public key (the server must not start with a key it cannot use).
   */
  static async open(options: ServerKeysOptions): Promise<ServerKeys> {
    const { dataDir, repo, clock } = options
    const dir = keysDir(dataDir)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    // Backups and copies often lose modes: re-apply them to the directory and every key in it.
    await chmod(dir, 0o700)
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.isFile()) await chmod(join(dir, entry.name), 0o600)
    }
    await migrateLegacyKey(dataDir, repo, clock)
    let rows = repo.all()
    if (!rows.some((r) => r.expired_ts === null)) {
      const kid = unusedKeyId(repo)
      const seed = generateSeed()
      await writeKeyFile(dir, kid, seed, clock.now())
      repo.insert({
        kid,
        public_key: signerFromSeed(kid, seed).publicKey,
        created_ts: clock.now(),
        expired_ts: null,
      })
      options.log?.info({ kid }, 'created the server key')
      rows = repo.all()
    }
    const currentRow = rows.find((r) => r.expired_ts === null)!
    const current = await loadSigner(dir, currentRow)
    // The most recently retired key co-signs the document, so peers that pinned it follow the rotation.
    const previousRow = rows
      .filter((r) => r.expired_ts !== null)
      .sort((a, b) => b.expired_ts! - a.expired_ts!)
      .at(0)
    let previous: Signer | null = null
    if (previousRow) {
      try {
        previous = await loadSigner(dir, previousRow)
      } catch (err) {
        options.log?.warn(
          { kid: previousRow.kid, err: String(err) },
          'cannot load the previous server key: the key document is signed by the current key only',
        )
      }
    }
    return new ServerKeys(options.serverName, rows, current, previous)
  }

  /** The key that signs events, envelopes, handshakes and documents. */
  get current(): Signer {
    return this.#current
  }

  /** Every key, current and retired, oldest first. */
  get keys(): readonly ServerKeyInfo[] {
    return this.#keys
  }

  /**
   * Our public key `kid` if it may have signed something at `atTs`: the current key always, a retired
   * key only for times before its `expired_ts`.
   */
  keyFor(kid: string, atTs: number): Uint8Array | null {
    const key = this.#byKid.get(kid)
    if (!key) return null
    return key.expiredTs === null || atTs < key.expiredTs ? key.publicKey : null
  }

  /**
   * The signed document for `/.well-known/parley/server`, valid for {@link KEY_DOCUMENT_LIFETIME_MS}.
   * Re-signed once half its lifetime has passed (or when the link changes), not on every request.
   */
  document(link: string, now: number): KeyDocument {
    const cached = this.#cached
    if (
      cached &&
      cached.link === link &&
      now >= cached.issuedTs &&
      now - cached.issuedTs < KEY_DOCUMENT_LIFETIME_MS / 2
    ) {
      return cached.document
    }
    const signers = this.#previous ? [this.#current, this.#previous] : [this.#current]
    const document = buildKeyDocument(
      { serverName: this.#serverName, link, keys: this.#keys, validUntilTs: now + KEY_DOCUMENT_LIFETIME_MS },
      signers,
    )
    this.#cached = { link, issuedTs: now, document }
    return document
  }
}

/** What {@link rotateServerKey} did. */
export interface Rotation {
  /** The key that was current and is now retired. */
  readonly retired: string
  /** The new current key. */
  readonly current: string
  /** When the retired key stopped being valid. */
  readonly expiredTs: number
}

/**
 * Creates a new key and makes it current; the old one is retired at `now` and kept forever. The seed
 * file is written (and fsynced) before the database row, so a crash leaves at most an unused file.
 */
export async function rotateServerKey(options: ServerKeysOptions): Promise<Rotation> {
  const before = await ServerKeys.open(options)
  const kid = unusedKeyId(options.repo)
  const seed = generateSeed()
  const now = options.clock.now()
  await writeKeyFile(keysDir(options.dataDir), kid, seed, now)
  options.repo.rotate(kid, signerFromSeed(kid, seed).publicKey, now)
  return { retired: before.current.kid, current: kid, expiredTs: now }
}

function unusedKeyId(repo: ServerKeysRepo): string {
  for (;;) {
    const kid = newKeyId()
    if (!repo.get(kid)) return kid
  }
}

async function loadSigner(dir: string, row: ServerKeyRow): Promise<Signer> {
  const path = join(dir, keyFileName(row.kid))
  const file = await readKeyFile(path, KeyFile).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    throw new Error(`the private key of ${row.kid} is missing: ${path} (restore it from a backup)`)
  })
  if (file.kid !== row.kid) throw new Error(`key file ${path} holds ${file.kid}, not ${row.kid}`)
  const signer = signerFromSeed(row.kid, fromBase64Url(file.seed)!)
  if (toBase64Url(signer.publicKey) !== toBase64Url(row.public_key)) {
    throw new Error(`key file ${path} does not match the public key of ${row.kid} in the database`)
  }
  return signer
}

async function readKeyFile<S extends z.ZodType>(path: string, fileSchema: S): Promise<z.infer<S>> {
  const text = await readFile(path, 'utf8')
  // The legacy file of older versions may have been written with a looser mode.
  await chmod(path, 0o600)
  const parsed = schema.parseJson(fileSchema, text)
  if (!parsed.ok) throw new Error(`corrupt server key file ${path}: ${parsed.error.message}`)
  return parsed.value
}

/**
 * Writes a new key file, mode 0600, never replacing one: written and fsynced under a temporary name,
 * then hard-linked into place (fails if the name exists), so a crash never leaves a half-written key.
 */
async function writeKeyFile(dir: string, kid: string, seed: Uint8Array, createdTs: number): Promise<void> {
  const text = JSON.stringify({ kid, seed: toBase64Url(seed), created_ts: createdTs }) + '\n'
  const path = join(dir, keyFileName(kid))
  const temp = `${path}.${process.pid}.tmp`
  const file = await open(temp, 'w', 0o600)
  try {
    await file.writeFile(text)
    await file.sync()
  } finally {
    await file.close()
  }
  try {
    await link(temp, path)
  } finally {
    await unlink(temp)
  }
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Moves `server-key.json` (one key, versions before rotation) into `keys/` and the database. Each step
 * is idempotent, and the old file goes last, so a crash midway is finished on the next start.
 */
async function migrateLegacyKey(dataDir: string, repo: ServerKeysRepo, clock: Clock): Promise<void> {
  const legacyPath = join(dataDir, LEGACY_FILE)
  let legacy: z.infer<typeof LegacyKeyFile>
  try {
    legacy = await readKeyFile(legacyPath, LegacyKeyFile)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  const seed = fromBase64Url(legacy.seed)!
  const publicKey = signerFromSeed(legacy.kid, seed).publicKey
  const row = repo.get(legacy.kid)
  if (row && toBase64Url(row.public_key) !== toBase64Url(publicKey)) {
    throw new Error(`${legacyPath} holds ${legacy.kid} with a key that differs from the database's`)
  }
  const current = repo.all().find((r) => r.expired_ts === null)
  if (!row && current) {
    throw new Error(
      `${legacyPath} holds ${legacy.kid} but the database's current key is ${current.kid}; move one away`,
    )
  }
  const createdTs = Math.floor((await stat(legacyPath)).mtimeMs) || clock.now()
  try {
    await writeKeyFile(keysDir(dataDir), legacy.kid, seed, createdTs)
  } catch (err) {
    // Already moved by a start that crashed before removing the old file; open() checks it matches.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  if (!row) repo.insert({ kid: legacy.kid, public_key: publicKey, created_ts: createdTs, expired_ts: null })
  await unlink(legacyPath)
}
