import { beforeAll, describe, expect, it } from 'vitest'
import { fromBase64Url, toBase64Url, utf8 } from '../../encoding.ts'
import { sodiumReady } from '../sodium.ts'
import {
  backupKeyCheck,
  base58Decode,
  base58Encode,
  decodeRecoveryKey,
  decryptBackupSession,
  deriveBackupKeys,
  derivePassphraseKey,
  newPassphraseKdfParams,
  openRecoveryKey,
  parseWrappedRecoveryKey,
  sealRecoveryKey,
  encodeRecoveryKey,
  encryptBackupSession,
  generateRecoveryKey,
  MIN_PWHASH_MEMLIMIT,
  openSecret,
  sealSecret,
  signBackupMetadata,
  unwrapRecoveryKey,
  verifyBackupMetadata,
  wrapRecoveryKey,
} from './backup.ts'
import {
  aeadEncrypt,
  encodeFields,
  generichash,
  kdfDerive,
  signingKeyPair,
  type SigningKeyPair,
} from './primitives.ts'
import { InboundGroupSession, OutboundGroupSession } from './ratchet.ts'
import { rejection } from './test-utils.ts'

const T0 = 1_700_000_000_000
const ALICE = '@alice:a.example'
// Fast argon2id for tests only: the 64 MiB minimum with opslimit 1, passed explicitly.
const TEST_COST = { opslimit: 1, memlimit: MIN_PWHASH_MEMLIMIT }

// Top-level: some fixtures are built while the suites are collected.
await sodiumReady()

function roomKey(room = '!room:a.example') {
  return OutboundGroupSession.create({
    roomId: room,
    senderUser: ALICE,
    senderDev: 'A1',
    membershipEpoch: new Uint8Array(32).fill(1),
    now: T0,
  }).exportRoomKey()
}

describe('recovery key encoding (E2E.md section 2.5)', () => {
  it('encodes base58 like Bitcoin, leading zeros included', () => {
    expect(base58Encode(utf8('hello world'))).toBe('StV1DL6CwTryKyV')
    expect(base58Encode(Uint8Array.of(0, 0, 1))).toBe('112')
    expect(base58Decode('112')).toEqual(Uint8Array.of(0, 0, 1))
    expect(base58Decode('StV1DL6CwTryKyV')).toEqual(utf8('hello world'))
    expect(rejection(() => base58Decode('0OIl'))).toBe('bad_input')
  })

  it('round-trips a recovery key, tolerating whitespace, and catches typos by checksum', () => {
    const rk = generateRecoveryKey()
    const text = encodeRecoveryKey(rk)
    expect(text).toMatch(/^([1-9A-HJ-NP-Za-km-z]{1,4} ?)+$/)
    expect(decodeRecoveryKey(text)).toEqual(rk)
    expect(decodeRecoveryKey(`  ${text.replace(/ /g, '\n')} `)).toEqual(rk)
    const chars = text.replace(/ /g, '')
    for (let i = 0; i < chars.length; i++) {
      const typo = chars.slice(0, i) + (chars[i] === '2' ? '3' : '2') + chars.slice(i + 1)
      expect(rejection(() => decodeRecoveryKey(typo))).toBe('bad_checksum')
    }
    expect(rejection(() => decodeRecoveryKey(chars.slice(1)))).toBe('bad_checksum')
  })

  it('derives BK and SSK with crypto_kdf contexts backupv1 and sstorev1', () => {
    const rk = new Uint8Array(32).fill(4)
    const { bk, ssk } = deriveBackupKeys(rk)
    expect(bk).toEqual(kdfDerive(32, 1, 'backupv1', rk))
    expect(ssk).toEqual(kdfDerive(32, 2, 'sstorev1', rk))
    expect(bk).not.toEqual(ssk)
    expect(backupKeyCheck(bk)).toEqual(generichash(16, utf8('check'), bk))
  })
})

