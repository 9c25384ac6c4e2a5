/** Test fixtures for the link: in-memory servers with fixed keys, an injectable clock and randomness. */
import { signerFromSeed, verifySignature, type Signer } from '../signing.ts'
import type { HandshakeOptions, HandshakeStep, EstablishedLink } from './handshake.ts'
import { LinkInitiator, LinkResponder } from './handshake.ts'
import { MemoryReplayCache } from './replay-cache.ts'
import type { Result } from '../result.ts'
import type { LinkFailure } from './failure.ts'

/** 2023-11-14T22:13:20Z. */
export const T0 = 1_700_000_000_000

/** A seed of 32 bytes all equal to `byte`. */
export const fill = (byte: number): Uint8Array => new Uint8Array(32).fill(byte)

/** Injected "randomness" that hands out `chunks` in order and throws when they run out or misfit. */
export function scriptedRandom(...chunks: Uint8Array[]): (length: number) => Uint8Array {
  let next = 0
  return (length) => {
    const chunk = chunks[next++]
    if (!chunk || chunk.length !== length) throw new Error(`unscripted random(${length}) call #${next}`)
    return chunk.slice()
  }
}

/** One test server: a name, a signing key, a replay cache. */
export interface Party {
  readonly name: string
  readonly signer: Signer
  readonly cache: MemoryReplayCache
}

export function party(name: string, seedByte: number, kid = 'ed25519:k1'): Party {
  return { name, signer: signerFromSeed(kid, fill(seedByte)), cache: new MemoryReplayCache() }
}

/** A shared world: the published keys of every party, a clock, and a policy. */
export class World {
  now = T0
  readonly keys = new Map<string, Uint8Array>()
  readonly denied = new Set<string>()
  readonly lookups: Array<[string, string]> = []

  publish(p: Party): this {
    this.keys.set(`${p.name} ${p.signer.kid}`, p.signer.publicKey)
    return this
  }

  options(p: Party, overrides: Partial<HandshakeOptions> = {}): HandshakeOptions {
    return {
      serverName: p.name,
      signer: p.signer,
      verify: verifySignature,
      lookupKey: (server, kid) => {
        this.lookups.push([server, kid])
        return this.keys.get(`${server} ${kid}`) ?? null
      },
      isAllowed: (server) => !this.denied.has(server),
      replayCache: p.cache,
      now: () => this.now,
      ...overrides,
    }
  }

  initiator(c: Party, peer: string, overrides: Partial<HandshakeOptions> = {}): LinkInitiator {
    return new LinkInitiator({ ...this.options(c, overrides), peer })
  }

  responder(s: Party, overrides: Partial<HandshakeOptions> = {}): LinkResponder {
    return new LinkResponder(this.options(s, overrides))
  }
}

/** The frames and links of one complete handshake. */
export interface Run {
  readonly clientHello: string
  readonly serverHello: string
  readonly auth: string
  readonly clientLink: EstablishedLink
  readonly serverLink: EstablishedLink
}

export function expectOk(result: Result<HandshakeStep, LinkFailure>): HandshakeStep {
  if (!result.ok) throw new Error(`expected success, got ${result.error.reason}: ${result.error.message}`)
  return result.value
}

/** Runs C and S through the whole handshake, throwing if any step fails. */
export async function runHandshake(c: LinkInitiator, s: LinkResponder): Promise<Run> {
  const clientHello = c.start()
  const serverHello = expectOk(await s.receive(clientHello)).send!
  const step = expectOk(await c.receive(serverHello))
  const last = expectOk(await s.receive(step.send!))
  return { clientHello, serverHello, auth: step.send!, clientLink: step.link!, serverLink: last.link! }
}

/** A copy of `bytes` with one bit flipped. */
export function flipBit(bytes: Uint8Array, index: number, bit = 0): Uint8Array {
  const out = bytes.slice()
  out[index]! ^= 1 << bit
  return out
}
