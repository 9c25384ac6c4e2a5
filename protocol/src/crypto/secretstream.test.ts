import { beforeAll, describe, expect, it } from 'vitest'
import { utf8 } from '../encoding.ts'
import {
  SECRETSTREAM_ABYTES,
  SECRETSTREAM_HEADER_BYTES,
  SecretStreamPuller,
  SecretStreamPusher,
} from './secretstream.ts'
import { sodiumReady } from './sodium.ts'

const KEY = new Uint8Array(32).fill(0x42)

beforeAll(async () => {
  await sodiumReady()
})

function stream() {
  const { pusher, header } = SecretStreamPusher.init(KEY)
  const puller = SecretStreamPuller.init(header, KEY)
  if (!puller.ok) throw new Error('init failed')
  return { pusher, header, puller: puller.value }
}

describe('secretstream', () => {
  it('round-trips messages in order and ends with the final tag', () => {
    const { pusher, header, puller } = stream()
    expect(header).toHaveLength(SECRETSTREAM_HEADER_BYTES)
    const one = pusher.push(utf8('one'))
    expect(one).toHaveLength(3 + SECRETSTREAM_ABYTES)
    expect(puller.pull(one)).toEqual({ ok: true, value: { message: utf8('one'), tag: 'message' } })
    expect(puller.pull(pusher.push(utf8('two')))).toEqual({
      ok: true,
      value: { message: utf8('two'), tag: 'message' },
    })
    expect(puller.pull(pusher.push(new Uint8Array(0), true))).toEqual({
      ok: true,
      value: { message: new Uint8Array(0), tag: 'final' },
    })
    expect(pusher.closed).toBe(true)
    expect(puller.closed).toBe(true)
    expect(puller.pull(one)).toEqual({ ok: false, error: 'closed' })
  })

  it('fails closed: after a forged message even genuine ones are refused', () => {
    const { pusher, puller } = stream()
    const sealed = pusher.push(utf8('hello'))
    const forged = sealed.slice()
    forged[forged.length - 1]! ^= 1
    expect(puller.pull(forged)).toEqual({ ok: false, error: 'bad_ciphertext' })
    expect(puller.pull(sealed)).toEqual({ ok: false, error: 'closed' })
  })

  it('refuses short ciphertexts without throwing', () => {
    const { puller } = stream()
    expect(puller.pull(new Uint8Array(SECRETSTREAM_ABYTES - 1))).toEqual({
      ok: false,
      error: 'bad_ciphertext',
    })
  })

  it('refuses a header of the wrong length as untrusted input', () => {
    expect(SecretStreamPuller.init(new Uint8Array(23), KEY)).toEqual({ ok: false, error: 'bad_header' })
  })

  it('throws on keys of the wrong length and on pushing after the end (caller bugs)', () => {
    expect(() => SecretStreamPusher.init(new Uint8Array(31))).toThrow(TypeError)
    expect(() => SecretStreamPuller.init(new Uint8Array(24), new Uint8Array(16))).toThrow(TypeError)
    const { pusher } = stream()
    pusher.push(new Uint8Array(0), true)
    expect(() => pusher.push(utf8('late'))).toThrow(/closed/)
  })

  it('disposes idempotently and keeps working for other streams afterwards', () => {
    for (let i = 0; i < 1000; i++) {
      const { pusher, puller } = stream()
      pusher.dispose()
      pusher.dispose()
      puller.dispose()
    }
    const { pusher, puller } = stream()
    expect(puller.pull(pusher.push(utf8('still fine'))).ok).toBe(true)
  })
})