describe('passphrase wrap with argon2id (E2E.md section 2.5)', () => {
  it('unwraps with the right passphrase, fails closed with a wrong one, and stores its parameters', () => {
    const rk = generateRecoveryKey()
    const wrapped = wrapRecoveryKey(rk, 'correct horse battery staple', TEST_COST)
    expect(wrapped.kdf).toMatchObject({ algorithm: 'argon2id13', opslimit: 1, memlimit: 64 * 1024 * 1024 })
    expect(fromBase64Url(wrapped.kdf.salt)!.length).toBe(16)
    expect(unwrapRecoveryKey(structuredClone(wrapped), 'correct horse battery staple')).toEqual(rk)
    expect(rejection(() => unwrapRecoveryKey(wrapped, 'correct horse battery stapler'))).toBe(
      'decrypt_failed',
    )
    // Changed parameters change the key and the AD.
    const salt = fromBase64Url(wrapped.kdf.salt)!
    salt[0]! ^= 1
    const otherSalt = { ...wrapped, kdf: { ...wrapped.kdf, salt: toBase64Url(salt) } }
    expect(rejection(() => unwrapRecoveryKey(otherSalt, 'correct horse battery staple'))).toBe(
      'decrypt_failed',
    )
  })

  it('refuses memlimit below 64 MiB or absurd stored parameters before any work', () => {
    const rk = generateRecoveryKey()
    expect(rejection(() => wrapRecoveryKey(rk, 'pw', { opslimit: 1, memlimit: 32 * 1024 * 1024 }))).toBe(
      'bad_input',
    )
    expect(rejection(() => wrapRecoveryKey(rk, 'pw', { opslimit: 0, memlimit: MIN_PWHASH_MEMLIMIT }))).toBe(
      'bad_input',
    )
    const stored = {
      suite: 'e2e/v1',
      kdf: {
        algorithm: 'argon2id13',
        opslimit: 3,
        memlimit: 8 * 1024 ** 3,
        salt: toBase64Url(new Uint8Array(16)),
      },
      nonce: toBase64Url(new Uint8Array(24)),
      ciphertext: toBase64Url(new Uint8Array(48)),
    }
    expect(rejection(() => unwrapRecoveryKey(stored, 'pw'))).toBe('bad_input')
    expect(
      rejection(() => unwrapRecoveryKey({ ...stored, kdf: { ...stored.kdf, algorithm: 'scrypt' } }, 'pw')),
    ).toBe('bad_input')
    expect(rejection(() => wrapRecoveryKey(rk, '', TEST_COST))).toBe('bad_input')
  })
})

describe('argon2id parameters on unlock (E2E.md section 3 row 19)', () => {
  it('unlocks with the stored parameters, not the defaults, and an edited parameter fails closed', () => {
    const rk = generateRecoveryKey()
    // opslimit 2 is neither the default (3) nor TEST_COST's (1): only the stored value derives the key.
    const wrapped = wrapRecoveryKey(rk, 'pass phrase', { opslimit: 2, memlimit: MIN_PWHASH_MEMLIMIT })
    expect(wrapped.kdf).toMatchObject({ opslimit: 2, memlimit: MIN_PWHASH_MEMLIMIT })
    expect(unwrapRecoveryKey(wrapped, 'pass phrase')).toEqual(rk)
    for (const kdf of [
      { ...wrapped.kdf, opslimit: 1 },
      { ...wrapped.kdf, opslimit: 3 },
      { ...wrapped.kdf, memlimit: MIN_PWHASH_MEMLIMIT + 1024 * 1024 },
    ])
      expect(rejection(() => unwrapRecoveryKey({ ...wrapped, kdf }, 'pass phrase'))).toBe('decrypt_failed')
  })

  it('refuses a stored memlimit below 64 MiB on unlock (a server lowering the cost to speed up guessing)', () => {
    const wrapped = wrapRecoveryKey(generateRecoveryKey(), 'pass phrase', TEST_COST)
    for (const memlimit of [MIN_PWHASH_MEMLIMIT - 1024, 32 * 1024 * 1024, 8 * 1024 * 1024])
      expect(
        rejection(() => unwrapRecoveryKey({ ...wrapped, kdf: { ...wrapped.kdf, memlimit } }, 'pass phrase')),
      ).toBe('bad_input')
  })
})

