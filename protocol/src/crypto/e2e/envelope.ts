/**
 * The pairwise to-device envelope of E2E.md section 2.2 (X3DH without the one-time prekey) and the
 * signed prekeys it needs (section 2.1, "SPK").
 *
 * ```
 * EK  = fresh X25519
 * dh1 = X25519(DXK_A, SPK_B)   dh2 = X25519(EK, DXK_B)   dh3 = X25519(EK, SPK_B)
 * K   = BLAKE2b-256("e2e/v1/env" ‖ dh1 ‖ dh2 ‖ dh3 ‖ DXK_A ‖ DXK_B ‖ SPK_B ‖ EK)
 * AD  = "e2e/v1/env" ‖ sender_user ‖ sender_dev ‖ recip_user ‖ recip_dev ‖ SPK_id ‖ EK
 * c   = XChaCha20-Poly1305(K, random 24-byte nonce, payload, AD)
 * ```
 * Every input to `K` has a fixed length, so it is a plain concatenation; `AD` mixes variable-length ids
 * and uses {@link encodeFields}. The recipient dedupes on `H(EK)` per signed prekey; once a prekey's
 * private key is wiped (7 days after it was replaced) its envelopes are undecryptable (forward secrecy).
 */
import { canonicalJson } from '../../canonical-json.ts'
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from '../../encoding.ts'
import { E2eError } from './errors.ts'
import {
  aeadDecrypt,
  aeadEncrypt,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  assertBytes,
  DH_KEY_BYTES,
  dhKeyPair,
  encodeFields,
  generichash,
  memzero,
  sign,
  SIGNATURE_BYTES,
  SIGN_PUBLIC_KEY_BYTES,
  verify,
  x25519,
  type DhKeyPair,
  type SigningKeyPair,
} from './primitives.ts'
import { E2E_SUITE } from './ratchet.ts'

/** A signed prekey is replaced every 24 h (E2E.md section 2.1). */
export const SPK_ROTATION_MS = 24 * 60 * 60 * 1000
/** A replaced signed prekey's private key is kept 7 days, then wiped (E2E.md section 2.1). */
export const SPK_RETENTION_MS = 7 * 24 * 60 * 60 * 1000
/**
 * Senders refuse signed prekeys older than this by default, bounding how stale a prekey a server can
 * serve (E2E.md section 1, "Serve stale signed prekeys (bounded by signed timestamps)").
 */
export const SPK_MAX_AGE_MS = SPK_ROTATION_MS + SPK_RETENTION_MS
/** Accepted clock skew for timestamps in the future, 1 h (E2E.md section 2). */
export const CLOCK_SKEW_MS = 60 * 60 * 1000
/** Largest envelope payload accepted, 64 KiB: room keys and key forwards are far smaller (E2E.md section 2.2). */
export const MAX_ENVELOPE_PAYLOAD_BYTES = 64 * 1024

const ENV_LABEL = 'e2e/v1/env'
const SPK_SIG_LABEL = 'e2e/v1/spk'
const MAX_ID_LENGTH = 255

/** A signed prekey as published (E2E.md section 2.1): X25519 public key, id and timestamp, signed by the DSK. */
export interface SignedPrekey {
  readonly suite: typeof E2E_SUITE
  /** base64url of the first 16 bytes of BLAKE2b(public key): the id names exactly one key. */
  readonly spk_id: string
  readonly public_key: string
  readonly created_ts: number
  /** Ed25519 signature by the device's DSK over {@link signedPrekeyBytes}. */
  readonly signature: string
}

/** A signed prekey whose signature and age were checked (E2E.md section 2.1). */
export interface VerifiedPrekey {
  readonly spkId: string
  readonly publicKey: Uint8Array
  readonly createdTs: number
}

/** The bytes a DSK signs for a prekey: `"e2e/v1/spk"` framed with the canonical JSON of the unsigned fields (E2E.md section 2.1). */
export function signedPrekeyBytes(prekey: Omit<SignedPrekey, 'signature'>): Uint8Array {
  const body = {
    suite: prekey.suite,
    spk_id: prekey.spk_id,
    public_key: prekey.public_key,
    created_ts: prekey.created_ts,
  }
  return encodeFields(SPK_SIG_LABEL, canonicalJson(body))
}

