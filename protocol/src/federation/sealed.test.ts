import { beforeAll, describe, expect, it } from 'vitest'
import { canonicalJson } from '../canonical-json.ts'
import {
  kxClientSessionKeys,
  kxKeyPairFromSeed,
  kxServerSessionKeys,
  type KxSessionKeys,
} from '../crypto/kx.ts'
import { SecretStreamPusher } from '../crypto/secretstream.ts'
import { sodium, sodiumReady } from '../crypto/sodium.ts'
import { utf8 } from '../encoding.ts'
import type { Result } from '../result.ts'
import { MAX_FRAME_BYTES } from './constants.ts'
import type { LinkFailure, LinkFailureReason } from './failure.ts'
import { MAX_SEALED_FRAME_BYTES, SealedChannel, type SealedInput } from './sealed.ts'
import { World, fill, flipBit, party, runHandshake } from './test-utils.ts'

beforeAll(async () => {
  await sodiumReady()
})

const reasonOf = (result: Result<SealedInput, LinkFailure>): LinkFailureReason | 'ok' =>
  result.ok ? 'ok' : result.error.reason

/** Matching crypto_kx keys for C and S from fixed seeds (copies: opening a channel wipes its keys). */
function keyPair(): { c: KxSessionKeys; s: KxSessionKeys } {
  const cPair = kxKeyPairFromSeed(fill(0xaa))
  const sPair = kxKeyPairFromSeed(fill(0xbb))
  const c = kxClientSessionKeys(cPair.publicKey, cPair.secretKey, sPair.publicKey)
  const s = kxServerSessionKeys(sPair.publicKey, sPair.secretKey, cPair.publicKey)
  if (!c.ok || !s.ok) throw new Error('kx failed')
  return { c: c.value, s: s.value }
}

/** Two open channels whose headers have been exchanged. */
function connected(): { c: SealedChannel; s: SealedChannel } {
  const keys = keyPair()
  const c = SealedChannel.open(keys.c)
  const s = SealedChannel.open(keys.s)
  expect(s.channel.receive(c.header)).toEqual({ ok: true, value: { kind: 'header' } })
  expect(c.channel.receive(s.header)).toEqual({ ok: true, value: { kind: 'header' } })
  return { c: c.channel, s: s.channel }
}

/** A peer that pushes raw secretstream messages under C's transmit key, with S's channel receiving. */
function rawPeer(): { push: SecretStreamPusher; s: SealedChannel } {
  const keys = keyPair()
  const { pusher, header } = SecretStreamPusher.init(keys.c.tx.slice())
  const s = SealedChannel.open(keys.s).channel
  expect(s.receive(header).ok).toBe(true)
  return { push: pusher, s }
}

describe('sealed round trip', () => {
  it('carries frames both ways after a real handshake', async () => {
    const w = new World()
    const cp = party('c.example', 1)
    const sp = party('s.example', 2)
    w.publish(cp).publish(sp)
    const run = await runHandshake(w.initiator(cp, 's.example'), w.responder(sp))
    const c = SealedChannel.open(run.clientLink.keys)
    const s = SealedChannel.open(run.serverLink.keys)
    expect(s.channel.receive(c.header).ok).toBe(true)
    expect(c.channel.receive(s.header).ok).toBe(true)
    const frame = { type: 'ping', id: 'é🙂' }
    expect(s.channel.receive(c.channel.seal(frame))).toEqual({
      ok: true,
      value: { kind: 'frame', text: canonicalJson(frame) },
    })
    expect(c.channel.receive(s.channel.sealText('{"type":"pong"}'))).toEqual({
      ok: true,
      value: { kind: 'frame', text: '{"type":"pong"}' },
    })
  })

  it('delivers many frames in order in each direction, independently', () => {
    const { c, s } = connected()
    const fromC = Array.from({ length: 20 }, (_, i) => c.seal({ n: i }))
    const fromS = Array.from({ length: 20 }, (_, i) => s.seal({ m: i }))
    fromC.forEach((sealed, i) =>
      expect(s.receive(sealed)).toEqual({ ok: true, value: { kind: 'frame', text: `{"n":${i}}` } }),
    )
    fromS.forEach((sealed, i) =>
      expect(c.receive(sealed)).toEqual({ ok: true, value: { kind: 'frame', text: `{"m":${i}}` } }),
    )
  })

  it('lets a side send before it has the peer’s header', () => {
    const keys = keyPair()
    const c = SealedChannel.open(keys.c)
    const s = SealedChannel.open(keys.s)
    const early = s.channel.seal({ early: true })
    expect(c.channel.receive(s.header).ok).toBe(true)
    expect(c.channel.receive(early)).toEqual({ ok: true, value: { kind: 'frame', text: '{"early":true}' } })
  })

  it('adds exactly 17 bytes to each frame', () => {
    const { c } = connected()
    expect(c.sealText('{}')).toHaveLength(2 + 17)
  })

  it('wipes the session keys it was given', () => {
    const keys = keyPair()
    SealedChannel.open(keys.c)
    expect(keys.c.rx.every((b) => b === 0)).toBe(true)
    expect(keys.c.tx.every((b) => b === 0)).toBe(true)
  })

  it('closes cleanly with FINAL in each direction', () => {
    const { c, s } = connected()
    expect(s.receive(c.finish())).toEqual({ ok: true, value: { kind: 'final' } })
    expect(s.receiveState).toBe('final')
    expect(c.canSend).toBe(false)
    // S's direction is still open after C's FINAL.
    expect(c.receive(s.seal({ bye: 1 })).ok).toBe(true)
    expect(c.receive(s.finish())).toEqual({ ok: true, value: { kind: 'final' } })
  })

  it('leaves a stream cut short without FINAL in the open state (the driver reports an unclean close)', () => {
    const { c, s } = connected()
    expect(s.receive(c.seal({ last: 1 })).ok).toBe(true)
    expect(s.receiveState).toBe('open')
  })
})

