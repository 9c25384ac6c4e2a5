/** Property tests: no input, in any state, makes the link throw; garbage always fails. */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { canonicalJson } from '../canonical-json.ts'
import { sodiumReady } from '../crypto/sodium.ts'
import type { LinkFailureReason } from './failure.ts'
import type { HandshakeStep } from './handshake.ts'
import { SealedChannel } from './sealed.ts'
import { World, expectOk, party, runHandshake } from './test-utils.ts'
import type { Result } from '../result.ts'
import type { LinkFailure } from './failure.ts'

const REASONS: readonly LinkFailureReason[] = [
  'bad_frame',
  'unexpected_frame',
  'unsupported_version',
  'bad_to',
  'bad_from',
  'not_allowed',
  'stale_ts',
  'replayed_nonce',
  'unknown_key',
  'bad_signature',
  'bad_eph_key',
  'busy',
  'aborted',
  'bad_header',
  'too_large',
  'bad_ciphertext',
  'bad_tag',
  'after_final',
  'closed',
]

beforeAll(async () => {
  await sodiumReady()
})

/** Arbitrary WebSocket input: binary frames, byte soup as text, Unicode text, JSON text. */
const garbage = fc.oneof(
  fc.uint8Array({ maxLength: 512 }),
  fc.uint8Array({ maxLength: 512 }).map((bytes) => String.fromCharCode(...bytes)),
  fc.string({ unit: 'binary', maxLength: 256 }),
  fc.json({ maxDepth: 4 }),
)

type Machine = { receive(frame: string | Uint8Array): Promise<Result<HandshakeStep, LinkFailure>> }

const STATES = [
  'responder awaiting HELLO',
  'initiator before start',
  'initiator awaiting S.HELLO',
  'responder awaiting AUTH',
  'initiator established',
  'responder established',
  'failed',
] as const

/** A fresh machine in `state`, plus the frame it would accept there (to mutate), if any. */
async function machineIn(
  state: (typeof STATES)[number],
): Promise<{ machine: Machine; valid: string | null }> {
  const w = new World()
  const c = party('c.example', 1)
  const s = party('s.example', 2)
  w.publish(c).publish(s)
  const initiator = w.initiator(c, 's.example')
  const responder = w.responder(s)
  switch (state) {
    case 'responder awaiting HELLO':
      return { machine: responder, valid: initiator.start() }
    case 'initiator before start':
      return { machine: initiator, valid: null }
    case 'initiator awaiting S.HELLO':
      return { machine: initiator, valid: expectOk(await responder.receive(initiator.start())).send }
    case 'responder awaiting AUTH': {
      const reply = expectOk(await responder.receive(initiator.start())).send!
      return { machine: responder, valid: expectOk(await initiator.receive(reply)).send }
    }
    case 'initiator established':
      return { machine: initiator, valid: (await runHandshake(initiator, responder)).serverHello }
    case 'responder established':
      return { machine: responder, valid: (await runHandshake(initiator, responder)).auth }
    case 'failed':
      await responder.receive('nope')
      return { machine: responder, valid: initiator.start() }
  }
}

describe('handshake under random input', () => {
  it.each(STATES)('never throws and always fails in state "%s"', async (state) => {
    await fc.assert(
      fc.asyncProperty(garbage, async (input) => {
        const { machine } = await machineIn(state)
        const result = await machine.receive(input)
        expect(result.ok).toBe(false)
        if (!result.ok) expect(REASONS).toContain(result.error.reason)
        // Dead afterwards: the next input fails with closed.
        const next = await machine.receive(input)
        expect(next.ok ? 'ok' : next.error.reason).toBe('closed')
      }),
      { numRuns: 60 },
    )
  })

  it.each(STATES)('never throws on a valid frame with one field replaced, in state "%s"', async (state) => {
    const keys = ['type', 'v', 'from', 'to', 'kid', 'eph_pk', 'nonce', 'ts', 'sig', 'extra']
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 3 }), async (key, value) => {
        const { machine, valid } = await machineIn(state)
        const frame = JSON.parse(valid ?? '{"type":"hello"}') as Record<string, unknown>
        frame[key] = value
        const text = JSON.stringify(frame)
        const result = await machine.receive(text)
        if (!result.ok) expect(REASONS).toContain(result.error.reason)
        else expect(canonicalJson(frame)).toBe(valid) // only an unchanged frame can pass
      }),
      { numRuns: 60 },
    )
  })
})

describe('sealed channel under random input', () => {
  function channels() {
    const w = new World()
    const c = party('c.example', 1)
    const s = party('s.example', 2)
    w.publish(c).publish(s)
    return runHandshake(w.initiator(c, 's.example'), w.responder(s)).then((run) => ({
      c: SealedChannel.open(run.clientLink.keys),
      s: SealedChannel.open(run.serverLink.keys),
    }))
  }

  it('never throws awaiting the header (only a 24-byte binary frame is accepted, as a header)', async () => {
    await fc.assert(
      fc.asyncProperty(garbage, async (input) => {
        const { s } = await channels()
        const result = s.channel.receive(input)
        if (result.ok) expect(result.value.kind).toBe('header')
        else expect(REASONS).toContain(result.error.reason)
      }),
      { numRuns: 100 },
    )
  })

  it.each(['open', 'final', 'failed'] as const)('never throws and always fails when %s', async (state) => {
    await fc.assert(
      fc.asyncProperty(garbage, async (input) => {
        const { c, s } = await channels()
        expect(s.channel.receive(c.header).ok).toBe(true)
        if (state === 'final') expect(s.channel.receive(c.channel.finish()).ok).toBe(true)
        if (state === 'failed') expect(s.channel.receive('text').ok).toBe(false)
        const result = s.channel.receive(input)
        expect(result.ok).toBe(false)
        if (!result.ok) expect(REASONS).toContain(result.error.reason)
      }),
      { numRuns: 100 },
    )
  })

  it('never accepts a sealed frame with random bytes spliced in', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), async (at, bytes) => {
        const { c, s } = await channels()
        expect(s.channel.receive(c.header).ok).toBe(true)
        const sealed = c.channel.seal({ type: 'ping', id: 'x' })
        const i = at % sealed.length
        const tampered = sealed.slice()
        tampered.set(bytes.subarray(0, sealed.length - i), i)
        fc.pre(tampered.some((b, j) => b !== sealed[j]))
        expect(s.channel.receive(tampered).ok).toBe(false)
      }),
      { numRuns: 100 },
    )
  })
})