function prekeyId(publicKey: Uint8Array): string {
  return toBase64Url(generichash(16, publicKey))
}

/** Makes a fresh X25519 prekey and signs it with the DSK (E2E.md section 2.1). The key pair stays on the device. */
export function createSignedPrekey(
  dsk: SigningKeyPair,
  now: number,
): { signed: SignedPrekey; keyPair: DhKeyPair } {
  if (!Number.isSafeInteger(now) || now < 0) throw new E2eError('bad_input', 'now out of range')
  const keyPair = dhKeyPair()
  const unsigned = {
    suite: E2E_SUITE,
    spk_id: prekeyId(keyPair.publicKey),
    public_key: toBase64Url(keyPair.publicKey),
    created_ts: now,
  } as const
  const signature = sign(dsk.secretKey, signedPrekeyBytes(unsigned))
  return { signed: { ...unsigned, signature: toBase64Url(signature) }, keyPair }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Verifies a served signed prekey (E2E.md sections 2.1 and 1): shape, `spk_id` = hash of the key,
 * the DSK's signature, and age: `expired` if older than `maxAge`, `not_yet_valid` if more than 1 h in
 * the future.
 */
export function verifySignedPrekey(
  prekey: unknown,
  dskPublicKey: Uint8Array,
  now: number,
  maxAge: number = SPK_MAX_AGE_MS,
): VerifiedPrekey {
  assertBytes('DSK public key', dskPublicKey, SIGN_PUBLIC_KEY_BYTES)
  if (!isRecord(prekey) || prekey.suite !== E2E_SUITE)
    throw new E2eError('bad_input', 'not a v1 signed prekey')
  const { spk_id, public_key, created_ts, signature } = prekey
  if (typeof spk_id !== 'string' || typeof public_key !== 'string' || typeof signature !== 'string')
    throw new E2eError('bad_input', 'signed prekey fields must be strings')
  if (typeof created_ts !== 'number' || !Number.isSafeInteger(created_ts) || created_ts < 0)
    throw new E2eError('bad_input', 'created_ts must be a non-negative integer')
  const publicKey = fromBase64Url(public_key)
  const sig = fromBase64Url(signature)
  if (publicKey === null || publicKey.length !== DH_KEY_BYTES)
    throw new E2eError('bad_input', 'bad prekey public key')
  if (sig === null || sig.length !== SIGNATURE_BYTES)
    throw new E2eError('bad_signature', 'bad prekey signature')
  if (spk_id !== prekeyId(publicKey)) throw new E2eError('bad_input', 'spk_id does not name the key')
  const unsigned = { suite: E2E_SUITE, spk_id, public_key, created_ts } as const
  if (!verify(dskPublicKey, signedPrekeyBytes(unsigned), sig))
    throw new E2eError('bad_signature', 'prekey not signed by the device key')
  if (created_ts > now + CLOCK_SKEW_MS) throw new E2eError('not_yet_valid', 'prekey from the future')
  if (now - created_ts > maxAge) throw new E2eError('expired', 'prekey too old')
  return { spkId: spk_id, publicKey, createdTs: created_ts }
}

/** One stored signed prekey with its private key (E2E.md section 2.1), as persisted by the device. */
export interface SignedPrekeyRecord {
  readonly signed: SignedPrekey
  readonly secretKey: Uint8Array
  /** When a newer prekey replaced this one, or `null` while it is current. */
  readonly retiredTs: number | null
  /** base64url `H(EK)` of envelopes already opened with this prekey (E2E.md section 2.2 dedupe). */
  readonly seenEphemeralHashes: readonly string[]
}

// The prekeys of each store, visible to this module only (see openEnvelope).
const livePrekeys = new WeakMap<SignedPrekeyStore, Map<string, StoredPrekey>>()

interface StoredPrekey {
  readonly signed: SignedPrekey
  readonly publicKey: Uint8Array
  readonly secretKey: Uint8Array
  retiredTs: number | null
  readonly seen: Set<string>
}

/**
 * A device's own signed prekeys (E2E.md section 2.1): the current one, and replaced ones until 7 days
 * after their replacement, when {@link prune} wipes their private keys with `memzero` and forgets them,
 * along with their `H(EK)` replay sets (their envelopes can no longer be opened anyway).
 */
export class SignedPrekeyStore {
  readonly #prekeys = new Map<string, StoredPrekey>()
  #currentId: string | null = null

  /** An empty store; call {@link rotate} to make the first prekey (E2E.md section 2.1). */
  constructor() {
    // openEnvelope reads private keys through this module-private map; no public accessor leaks them.
    livePrekeys.set(this, this.#prekeys)
  }

  /**
   * Restores persisted records. The store takes ownership of each `secretKey` array and wipes it in
   * place when the prekey is pruned.
   */
  static fromRecords(records: readonly SignedPrekeyRecord[]): SignedPrekeyStore {
    const store = new SignedPrekeyStore()
    let newest: StoredPrekey | null = null
    for (const record of records) {
      assertBytes('prekey secret key', record.secretKey, DH_KEY_BYTES)
      const publicKey = fromBase64Url(record.signed.public_key)
      if (publicKey === null || publicKey.length !== DH_KEY_BYTES)
        throw new E2eError('bad_input', 'bad prekey record')
      const stored: StoredPrekey = {
        signed: record.signed,
        publicKey,
        secretKey: record.secretKey,
        retiredTs: record.retiredTs,
        seen: new Set(record.seenEphemeralHashes),
      }
      store.#prekeys.set(record.signed.spk_id, stored)
      if (
        record.retiredTs === null &&
        (newest === null || record.signed.created_ts > newest.signed.created_ts)
      )
        newest = stored
    }
    store.#currentId = newest?.signed.spk_id ?? null
    return store
  }

  /** The records to persist (copies of the private keys). */
  toRecords(): SignedPrekeyRecord[] {
    return [...this.#prekeys.values()].map((p) => ({
      signed: p.signed,
      secretKey: p.secretKey.slice(),
      retiredTs: p.retiredTs,
      seenEphemeralHashes: [...p.seen],
    }))
  }

  /** The prekey to publish, if any (E2E.md section 2.1). */
  get current(): SignedPrekey | undefined {
    return this.#currentId === null ? undefined : this.#prekeys.get(this.#currentId)?.signed
  }

  /** Ids of the prekeys whose private keys are still held. */
  get ids(): string[] {
    return [...this.#prekeys.keys()]
  }

  /** True if there is no current prekey or it is 24 h old (E2E.md section 2.1). */
  needsRotation(now: number): boolean {
    const current = this.current
    return current === undefined || now - current.created_ts >= SPK_ROTATION_MS
  }

  /**
   * Creates and signs a new current prekey with the DSK and retires the previous one as of `now`
   * (E2E.md section 2.1). Returns the new prekey to publish.
   */
  rotate(dsk: SigningKeyPair, now: number): SignedPrekey {
    const { signed, keyPair } = createSignedPrekey(dsk, now)
    if (this.#currentId !== null) {
      const previous = this.#prekeys.get(this.#currentId)
      if (previous !== undefined) previous.retiredTs = now
    }
    this.#prekeys.set(signed.spk_id, {
      signed,
      publicKey: keyPair.publicKey,
      secretKey: keyPair.secretKey,
      retiredTs: null,
      seen: new Set(),
    })
    this.#currentId = signed.spk_id
    return signed
  }

  /**
   * Wipes (`memzero`) and forgets every prekey replaced more than 7 days before `now` (E2E.md section
   * 2.1). Returns the ids removed, so the caller can delete them from storage too.
   */
  prune(now: number): string[] {
    const removed: string[] = []
    for (const [id, prekey] of this.#prekeys) {
      if (prekey.retiredTs !== null && now - prekey.retiredTs > SPK_RETENTION_MS) {
        memzero(prekey.secretKey)
        prekey.seen.clear()
        this.#prekeys.delete(id)
        removed.push(id)
      }
    }
    return removed
  }
}