describe('passphrase wrap in two steps, the KDF off the calling thread (E2E.md section 2.5)', () => {
  it('a key derived elsewhere seals and opens the same wrap as wrapRecoveryKey', () => {
    const rk = generateRecoveryKey()
    const params = newPassphraseKdfParams(TEST_COST)
    expect(params).toMatchObject({ algorithm: 'argon2id13', opslimit: 1, memlimit: MIN_PWHASH_MEMLIMIT })
    const key = derivePassphraseKey('pass phrase', params)
    const wrapped = sealRecoveryKey(rk, key, params)
    expect(unwrapRecoveryKey(wrapped, 'pass phrase')).toEqual(rk)
    expect(openRecoveryKey(wrapped, key)).toEqual(rk)
    expect(rejection(() => openRecoveryKey(wrapped, new Uint8Array(32)))).toBe('decrypt_failed')
    // The parameters are AD: a server that lowers them breaks the wrap even with the right key.
    const cheaper = { ...wrapped, kdf: { ...wrapped.kdf, memlimit: MIN_PWHASH_MEMLIMIT * 2 } }
    expect(rejection(() => openRecoveryKey(cheaper, key))).toBe('decrypt_failed')
  })

  it('defaults to the spec cost and checks stored wraps before any work', () => {
    expect(newPassphraseKdfParams()).toMatchObject({ opslimit: 3, memlimit: 128 * 1024 * 1024 })
    const params = newPassphraseKdfParams(TEST_COST)
    const wrapped = sealRecoveryKey(generateRecoveryKey(), new Uint8Array(32), params)
    expect(parseWrappedRecoveryKey(structuredClone(wrapped))).toEqual(wrapped)
    expect(rejection(() => parseWrappedRecoveryKey({ ...wrapped, nonce: 'AA' }))).toBe('bad_input')
    expect(rejection(() => parseWrappedRecoveryKey({ ...wrapped, kdf: { ...params, opslimit: 99 } }))).toBe(
      'bad_input',
    )
    expect(rejection(() => derivePassphraseKey('', params))).toBe('bad_input')
  })
})