describe('frame size', () => {
  it('seals and opens a frame of exactly 1 MiB', () => {
    const { c, s } = connected()
    const text = '"' + 'a'.repeat(MAX_FRAME_BYTES - 2) + '"'
    const sealed = c.sealText(text)
    expect(sealed).toHaveLength(MAX_SEALED_FRAME_BYTES)
    const opened = s.receive(sealed)
    expect(opened.ok && opened.value.kind === 'frame' && opened.value.text.length).toBe(MAX_FRAME_BYTES)
  })

  it('refuses to seal 1 MiB + 1 byte (counting UTF-8 bytes) or an empty frame', () => {
    const { c } = connected()
    expect(() => c.sealText('"' + 'a'.repeat(MAX_FRAME_BYTES - 1) + '"')).toThrow(RangeError)
    expect(() => c.sealText('"' + 'é'.repeat(MAX_FRAME_BYTES / 2) + '"')).toThrow(RangeError)
    expect(() => c.sealText('')).toThrow(RangeError)
    expect(c.canSend).toBe(true) // a refused seal consumes nothing
  })

  it('refuses an oversized sealed frame from the peer with too_large before decrypting it', () => {
    const { push, s } = rawPeer()
    expect(reasonOf(s.receive(push.push(new Uint8Array(MAX_FRAME_BYTES + 1).fill(0x20))))).toBe('too_large')
    expect(reasonOf(s.receive(new Uint8Array(10)))).toBe('closed')
  })
})

