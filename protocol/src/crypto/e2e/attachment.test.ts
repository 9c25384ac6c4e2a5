import { describe, expect, it } from 'vitest'
import { concatBytes, fromBase64Url, toBase64Url } from '../../encoding.ts'
import { sodium, sodiumReady } from '../sodium.ts'
import {
  ATTACHMENT_CHUNK_BYTES,
  ATTACHMENT_CHUNK_OVERHEAD,
  decryptAttachment,
  encryptAttachment,
  type AttachmentInfo,
} from './attachment.ts'
import { generichash } from './primitives.ts'
import { rejection } from './test-utils.ts'

// Top-level: some fixtures are built while the suites are collected.
await sodiumReady()

const CONTEXT = { roomId: '!room:a.example', uploadId: 'up1' }
const SEALED_CHUNK = ATTACHMENT_CHUNK_BYTES + ATTACHMENT_CHUNK_OVERHEAD

function file(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff)
}

// Rehash tampered ciphertext so the test reaches the secretstream checks behind the hash check.
function rehashed(info: AttachmentInfo, ciphertext: Uint8Array): AttachmentInfo {
  return { ...info, hash: toBase64Url(generichash(32, ciphertext)) }
}

function chunksOf(ciphertext: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let offset = 0; offset < ciphertext.length; offset += SEALED_CHUNK)
    out.push(ciphertext.subarray(offset, offset + SEALED_CHUNK))
  return out
}

describe('attachments (E2E.md section 2.5)', () => {
  it.each([0, 1, ATTACHMENT_CHUNK_BYTES - 1, ATTACHMENT_CHUNK_BYTES, ATTACHMENT_CHUNK_BYTES + 1, 200_000])(
    'round-trips %i bytes in 64 KiB chunks with a hash and size',
    (length) => {
      const plaintext = file(length)
      const encrypted = encryptAttachment(plaintext, CONTEXT)
      const chunks = Math.max(1, Math.ceil(length / ATTACHMENT_CHUNK_BYTES))
      expect(encrypted.ciphertext.length).toBe(length + chunks * ATTACHMENT_CHUNK_OVERHEAD)
      expect(encrypted.size).toBe(length)
      expect(fromBase64Url(encrypted.key)!.length).toBe(32)
      expect(fromBase64Url(encrypted.header)!.length).toBe(24)
      expect(fromBase64Url(encrypted.hash)).toEqual(generichash(32, encrypted.ciphertext))
      const decrypted = decryptAttachment(encrypted.ciphertext, structuredClone(encrypted), CONTEXT)
      expect(decrypted.length).toBe(length)
      expect(Buffer.compare(decrypted, plaintext)).toBe(0) // toEqual on 200 KB is slow
    },
  )

  it('uses a fresh key per file', () => {
    const a = encryptAttachment(file(10), CONTEXT)
    const b = encryptAttachment(file(10), CONTEXT)
    expect(a.key).not.toBe(b.key)
  })
})