describe('key backup (E2E.md section 3 row 16)', () => {
  const version = '1'
  let uik: SigningKeyPair
  let identity: { userId: string; uik: Uint8Array }
  let rk: Uint8Array
  let bk: Uint8Array

  beforeAll(() => {
    uik = signingKeyPair()
    identity = { userId: ALICE, uik: uik.publicKey }
    rk = generateRecoveryKey()
    bk = deriveBackupKeys(rk).bk
  })

  it('restores sessions with the right recovery key', () => {
    const outbound = OutboundGroupSession.create({
      roomId: '!room:a.example',
      senderUser: ALICE,
      senderDev: 'A1',
      membershipEpoch: new Uint8Array(32).fill(1),
      now: T0,
    })
    const key = outbound.exportRoomKey()
    const metadata = signBackupMetadata(uik, ALICE, version, bk)
    const record = encryptBackupSession(bk, version, key)
    expect(JSON.stringify(record)).not.toContain(key.chain_key)

    // New device: types the recovery key, checks metadata, restores.
    const restoredBk = deriveBackupKeys(decodeRecoveryKey(encodeRecoveryKey(rk))).bk
    verifyBackupMetadata(structuredClone(metadata), identity, restoredBk)
    const payload = decryptBackupSession(restoredBk, version, structuredClone(record))
    expect(payload).toEqual(key)
    const session = InboundGroupSession.fromRoomKey(payload, { userId: ALICE, deviceId: 'A1' }, T0)
    const message = outbound.encrypt(
      { room_id: '!room:a.example', type: 'm.message', content: { body: 'hi' } },
      T0,
    )
    expect(session.decrypt(message, { roomId: '!room:a.example', receivedTs: T0 }).plaintext.content).toEqual(
      {
        body: 'hi',
      },
    )
  })

  it('fails closed with a wrong key: key_check mismatch, records undecryptable', () => {
    const metadata = signBackupMetadata(uik, ALICE, version, bk)
    const record = encryptBackupSession(bk, version, roomKey())
    const wrong = deriveBackupKeys(generateRecoveryKey()).bk
    expect(rejection(() => verifyBackupMetadata(metadata, identity, wrong))).toBe('wrong_key')
    expect(rejection(() => decryptBackupSession(wrong, version, record))).toBe('decrypt_failed')
  })

  it('rejects metadata the server swapped or edited, so the client does not upload', () => {
    const serverUik = signingKeyPair()
    const serverBk = deriveBackupKeys(generateRecoveryKey()).bk
    const serverMetadata = signBackupMetadata(serverUik, ALICE, '2', serverBk)
    expect(rejection(() => verifyBackupMetadata(serverMetadata, identity, bk))).toBe('bad_signature')
    const genuine = signBackupMetadata(uik, ALICE, version, bk)
    const edited = { ...genuine, key_check: serverMetadata.key_check }
    expect(rejection(() => verifyBackupMetadata(edited, identity, serverBk))).toBe('bad_signature')
    expect(rejection(() => verifyBackupMetadata({ ...genuine, version: '9' }, identity, bk))).toBe(
      'bad_signature',
    )
    expect(rejection(() => verifyBackupMetadata({ ...genuine, signature: undefined }, identity, bk))).toBe(
      'bad_signature',
    )
    expect(
      rejection(() => verifyBackupMetadata(genuine, { userId: '@eve:a.example', uik: uik.publicKey })),
    ).toBe('wrong_user')
    // A genuine old backup of Alice whose key this device does not hold.
    const oldBk = deriveBackupKeys(generateRecoveryKey()).bk
    expect(
      rejection(() => verifyBackupMetadata(signBackupMetadata(uik, ALICE, '0', oldBk), identity, bk)),
    ).toBe('wrong_key')
    // Signed passphrase parameters are covered by the signature too.
    const withKdf = signBackupMetadata(uik, ALICE, version, bk, {
      algorithm: 'argon2id13',
      opslimit: 3,
      memlimit: 256 * 1024 * 1024,
      salt: toBase64Url(new Uint8Array(16)),
    })
    expect(verifyBackupMetadata(withKdf, identity, bk).kdf?.opslimit).toBe(3)
    expect(
      rejection(() =>
        verifyBackupMetadata({ ...withKdf, kdf: { ...withKdf.kdf!, opslimit: 1 } }, identity, bk),
      ),
    ).toBe('bad_signature')
  })

  it('rejects a session the server injects or moves: AEAD fails', () => {
    const key = roomKey()
    const forgedKey = new Uint8Array(32).fill(9)
    const ad = encodeFields('e2e/v1/backup', version, key.room_id, key.session_id)
    const { nonce, ciphertext } = aeadEncrypt(forgedKey, utf8(JSON.stringify(key)), ad)
    const injected = {
      room_id: key.room_id,
      session_id: key.session_id,
      nonce: toBase64Url(nonce),
      ciphertext: toBase64Url(ciphertext),
    }
    expect(rejection(() => decryptBackupSession(bk, version, injected))).toBe('decrypt_failed')

    const record = encryptBackupSession(bk, version, key)
    const other = roomKey('!other:a.example')
    expect(rejection(() => decryptBackupSession(bk, version, { ...record, room_id: other.room_id }))).toBe(
      'decrypt_failed',
    )
    expect(
      rejection(() => decryptBackupSession(bk, version, { ...record, session_id: other.session_id })),
    ).toBe('decrypt_failed')
    expect(rejection(() => decryptBackupSession(bk, '2', record))).toBe('decrypt_failed')
    const ct = fromBase64Url(record.ciphertext)!
    ct[0]! ^= 1
    expect(
      rejection(() => decryptBackupSession(bk, version, { ...record, ciphertext: toBase64Url(ct) })),
    ).toBe('decrypt_failed')
  })

  it('keeps secret-storage items bound to their name and SSK', () => {
    const { ssk } = deriveBackupKeys(rk)
    const sealed = sealSecret(ssk, 'uik', uik.secretKey)
    expect(openSecret(ssk, sealed)).toEqual(uik.secretKey)
    expect(rejection(() => openSecret(ssk, { ...sealed, name: 'bk' }))).toBe('decrypt_failed')
    expect(rejection(() => openSecret(bk, sealed))).toBe('decrypt_failed')
  })
})