describe('tampering (all fatal)', () => {
  it.each([
    ['the encrypted tag byte', 0],
    ['a ciphertext byte', 5],
    ['the last MAC byte', -1],
  ])('refuses a frame with a flipped bit in %s with bad_ciphertext', (_name, where) => {
    const { c, s } = connected()
    const sealed = c.seal({ body: 'hello' })
    const index = where < 0 ? sealed.length + where : where
    expect(reasonOf(s.receive(flipBit(sealed, index)))).toBe('bad_ciphertext')
    // Fatal: the genuine frame is refused afterwards too.
    expect(reasonOf(s.receive(sealed))).toBe('closed')
    expect(s.failure?.reason).toBe('bad_ciphertext')
  })

  it('refuses reordered frames', () => {
    const { c, s } = connected()
    c.seal({ n: 1 })
    const second = c.seal({ n: 2 })
    expect(reasonOf(s.receive(second))).toBe('bad_ciphertext')
  })

  it('refuses a replayed frame', () => {
    const { c, s } = connected()
    const first = c.seal({ n: 1 })
    expect(s.receive(first).ok).toBe(true)
    expect(reasonOf(s.receive(first))).toBe('bad_ciphertext')
  })

  it.each([
    ['by one byte', (b: Uint8Array) => b.subarray(0, b.length - 1)],
    ['to 16 bytes', (b: Uint8Array) => b.subarray(0, 16)],
    ['to nothing', () => new Uint8Array(0)],
  ])('refuses a frame truncated %s', (_name, cut) => {
    const { c, s } = connected()
    expect(reasonOf(s.receive(cut(c.seal({ n: 1 }))))).toBe('bad_ciphertext')
  })

  it('refuses our own frame reflected back to us', () => {
    const { c } = connected()
    expect(reasonOf(c.receive(c.seal({ n: 1 })))).toBe('bad_ciphertext')
  })

  it('refuses a frame of a different link', () => {
    const one = connected()
    const two = connected() // same fixed keys, fresh random headers
    expect(reasonOf(two.s.receive(one.c.seal({ n: 1 })))).toBe('bad_ciphertext')
  })

  it('refuses a tampered header at the first frame', () => {
    const keys = keyPair()
    const c = SealedChannel.open(keys.c)
    const s = SealedChannel.open(keys.s).channel
    expect(s.receive(flipBit(c.header, 3)).ok).toBe(true)
    expect(reasonOf(s.receive(c.channel.seal({ n: 1 })))).toBe('bad_ciphertext')
  })

  it.each([0, 23, 25, 64])('refuses a %i-byte header with bad_header', (length) => {
    const s = SealedChannel.open(keyPair().s).channel
    expect(reasonOf(s.receive(new Uint8Array(length)))).toBe('bad_header')
  })

  it('refuses a text frame after the handshake with unexpected_frame', () => {
    const { s } = connected()
    expect(reasonOf(s.receive('{"type":"ping"}'))).toBe('unexpected_frame')
  })

  it('refuses any frame after FINAL with after_final', () => {
    const { c, s } = connected()
    const before = c.seal({ n: 1 })
    expect(s.receive(before).ok).toBe(true)
    expect(s.receive(c.finish()).ok).toBe(true)
    expect(reasonOf(s.receive(before))).toBe('after_final')
    expect(reasonOf(s.receive(new Uint8Array(40)))).toBe('closed')
  })

  it('refuses a FINAL that carries bytes with bad_frame', () => {
    const { push, s } = rawPeer()
    expect(reasonOf(s.receive(push.push(utf8('{"smuggled":1}'), true)))).toBe('bad_frame')
  })

  it('refuses an empty frame and a frame that is not UTF-8 with bad_frame', () => {
    const one = rawPeer()
    expect(reasonOf(one.s.receive(one.push.push(new Uint8Array(0))))).toBe('bad_frame')
    const two = rawPeer()
    expect(reasonOf(two.s.receive(two.push.push(Uint8Array.of(0x7b, 0xff, 0x7d))))).toBe('bad_frame')
  })

  it.each(['PUSH', 'REKEY'] as const)('refuses an authentic frame tagged %s with bad_tag', (name) => {
    const keys = keyPair()
    const s = SealedChannel.open(keys.s).channel
    const so = sodium()
    const { state, header } = so.crypto_secretstream_xchacha20poly1305_init_push(keys.c.tx.slice())
    expect(s.receive(header).ok).toBe(true)
    const tag =
      name === 'PUSH'
        ? so.crypto_secretstream_xchacha20poly1305_TAG_PUSH
        : so.crypto_secretstream_xchacha20poly1305_TAG_REKEY
    const sealed = so.crypto_secretstream_xchacha20poly1305_push(state, utf8('{}'), null, tag)
    expect(reasonOf(s.receive(sealed))).toBe('bad_tag')
  })
})

describe('sending misuse (caller bugs throw)', () => {
  it('throws when sealing after FINAL or finishing twice', () => {
    const { c } = connected()
    c.finish()
    expect(() => c.seal({ n: 1 })).toThrow(/finished/)
    expect(() => c.finish()).toThrow(/finished/)
  })

  it('stops sending once receiving failed', () => {
    const { c, s } = connected()
    expect(s.receive('text').ok).toBe(false)
    expect(s.canSend).toBe(false)
    expect(() => s.seal({ n: 1 })).toThrow(/failed/)
    expect(c.canSend).toBe(true)
  })

  it('refuses values without a canonical form and non-object frames', () => {
    const { c } = connected()
    expect(() => c.seal({ n: 1.5 })).toThrow()
    expect(() => c.seal([] as never)).toThrow(TypeError)
  })

  it('throws on session keys of the wrong length', () => {
    expect(() => SealedChannel.open({ rx: new Uint8Array(31), tx: new Uint8Array(32) })).toThrow(TypeError)
    expect(() => SealedChannel.open({ rx: new Uint8Array(32), tx: new Uint8Array(33) })).toThrow(TypeError)
  })

  it('dispose() kills both directions and is idempotent', () => {
    const { c, s } = connected()
    const sealed = c.seal({ n: 1 })
    s.dispose()
    s.dispose()
    expect(s.failure?.reason).toBe('aborted')
    expect(reasonOf(s.receive(sealed))).toBe('closed')
    expect(() => s.seal({ n: 1 })).toThrow()
  })
})