/** A to-device envelope on the wire (E2E.md section 2.2). Bytes are base64url. */
export interface Envelope {
  readonly suite: typeof E2E_SUITE
  readonly sender_user: string
  readonly sender_dev: string
  readonly recip_user: string
  readonly recip_dev: string
  readonly spk_id: string
  readonly ek: string
  readonly nonce: string
  readonly ciphertext: string
}

/** The sending device (E2E.md section 2.2): its ids and its long-term X25519 key pair DXK_A. */
export interface EnvelopeSender {
  readonly userId: string
  readonly deviceId: string
  readonly dxk: DhKeyPair
}

/**
 * The receiving device as the sender knows it from a verified device list (E2E.md sections 2.1 and
 * 2.2): ids, DXK_B and DSK_B public keys, and the signed prekey the server served (verified here).
 */
export interface EnvelopeRecipient {
  readonly userId: string
  readonly deviceId: string
  readonly dxk: Uint8Array
  readonly dsk: Uint8Array
  readonly signedPrekey: unknown
}

/** The receiving device's own keys (E2E.md section 2.2). */
export interface EnvelopeSelf {
  readonly userId: string
  readonly deviceId: string
  readonly dxk: DhKeyPair
  readonly prekeys: SignedPrekeyStore
}

/** An opened envelope (E2E.md section 2.2): authenticated sender device and payload. */
export interface OpenedEnvelope {
  readonly senderUser: string
  readonly senderDev: string
  readonly payload: Uint8Array
  /** base64url `H(EK)`, the replay-dedupe key. */
  readonly ephemeralHash: string
}

