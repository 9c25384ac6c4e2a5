import { describe, expect, it } from 'vitest'
import { toBase64Url } from '../encoding.ts'
import { CONTENT_SCHEMAS, ENCRYPTED_ROOM_TYPES, SENDABLE_TYPES } from './content.ts'
import {
  BackupSessionRecord,
  EncryptedContent,
  KeysQueryBody,
  MAX_LIST_DEVICES,
  PutBackupSessionsBody,
  SignedBackupMetadata,
  SignedDeviceList,
  SignedPrekey,
} from './keys.ts'

const b64 = (n: number, fill = 1) => toBase64Url(new Uint8Array(n).fill(fill))
const entry = (i: number) => ({
  device_id: `DEVICE${String(i).padStart(6, '0')}`,
  dsk: b64(32, i % 256),
  dxk: b64(32, (i + 1) % 256),
  added_ts: 1,
})
const list = {
  suite: 'e2e/v1',
  user_id: '@alice:acme.example',
  uik: b64(32),
  version: 2,
  prev_hash: b64(32, 2),
  devices: [entry(1)],
  signature: b64(64),
}

describe('E2E wire schemas', () => {
  it('accepts a well-formed device list and holds prev_hash to the version', () => {
    expect(SignedDeviceList.safeParse(list).success).toBe(true)
    expect(SignedDeviceList.safeParse({ ...list, version: 1 }).success).toBe(false)
    expect(SignedDeviceList.safeParse({ ...list, version: 1, prev_hash: null }).success).toBe(true)
    expect(SignedDeviceList.safeParse({ ...list, prev_hash: null }).success).toBe(false)
    expect(SignedDeviceList.safeParse({ ...list, version: 0, prev_hash: null }).success).toBe(false)
  })

  it('refuses extra fields, other suites, wrong lengths and non-canonical base64url', () => {
    expect(SignedDeviceList.safeParse({ ...list, extra: 1 }).success).toBe(false)
    expect(SignedDeviceList.safeParse({ ...list, suite: 'e2e/v2' }).success).toBe(false)
    expect(SignedDeviceList.safeParse({ ...list, uik: b64(31) }).success).toBe(false)
    expect(SignedDeviceList.safeParse({ ...list, signature: b64(64) + '=' }).success).toBe(false)
    // 32 bytes are 43 characters whose last one carries 2 unused bits: they must be zero.
    const nonCanonical = list.uik.slice(0, 42) + 'B'
    expect(SignedDeviceList.safeParse({ ...list, uik: nonCanonical }).success).toBe(false)
    expect(SignedDeviceList.safeParse({ ...list, devices: [{ ...entry(1), device_id: 'x' }] }).success).toBe(
      false,
    )
  })

  it('bounds devices, users per query and records per call', () => {
    const devices = Array.from({ length: MAX_LIST_DEVICES + 1 }, (_, i) => entry(i))
    expect(SignedDeviceList.safeParse({ ...list, devices }).success).toBe(false)
    expect(SignedDeviceList.safeParse({ ...list, devices: devices.slice(1) }).success).toBe(true)
    const users = Array.from({ length: 101 }, (_, i) => `@u${i}:acme.example`)
    expect(KeysQueryBody.safeParse({ users }).success).toBe(false)
    expect(KeysQueryBody.safeParse({ users: users.slice(1) }).success).toBe(true)
    expect(KeysQueryBody.safeParse({ users: [] }).success).toBe(false)
    const record = {
      room_id: '!AAAAAAAAAAAAAAAAAAAAAA:acme.example',
      session_id: b64(32),
      nonce: b64(24),
      ciphertext: b64(300),
    }
    expect(BackupSessionRecord.safeParse(record).success).toBe(true)
    expect(BackupSessionRecord.safeParse({ ...record, ciphertext: b64(16 * 1024 + 1) }).success).toBe(false)
    expect(PutBackupSessionsBody.safeParse({ version: 'v1', records: [record] }).success).toBe(true)
    expect(PutBackupSessionsBody.safeParse({ version: 'v1', records: Array(101).fill(record) }).success).toBe(
      false,
    )
    expect(PutBackupSessionsBody.safeParse({ version: 'has space', records: [record] }).success).toBe(false)
  })

  it('checks prekeys, backup metadata and m.encrypted content', () => {
    const prekey = {
      suite: 'e2e/v1',
      spk_id: b64(16),
      public_key: b64(32),
      created_ts: 5,
      signature: b64(64),
    }
    expect(SignedPrekey.safeParse(prekey).success).toBe(true)
    expect(SignedPrekey.safeParse({ ...prekey, spk_id: b64(32) }).success).toBe(false)
    const metadata = {
      suite: 'e2e/v1',
      user_id: '@alice:acme.example',
      version: 'v1',
      kdf: { algorithm: 'argon2id13', opslimit: 3, memlimit: 256 * 1024 * 1024, salt: b64(16) },
      key_check: b64(16),
      signature: b64(64),
    }
    expect(SignedBackupMetadata.safeParse(metadata).success).toBe(true)
    expect(SignedBackupMetadata.safeParse({ ...metadata, kdf: null }).success).toBe(true)
    expect(
      SignedBackupMetadata.safeParse({ ...metadata, kdf: { ...metadata.kdf, memlimit: 1024 } }).success,
    ).toBe(false)
    const encrypted = {
      suite: 'e2e/v1',
      session_id: b64(32),
      sender_user: '@alice:acme.example',
      sender_dev: 'ABCDEFGHIJKL',
      index: 3,
      nonce: b64(24),
      ciphertext: b64(272),
      signature: b64(64),
    }
    expect(EncryptedContent.safeParse(encrypted).success).toBe(true)
    expect(EncryptedContent.safeParse({ ...encrypted, index: 1000 }).success).toBe(false)
    expect(EncryptedContent.safeParse({ ...encrypted, body: 'leak' }).success).toBe(false)
    expect(EncryptedContent.safeParse({ ...encrypted, ciphertext: '' }).success).toBe(false)
    expect(CONTENT_SCHEMAS['m.encrypted']).toBe(EncryptedContent)
    expect(SENDABLE_TYPES).toContain('m.encrypted')
    expect([...ENCRYPTED_ROOM_TYPES].sort()).toEqual(['m.encrypted', 'm.redaction'])
    expect(CONTENT_SCHEMAS['m.room.encryption'].safeParse({ suite: 'e2e/v1' }).success).toBe(true)
    expect(CONTENT_SCHEMAS['m.room.encryption'].safeParse({ suite: 'none' }).success).toBe(false)
  })
})
