/**
 * The local cache's cryptography (WebCrypto only, so it runs in the renderer and in Node tests):
 * from one 32-byte secret, HKDF-SHA-256 derives an AES-256-GCM key that seals every record and an
 * HMAC-SHA-256 key that names it. Names are MACs of the logical slot (`session`, `timeline:!room...`),
 * so the database on disk reveals neither room ids nor which record is which; each record is sealed
 * with the logical slot as associated data, so a ciphertext moved to another slot fails to open.
 *
 * What this does not stop (docs/desktop.md "Local cache"): someone who can write the profile can
 * roll a record back to an older ciphertext of the same slot, or delete records.
 */

/** A sealed record as stored: a fresh random 96-bit nonce and the AES-GCM ciphertext with its tag. */
export interface SealedRecord {
  readonly iv: Uint8Array<ArrayBuffer>
  readonly ct: ArrayBuffer
}

/** The two keys of a cache, both non-extractable. */
export interface CacheKeys {
  readonly seal: CryptoKey
  readonly name: CryptoKey
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * The HKDF base key for 32 secret bytes (the shell's safeStorage key). The bytes are zeroed once
 * imported: from then on the secret exists only inside WebCrypto, non-extractable.
 */
export async function importSecret(secret: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  if (secret.length !== 32) throw new Error('cache secret must be 32 bytes')
  try {
    return await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveKey'])
  } finally {
    secret.fill(0)
  }
}

/** A fresh random non-extractable base key (web mode: kept as a CryptoKey in the browser profile). */
export async function generateSecret(): Promise<CryptoKey> {
  return importSecret(crypto.getRandomValues(new Uint8Array(32)))
}

/** Derives the sealing and naming keys from a base key (fixed info strings: versioned by name). */
export async function deriveCacheKeys(base: CryptoKey): Promise<CacheKeys> {
  const hkdf = (info: string) => ({
    name: 'HKDF',
    hash: 'SHA-256',
    salt: new Uint8Array(32),
    info: encoder.encode(info),
  })
  const [seal, name] = await Promise.all([
    crypto.subtle.deriveKey(hkdf('parley cache v1 seal'), base, { name: 'AES-GCM', length: 256 }, false, [
      'encrypt',
      'decrypt',
    ]),
    crypto.subtle.deriveKey(hkdf('parley cache v1 name'), base, { name: 'HMAC', hash: 'SHA-256' }, false, [
      'sign',
    ]),
  ])
  return { seal, name }
}

/** The on-disk name of a logical slot: base64url of its HMAC. */
export async function recordName(keys: CacheKeys, slot: string): Promise<string> {
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', keys.name, encoder.encode(slot)))
  let binary = ''
  for (const byte of mac) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** Seals a JSON value for `slot`. A random nonce per write: far below GCM's 2^32 messages per key. */
export async function sealValue(keys: CacheKeys, slot: string, value: unknown): Promise<SealedRecord> {
  const iv = crypto.getRandomValues(new Uint8Array(12))
  const ct = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: encoder.encode(slot) },
    keys.seal,
    encoder.encode(JSON.stringify(value)),
  )
  return { iv, ct }
}

/**
 * Opens a record of `slot`: the parsed JSON, or `undefined` when it is not a well-formed record, fails
 * authentication (tampered, another key, another slot) or is not JSON. Callers validate the value
 * with a schema: it is still untrusted input (STYLE.md rule 4).
 */
export async function openValue(keys: CacheKeys, slot: string, record: unknown): Promise<unknown> {
  if (!isSealedRecord(record)) return undefined
  try {
    const plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: record.iv, additionalData: encoder.encode(slot) },
      keys.seal,
      record.ct,
    )
    return JSON.parse(decoder.decode(plain)) as unknown
  } catch {
    return undefined
  }
}

function isSealedRecord(value: unknown): value is SealedRecord {
  if (typeof value !== 'object' || value === null) return false
  const { iv, ct } = value as Partial<SealedRecord>
  return (
    iv instanceof Uint8Array &&
    iv.buffer instanceof ArrayBuffer &&
    iv.length === 12 &&
    ct instanceof ArrayBuffer
  )
}