/**
 * Finds the DXK public key of a sender device in a *verified* device list (E2E.md section 2.1), or
 * `undefined` if the device is not in one.
 */
export type SenderKeyLookup = (userId: string, deviceId: string) => Uint8Array | undefined

function envelopeKey(
  dh1: Uint8Array,
  dh2: Uint8Array,
  dh3: Uint8Array,
  dxkA: Uint8Array,
  dxkB: Uint8Array,
  spkB: Uint8Array,
  ek: Uint8Array,
): Uint8Array {
  const input = concatBytes(utf8(ENV_LABEL), dh1, dh2, dh3, dxkA, dxkB, spkB, ek)
  try {
    return generichash(32, input)
  } finally {
    memzero(input, dh1, dh2, dh3)
  }
}

function envelopeAd(
  senderUser: string,
  senderDev: string,
  recipUser: string,
  recipDev: string,
  spkId: string,
  ek: Uint8Array,
): Uint8Array {
  return encodeFields(ENV_LABEL, senderUser, senderDev, recipUser, recipDev, spkId, ek)
}

function assertId(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH)
    throw new E2eError('bad_input', `${name} must be a non-empty string`)
}

/**
 * Seals `payload` for one recipient device (E2E.md section 2.2). Verifies the served signed prekey
 * against the recipient's DSK first (`bad_signature`, `expired`, `not_yet_valid`); a low-order key is
 * `bad_key`. A fresh EK per envelope; its secret is wiped before returning.
 */
export function sealEnvelope(
  payload: Uint8Array,
  sender: EnvelopeSender,
  recipient: EnvelopeRecipient,
  now: number = Date.now(),
  maxPrekeyAge: number = SPK_MAX_AGE_MS,
): Envelope {
  assertBytes('payload', payload)
  if (payload.length > MAX_ENVELOPE_PAYLOAD_BYTES) throw new E2eError('bad_input', 'payload too large')
  assertId('sender user', sender.userId)
  assertId('sender device', sender.deviceId)
  assertId('recipient user', recipient.userId)
  assertId('recipient device', recipient.deviceId)
  assertBytes('DXK_A public key', sender.dxk.publicKey, DH_KEY_BYTES)
  assertBytes('DXK_B', recipient.dxk, DH_KEY_BYTES)
  const spk = verifySignedPrekey(recipient.signedPrekey, recipient.dsk, now, maxPrekeyAge)
  const ek = dhKeyPair()
  try {
    const dh1 = x25519(sender.dxk.secretKey, spk.publicKey)
    const dh2 = x25519(ek.secretKey, recipient.dxk)
    const dh3 = x25519(ek.secretKey, spk.publicKey)
    const key = envelopeKey(dh1, dh2, dh3, sender.dxk.publicKey, recipient.dxk, spk.publicKey, ek.publicKey)
    try {
      const ad = envelopeAd(
        sender.userId,
        sender.deviceId,
        recipient.userId,
        recipient.deviceId,
        spk.spkId,
        ek.publicKey,
      )
      const { nonce, ciphertext } = aeadEncrypt(key, payload, ad)
      return {
        suite: E2E_SUITE,
        sender_user: sender.userId,
        sender_dev: sender.deviceId,
        recip_user: recipient.userId,
        recip_dev: recipient.deviceId,
        spk_id: spk.spkId,
        ek: toBase64Url(ek.publicKey),
        nonce: toBase64Url(nonce),
        ciphertext: toBase64Url(ciphertext),
      }
    } finally {
      memzero(key)
    }
  } finally {
    memzero(ek.secretKey)
  }
}

