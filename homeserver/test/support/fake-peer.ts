/**
 * A fake peer homeserver for key tests (TESTPLAN.md section 2, "fake peer"): its own Ed25519 keys,
 * documents built exactly as a real server builds them, and knobs to misbehave (rotate without
 * co-signing, serve someone else's document, fail). Its `fetch` counts calls and can be held open to
 * test one-in-flight.
 */
import { buildKeyDocument, newKeyId, type KeyDocument, type KeyDocumentSigner } from '@parley/protocol'
import { generateSeed, signerFromSeed, type Signer } from '@parley/protocol/signing'
import type { KeyFetcher } from '../../src/federation/peer-keys.ts'

export interface FakeKey {
  readonly signer: Signer
  expiredTs: number | null
}

export class FakePeer {
  readonly keys: FakeKey[] = []
  /** Signers of the next documents; by default the current key and the one it replaced. */
  signers: KeyDocumentSigner[] | null = null
  /** What `fetch` serves instead of a real document (garbage, another server's document...). */
  serve: ((now: number) => unknown) | null = null
  /** Makes `fetch` fail. */
  failWith: Error | null = null
  fetches = 0
  #held: Array<() => void> | null = null

  constructor(
    readonly serverName: string,
    readonly now: () => number,
  ) {
    this.keys.push({ signer: FakePeer.newSigner(), expiredTs: null })
  }

  static newSigner(): Signer {
    return signerFromSeed(newKeyId(), generateSeed())
  }

  get current(): Signer {
    return this.keys.find((k) => k.expiredTs === null)!.signer
  }

  /** The most recently retired key, if any. */
  get previous(): Signer | null {
    const old = this.keys.filter((k) => k.expiredTs !== null).sort((a, b) => b.expiredTs! - a.expiredTs!)
    return old[0]?.signer ?? null
  }

  /** Retires the current key at `at` and makes a fresh one current, as `rotate-key` does. */
  rotate(at = this.now()): Signer {
    this.keys.find((k) => k.expiredTs === null)!.expiredTs = at
    const next = FakePeer.newSigner()
    this.keys.push({ signer: next, expiredTs: null })
    this.signers = null
    return next
  }

  /** Forgets every key and starts over with a fresh one: a reinstall, or an impostor. */
  replaceIdentity(): Signer {
    this.keys.splice(0)
    const next = FakePeer.newSigner()
    this.keys.push({ signer: next, expiredTs: null })
    this.signers = null
    return next
  }

  document(now = this.now()): KeyDocument {
    const previous = this.previous
    return buildKeyDocument(
      {
        serverName: this.serverName,
        link: `wss://${this.serverName}/api/v1/federation`,
        keys: this.keys.map((k) => ({
          kid: k.signer.kid,
          publicKey: k.signer.publicKey,
          expiredTs: k.expiredTs,
        })),
        validUntilTs: now + 24 * 3600_000,
      },
      this.signers ?? (previous ? [this.current, previous] : [this.current]),
    )
  }

  /** Holds every fetch open until {@link release} (to see concurrent lookups share one fetch). */
  hold(): void {
    this.#held ??= []
  }

  release(): void {
    const held = this.#held ?? []
    this.#held = null
    for (const resume of held) resume()
  }

  /** The fetcher a `PeerKeys` uses; serves this peer's documents (only for its own name). */
  readonly fetch: KeyFetcher = async (server) => {
    this.fetches++
    if (this.#held) await new Promise<void>((resolve) => this.#held!.push(resolve))
    if (server !== this.serverName) throw new Error(`no route to ${server}`)
    if (this.failWith) throw this.failWith
    // Over the wire: plain JSON, nothing shared with our objects.
    return JSON.parse(JSON.stringify(this.serve ? this.serve(this.now()) : this.document())) as unknown
  }
}