describe('attachment tampering (E2E.md section 3 row 17)', () => {
  const plaintext = file(3 * ATTACHMENT_CHUNK_BYTES + 500) // four chunks, the last one short
  const encrypted = encryptAttachment(plaintext, CONTEXT)
  const chunks = chunksOf(encrypted.ciphertext)

  it('rejects a ciphertext that does not match the announced hash', () => {
    const bad = encrypted.ciphertext.slice()
    bad[100]! ^= 1
    expect(rejection(() => decryptAttachment(bad, encrypted, CONTEXT))).toBe('hash_mismatch')
    expect(rejection(() => decryptAttachment(encrypted.ciphertext.subarray(1), encrypted, CONTEXT))).toBe(
      'hash_mismatch',
    )
  })

  it('rejects a stream whose last chunk was dropped (no TAG_FINAL)', () => {
    expect(chunks).toHaveLength(4)
    const dropped = concatBytes(...chunks.slice(0, 3))
    expect(rejection(() => decryptAttachment(dropped, rehashed(encrypted, dropped), CONTEXT))).toBe(
      'truncated',
    )
    const cut = encrypted.ciphertext.subarray(0, encrypted.ciphertext.length - 1)
    expect(rejection(() => decryptAttachment(cut, rehashed(encrypted, cut), CONTEXT))).toBe('decrypt_failed')
  })

  it('rejects reordered chunks', () => {
    const swapped = concatBytes(chunks[1]!, chunks[0]!, chunks[2]!, chunks[3]!)
    expect(rejection(() => decryptAttachment(swapped, rehashed(encrypted, swapped), CONTEXT))).toBe(
      'decrypt_failed',
    )
    const swappedLater = concatBytes(chunks[0]!, chunks[2]!, chunks[1]!, chunks[3]!)
    expect(rejection(() => decryptAttachment(swappedLater, rehashed(encrypted, swappedLater), CONTEXT))).toBe(
      'decrypt_failed',
    )
  })

  it('rejects the wrong room or upload id in the first-chunk AD', () => {
    const info = encrypted
    expect(
      rejection(() => decryptAttachment(encrypted.ciphertext, info, { ...CONTEXT, roomId: '!x:a.example' })),
    ).toBe('decrypt_failed')
    expect(
      rejection(() => decryptAttachment(encrypted.ciphertext, info, { ...CONTEXT, uploadId: 'up2' })),
    ).toBe('decrypt_failed')
  })

  it('rejects anything after TAG_FINAL', () => {
    const small = encryptAttachment(file(10), CONTEXT)
    const other = encryptAttachment(file(10), CONTEXT)
    const appended = concatBytes(small.ciphertext, other.ciphertext)
    expect(
      rejection(() => decryptAttachment(appended, { ...rehashed(small, appended), size: 20 }, CONTEXT)),
    ).toBe('trailing_data')
    expect(rejection(() => decryptAttachment(appended, rehashed(small, appended), CONTEXT))).toBe(
      'trailing_data',
    )
  })

  it('treats pull returning false (a forged chunk) as an error, and a wrong key or header likewise', () => {
    // libsodium's own contract: pull returns false, it does not throw.
    const s = sodium()
    const state = s.crypto_secretstream_xchacha20poly1305_init_pull(
      fromBase64Url(encrypted.header)!,
      new Uint8Array(32),
    )
    expect(s.crypto_secretstream_xchacha20poly1305_pull(state, chunks[0]!, null)).toBe(false)

    const forged = encrypted.ciphertext.slice()
    forged[SEALED_CHUNK + 5]! ^= 1
    expect(rejection(() => decryptAttachment(forged, rehashed(encrypted, forged), CONTEXT))).toBe(
      'decrypt_failed',
    )
    const wrongKey = { ...encrypted, key: toBase64Url(new Uint8Array(32).fill(1)) }
    expect(rejection(() => decryptAttachment(encrypted.ciphertext, wrongKey, CONTEXT))).toBe('decrypt_failed')
    const header = fromBase64Url(encrypted.header)!
    header[0]! ^= 1
    const wrongHeader = { ...encrypted, header: toBase64Url(header) }
    expect(rejection(() => decryptAttachment(encrypted.ciphertext, wrongHeader, CONTEXT))).toBe(
      'decrypt_failed',
    )
  })

  it('rejects a size that differs from the plaintext, and malformed info', () => {
    expect(
      rejection(() =>
        decryptAttachment(encrypted.ciphertext, { ...encrypted, size: plaintext.length - 1 }, CONTEXT),
      ),
    ).toBe('trailing_data')
    expect(
      rejection(() =>
        decryptAttachment(encrypted.ciphertext, { ...encrypted, size: plaintext.length + 1 }, CONTEXT),
      ),
    ).toBe('bad_input')
    expect(
      rejection(() => decryptAttachment(encrypted.ciphertext, { ...encrypted, key: 'short' }, CONTEXT)),
    ).toBe('bad_input')
    expect(rejection(() => decryptAttachment(encrypted.ciphertext, null, CONTEXT))).toBe('bad_input')
    expect(
      rejection(() => decryptAttachment(new Uint8Array(0), rehashed(encrypted, new Uint8Array(0)), CONTEXT)),
    ).toBe('truncated')
  })
})