/** Parses an untrusted envelope (E2E.md section 2.2); throws `bad_input` for any malformed field. */
export function parseEnvelope(value: unknown): Envelope {
  if (!isRecord(value) || value.suite !== E2E_SUITE) throw new E2eError('bad_input', 'not a v1 envelope')
  for (const name of ['sender_user', 'sender_dev', 'recip_user', 'recip_dev', 'spk_id'] as const)
    assertId(name, value[name])
  const ek = value.ek
  const nonce = value.nonce
  const ciphertext = value.ciphertext
  if (typeof ek !== 'string' || fromBase64Url(ek)?.length !== DH_KEY_BYTES)
    throw new E2eError('bad_input', 'ek must be 32 bytes')
  if (typeof nonce !== 'string' || fromBase64Url(nonce)?.length !== AEAD_NONCE_BYTES)
    throw new E2eError('bad_input', 'nonce must be 24 bytes')
  if (
    typeof ciphertext !== 'string' ||
    ciphertext.length > ((MAX_ENVELOPE_PAYLOAD_BYTES + AEAD_TAG_BYTES) * 4) / 3 + 4
  )
    throw new E2eError('bad_input', 'ciphertext must be base64url')
  const ct = fromBase64Url(ciphertext)
  if (ct === null || ct.length < AEAD_TAG_BYTES)
    throw new E2eError('bad_input', 'ciphertext must be base64url')
  return {
    suite: E2E_SUITE,
    sender_user: value.sender_user as string,
    sender_dev: value.sender_dev as string,
    recip_user: value.recip_user as string,
    recip_dev: value.recip_dev as string,
    spk_id: value.spk_id as string,
    ek,
    nonce,
    ciphertext,
  }
}

/**
 * Opens an envelope addressed to this device (E2E.md section 2.2). Checks, in order: shape → addressed
 * to us (`wrong_recipient`) → prekey still held (`unknown_prekey`) → sender device in a verified
 * device list (`unknown_device`) → `H(EK)` not seen with this prekey (`replay`) → AEAD
 * (`decrypt_failed`, which also covers a wrong sender, recipient or prekey). Records `H(EK)` only after
 * success.
 */
export function openEnvelope(value: unknown, self: EnvelopeSelf, senderDxk: SenderKeyLookup): OpenedEnvelope {
  const envelope = parseEnvelope(value)
  if (envelope.recip_user !== self.userId || envelope.recip_dev !== self.deviceId)
    throw new E2eError('wrong_recipient', 'envelope addressed to another device')
  const prekey = livePrekeys.get(self.prekeys)?.get(envelope.spk_id)
  if (prekey === undefined) throw new E2eError('unknown_prekey', 'prekey unknown or already deleted')
  const dxkA = senderDxk(envelope.sender_user, envelope.sender_dev)
  if (!(dxkA instanceof Uint8Array) || dxkA.length !== DH_KEY_BYTES)
    throw new E2eError('unknown_device', 'sender device not in a verified device list')
  const ek = fromBase64Url(envelope.ek)!
  const ephemeralHash = toBase64Url(generichash(32, ek))
  if (prekey.seen.has(ephemeralHash)) throw new E2eError('replay', 'envelope already opened')
  const dh1 = x25519(prekey.secretKey, dxkA)
  const dh2 = x25519(self.dxk.secretKey, ek)
  const dh3 = x25519(prekey.secretKey, ek)
  const key = envelopeKey(dh1, dh2, dh3, dxkA, self.dxk.publicKey, prekey.publicKey, ek)
  try {
    const ad = envelopeAd(
      envelope.sender_user,
      envelope.sender_dev,
      envelope.recip_user,
      envelope.recip_dev,
      envelope.spk_id,
      ek,
    )
    const payload = aeadDecrypt(key, fromBase64Url(envelope.nonce)!, fromBase64Url(envelope.ciphertext)!, ad)
    prekey.seen.add(ephemeralHash)
    return { senderUser: envelope.sender_user, senderDev: envelope.sender_dev, payload, ephemeralHash }
  } finally {
    memzero(key)
  }
}
