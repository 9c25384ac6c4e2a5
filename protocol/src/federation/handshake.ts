/**
 * The link handshake (DESIGN.md section 6; docs/federation.md, "Link"), as one strict state machine
 * per side. Transport-free: the driver feeds it the WebSocket frames it receives and sends what it
 * returns. Three frames, all WebSocket text frames holding canonical JSON:
 *
 * ```
 * C->S  HELLO {type:"hello", v:1, from, to, kid, eph_pk, nonce, ts}
 * S->C  HELLO {type:"hello", v:1, from, to, kid, eph_pk, nonce, ts, sig}   sig over th_S (transcript.ts)
 * C->S  AUTH  {type:"auth", sig}                                           sig over th_C
 * ```
 * Any violation returns a {@link LinkFailure} and kills the machine: every later input fails with
 * `closed`. Untrusted input never throws; caller bugs (bad options, a callback returning the wrong
 * shape or throwing) kill the machine and throw.
 */
import type { z } from 'zod'
import { canonicalJson } from '../canonical-json.ts'
import { bytesEqual } from '../crypto/hash.ts'
import {
  kxClientSessionKeys,
  kxKeyPairFromSeed,
  kxServerSessionKeys,
  wipe,
  type KxKeyPair,
  type KxSessionKeys,
} from '../crypto/kx.ts'
import { fromBase64Url, randomBytes, toBase64Url } from '../encoding.ts'
import { isServerName } from '../ids.ts'
import { err, ok, type Result } from '../result.ts'
import { validate } from '../schema/parse.ts'
import { MAX_CLOCK_SKEW_MS } from './constants.ts'
import type { LinkFailure, LinkFailureReason } from './failure.ts'
import {
  ClientHello,
  KeyId,
  LINK_VERSION,
  LinkAuth,
  MAX_HANDSHAKE_FRAME_CHARS,
  ServerHello,
} from './frames.ts'
import type { ReplayCache } from './replay-cache.ts'
import { clientSigningBytes, clientTranscriptHash, serverSigningBytes } from './transcript.ts'

/** Signs with the server's long-term Ed25519 key: the shape of `signing.ts`'s `Signer`. */
export interface LinkSigner {
  /** Key id published in the server's discovery document, e.g. `ed25519:a1`. */
  readonly kid: string
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** Returns the 64-byte Ed25519 signature of `message` (RFC 8032 section 5.1.6). */
  sign(message: Uint8Array): Uint8Array
}

/** Verifies an Ed25519 signature; must return `false` (never throw) for anything malformed. */
export type VerifySignature = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean

/**
 * Resolves a peer's signing key by server name and key id (discovery, a pinned key, or a cache).
 * Returns the raw 32-byte Ed25519 public key, or `null` when the key is unknown or cannot be fetched.
 * It is only called after the policy allowed the server. A throw kills the handshake and propagates.
 */
export type LookupKey = (server: string, kid: string) => Uint8Array | null | Promise<Uint8Array | null>

/** The federation policy (allowlist, or open minus a denylist): `true` only for servers we may link with. */
export type PeerPolicy = (server: string) => boolean

/** What both sides need. */
export interface HandshakeOptions {
  /** Our own server name: peers must address us by it (`to`). */
  readonly serverName: string
  readonly signer: LinkSigner
  readonly verify: VerifySignature
  readonly lookupKey: LookupKey
  readonly isAllowed: PeerPolicy
  /** Shared by every handshake of this server. */
  readonly replayCache: ReplayCache
  /** Milliseconds since the epoch. Default `Date.now`. */
  readonly now?: () => number
  /** Secure random bytes (ephemeral key seed, then nonce). Default Web Crypto. Tests inject it. */
  readonly random?: (length: number) => Uint8Array
}

/** What the initiator (C) also needs: whom it dialled. */
export interface InitiatorOptions extends HandshakeOptions {
  /** The server we dialled; S.HELLO must come `from` it. */
  readonly peer: string
}

/** The outcome of a completed handshake, handed to `SealedChannel.open`. */
export interface EstablishedLink {
  readonly role: 'initiator' | 'responder'
  /** Our server name. */
  readonly self: string
  /** The authenticated peer. */
  readonly peer: string
  /** The peer's key id and Ed25519 public key that signed the transcript. */
  readonly peerKid: string
  readonly peerPublicKey: Uint8Array
  /** th_C = BLAKE2b-256(canonical(C.HELLO) || canonical(S.HELLO)): identifies this session on both sides. */
  readonly transcriptHash: Uint8Array
  /** crypto_kx session keys: `tx` seals what we send, `rx` opens what the peer sends. Secret. */
  readonly keys: KxSessionKeys
}

/** What one input produced: a frame to send (text) and/or the established link. */
export interface HandshakeStep {
  readonly send: string | null
  readonly link: EstablishedLink | null
}

/** Where a handshake machine stands. `working` while it awaits a key lookup. */
export type HandshakeState = 'new' | 'awaiting_hello' | 'awaiting_auth' | 'working' | 'established' | 'failed'

interface Resolved {
  readonly serverName: string
  readonly signer: LinkSigner
  readonly verify: VerifySignature
  readonly lookupKey: LookupKey
  readonly isAllowed: PeerPolicy
  readonly replayCache: ReplayCache
  readonly now: () => number
  readonly random: (length: number) => Uint8Array
}

function assertFunction(name: string, value: unknown): void {
  if (typeof value !== 'function') throw new TypeError(`${name} must be a function`)
}

/** Checks the options once (caller bugs throw) and fills in defaults. */
function resolveOptions(options: HandshakeOptions): Resolved {
  if (typeof options !== 'object' || options === null) throw new TypeError('options are required')
  const { serverName, signer, replayCache } = options
  if (typeof serverName !== 'string' || !isServerName(serverName))
    throw new TypeError('serverName must be a valid server name')
  if (typeof signer !== 'object' || signer === null) throw new TypeError('signer is required')
  if (!KeyId.safeParse(signer.kid).success)
    throw new TypeError('signer.kid must look like ed25519:<1-32 chars>')
  if (!(signer.publicKey instanceof Uint8Array) || signer.publicKey.length !== 32)
    throw new TypeError('signer.publicKey must be 32 bytes')
  assertFunction('signer.sign', signer.sign)
  assertFunction('verify', options.verify)
  assertFunction('lookupKey', options.lookupKey)
  assertFunction('isAllowed', options.isAllowed)
  if (typeof replayCache !== 'object' || replayCache === null) throw new TypeError('replayCache is required')
  assertFunction('replayCache.has', replayCache.has)
  assertFunction('replayCache.add', replayCache.add)
  if (options.now !== undefined) assertFunction('now', options.now)
  if (options.random !== undefined) assertFunction('random', options.random)
  return {
    serverName,
    signer,
    verify: options.verify,
    lookupKey: options.lookupKey,
    isAllowed: options.isAllowed,
    replayCache,
    now: options.now ?? Date.now,
    random: options.random ?? randomBytes,
  }
}

function clock(o: Resolved): number {
  const now = o.now()
  if (!Number.isSafeInteger(now) || now < 0) throw new TypeError('now() must return integer milliseconds')
  return now
}

function random(o: Resolved, length: number): Uint8Array {
  const bytes = o.random(length)
  if (!(bytes instanceof Uint8Array) || bytes.length !== length)
    throw new TypeError(`random(${length}) must return ${length} bytes`)
  return bytes
}

function sign(o: Resolved, message: Uint8Array): string {
  const sig = o.signer.sign(message)
  if (!(sig instanceof Uint8Array) || sig.length !== 64)
    throw new TypeError('signer.sign must return 64 bytes')
  return toBase64Url(sig)
}

/** A fresh ephemeral X25519 key pair and nonce, in that order of randomness. */
function freshEphemeral(o: Resolved): { pair: KxKeyPair; nonce: string } {
  const seed = random(o, 32)
  const pair = kxKeyPairFromSeed(seed)
  wipe(seed)
  return { pair, nonce: toBase64Url(random(o, 32)) }
}

async function lookup(o: Resolved, server: string, kid: string): Promise<Uint8Array | null> {
  const key = await o.lookupKey(server, kid)
  if (key === null) return null
  if (!(key instanceof Uint8Array) || key.length !== 32)
    throw new TypeError('lookupKey must return a 32-byte Ed25519 public key or null')
  return key
}

const failure = (reason: LinkFailureReason, message: string): LinkFailure => ({ reason, message })

/**
 * Parses one handshake frame: text only, bounded, JSON, an object whose `type` is the one expected
 * (another handshake type is `unexpected_frame`, anything else `bad_frame`), a supported `v`, then
 * the strict schema (unknown fields are refused).
 */
function parseFrame<S extends z.ZodType>(
  frame: unknown,
  type: 'hello' | 'auth',
  schema: S,
): Result<z.infer<S>, LinkFailure> {
  if (typeof frame !== 'string') return err(failure('unexpected_frame', 'binary frame during the handshake'))
  if (frame.length > MAX_HANDSHAKE_FRAME_CHARS) return err(failure('bad_frame', 'handshake frame too large'))
  let value: unknown
  try {
    value = JSON.parse(frame)
  } catch {
    return err(failure('bad_frame', 'not valid JSON'))
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return err(failure('bad_frame', 'not a JSON object'))
  const record = value as Record<string, unknown>
  const got = record['type']
  if (got !== type) {
    return got === 'hello' || got === 'auth'
      ? err(failure('unexpected_frame', `${got} frame when ${type} was expected`))
      : err(failure('bad_frame', 'unknown frame type'))
  }
  if (type === 'hello' && typeof record['v'] === 'number' && record['v'] !== LINK_VERSION)
    return err(failure('unsupported_version', `link version ${String(record['v'])} is not supported`))
  const parsed = validate(schema, value)
  return parsed.ok ? parsed : err(failure('bad_frame', parsed.error.message))
}

/** Checks common to both HELLOs, all before any key lookup. `from` has been checked by the caller. */
function checkHello(o: Resolved, hello: ClientHello, now: number): LinkFailure | null {
  if (hello.to !== o.serverName) return failure('bad_to', 'HELLO is addressed to another server')
  if (hello.from === o.serverName) return failure('bad_from', 'HELLO claims to come from us')
  if (o.isAllowed(hello.from) !== true) return failure('not_allowed', 'federation policy refuses this server')
  if (Math.abs(now - hello.ts) > MAX_CLOCK_SKEW_MS)
    return failure('stale_ts', 'ts is more than 5 minutes off')
  if (o.replayCache.has(hello.nonce, now)) return failure('replayed_nonce', 'nonce was seen before')
  return null
}

/** Records a nonce once the peer is authenticated; `null` if it was fresh. */
function commitNonce(o: Resolved, nonce: string, now: number): LinkFailure | null {
  const added = o.replayCache.add(nonce, now)
  if (added === 'added') return null
  if (added === 'replayed') return failure('replayed_nonce', 'nonce was seen before')
  if (added === 'full') return failure('busy', 'replay cache is full')
  throw new TypeError("replayCache.add must return 'added', 'replayed' or 'full'")
}

/** Shared bookkeeping: state, the failure that killed the machine, secrets to wipe. */
abstract class Machine {
  protected phase: HandshakeState
  protected failureValue: LinkFailure | null = null
  protected secrets: Uint8Array[] = []

  protected constructor(
    protected readonly o: Resolved,
    initial: HandshakeState,
  ) {
    this.phase = initial
  }

  /** Where the machine stands. */
  get state(): HandshakeState {
    return this.phase
  }

  /** The failure that killed the machine, or `null`. */
  get failure(): LinkFailure | null {
    return this.failureValue
  }

  /** Kills the machine (deadline passed, socket closed). Later input fails with `closed`. Idempotent. */
  abort(message = 'aborted by the driver'): void {
    if (this.phase !== 'failed') this.fail('aborted', message)
  }

  protected fail(reason: LinkFailureReason, message: string): Result<never, LinkFailure> {
    return this.failWith(failure(reason, message))
  }

  protected failWith(f: LinkFailure): Result<never, LinkFailure> {
    this.phase = 'failed'
    this.failureValue = f
    this.wipeSecrets()
    return err(f)
  }

  protected wipeSecrets(): void {
    for (const secret of this.secrets) wipe(secret)
    this.secrets = []
  }

  /**
   * Runs one step for a state that accepts input. Input in any other state fails (and kills); a
   * throw from a callback kills the machine and propagates.
   */
  protected async run(
    accepts: readonly HandshakeState[],
    frame: string | Uint8Array,
    step: (from: HandshakeState) => Promise<Result<HandshakeStep, LinkFailure>>,
  ): Promise<Result<HandshakeStep, LinkFailure>> {
    if (this.phase === 'failed') return err(failure('closed', 'the handshake already failed'))
    if (!accepts.includes(this.phase)) {
      const why = typeof frame === 'string' ? 'frame' : 'binary frame'
      return this.fail('unexpected_frame', `${why} in state ${this.phase}`)
    }
    const from = this.phase
    this.phase = 'working'
    try {
      return await step(from)
    } catch (error) {
      if (this.failureValue === null) this.fail('aborted', 'an injected callback failed')
      throw error
    }
  }

  /** After an await: false if the machine died meanwhile (abort, or input while working). */
  protected stillWorking(): boolean {
    return this.phase === 'working'
  }

  protected closed(): Result<never, LinkFailure> {
    return err(failure('closed', 'the handshake already failed'))
  }
}

/**
 * The initiator C: the server that dialled. `start()` gives C.HELLO; `receive(S.HELLO)` checks it and
 * gives AUTH plus the established link. S may still refuse AUTH: C's evidence that it did not is S's
 * stream header (and first sealed frame) arriving before the deadline; a refusal shows up only as the
 * socket closing.
 */
export class LinkInitiator extends Machine {
  readonly #peer: string
  #hello: ClientHello | null = null
  #ephemeral: KxKeyPair | null = null

  constructor(options: InitiatorOptions) {
    const o = resolveOptions(options)
    if (typeof options.peer !== 'string' || !isServerName(options.peer))
      throw new TypeError('peer must be a valid server name')
    if (options.peer === o.serverName) throw new TypeError('a server does not link to itself')
    super(o, 'new')
    this.#peer = options.peer
  }

  /** Builds C.HELLO (canonical JSON text to send). Throws if called twice (a caller bug). */
  start(): string {
    if (this.phase !== 'new') throw new Error(`start() in state ${this.phase}`)
    const { pair, nonce } = freshEphemeral(this.o)
    this.#ephemeral = pair
    this.secrets.push(pair.secretKey)
    this.#hello = {
      type: 'hello',
      v: LINK_VERSION,
      from: this.o.serverName,
      to: this.#peer,
      kid: this.o.signer.kid,
      eph_pk: toBase64Url(pair.publicKey),
      nonce,
      ts: clock(this.o),
    }
    this.phase = 'awaiting_hello'
    return canonicalJson(this.#hello)
  }

  /** Feeds one received frame (text as string, binary as bytes). Expects S.HELLO. */
  receive(frame: string | Uint8Array): Promise<Result<HandshakeStep, LinkFailure>> {
    return this.run(['awaiting_hello'], frame, () => this.#onServerHello(frame))
  }

  async #onServerHello(frame: string | Uint8Array): Promise<Result<HandshakeStep, LinkFailure>> {
    const o = this.o
    const ours = this.#hello!
    const ephemeral = this.#ephemeral!
    const parsed = parseFrame(frame, 'hello', ServerHello)
    if (!parsed.ok) return this.failWith(parsed.error)
    const hello = parsed.value
    const now = clock(o)
    if (hello.to !== o.serverName) return this.fail('bad_to', 'S.HELLO is addressed to another server')
    if (hello.from !== this.#peer) return this.fail('bad_from', 'S.HELLO comes from a server we did not dial')
    const problem = checkHello(o, hello, now)
    if (problem) return this.failWith(problem)
    if (hello.nonce === ours.nonce) return this.fail('replayed_nonce', 'S.HELLO reflects our nonce')
    const peerEph = fromBase64Url(hello.eph_pk)!
    if (bytesEqual(peerEph, ephemeral.publicKey)) return this.fail('bad_eph_key', 'S.HELLO reflects our key')
    const keys = kxClientSessionKeys(ephemeral.publicKey, ephemeral.secretKey, peerEph)
    if (!keys.ok) return this.fail('bad_eph_key', 'ephemeral key gives no shared secret')
    this.secrets.push(keys.value.rx, keys.value.tx)

    const peerKey = await lookup(o, hello.from, hello.kid)
    if (!this.stillWorking()) return this.closed()
    if (peerKey === null) return this.fail('unknown_key', `no key ${hello.kid} for ${hello.from}`)
    const sig = fromBase64Url(hello.sig)!
    if (o.verify(peerKey, serverSigningBytes(ours, hello), sig) !== true)
      return this.fail('bad_signature', 'S.HELLO signature does not verify')
    const replay = commitNonce(o, hello.nonce, now)
    if (replay) return this.failWith(replay)

    const auth: LinkAuth = { type: 'auth', sig: sign(o, clientSigningBytes(ours, hello)) }
    const link: EstablishedLink = {
      role: 'initiator',
      self: o.serverName,
      peer: hello.from,
      peerKid: hello.kid,
      peerPublicKey: peerKey,
      transcriptHash: clientTranscriptHash(ours, hello),
      keys: keys.value,
    }
    wipe(ephemeral.secretKey)
    this.secrets = [] // the session keys now belong to the caller
    this.#ephemeral = null
    this.phase = 'established'
    return ok({ send: canonicalJson(auth), link })
  }
}

/**
 * The responder S: the server that was dialled. `receive(C.HELLO)` gives S.HELLO; `receive(AUTH)`
 * gives the established link.
 */
export class LinkResponder extends Machine {
  #clientHello: ClientHello | null = null
  #serverHello: ServerHello | null = null
  #peerKey: Uint8Array | null = null
  #keys: KxSessionKeys | null = null

  constructor(options: HandshakeOptions) {
    super(resolveOptions(options), 'awaiting_hello')
  }

  /** Feeds one received frame (text as string, binary as bytes). Expects C.HELLO, then AUTH. */
  receive(frame: string | Uint8Array): Promise<Result<HandshakeStep, LinkFailure>> {
    return this.run(['awaiting_hello', 'awaiting_auth'], frame, (from) =>
      from === 'awaiting_hello' ? this.#onClientHello(frame) : Promise.resolve(this.#onAuth(frame)),
    )
  }

  async #onClientHello(frame: string | Uint8Array): Promise<Result<HandshakeStep, LinkFailure>> {
    const o = this.o
    const parsed = parseFrame(frame, 'hello', ClientHello)
    if (!parsed.ok) return this.failWith(parsed.error)
    const hello = parsed.value
    const now = clock(o)
    const problem = checkHello(o, hello, now)
    if (problem) return this.failWith(problem)

    const { pair, nonce } = freshEphemeral(o)
    const keys = kxServerSessionKeys(pair.publicKey, pair.secretKey, fromBase64Url(hello.eph_pk)!)
    wipe(pair.secretKey)
    if (!keys.ok) return this.fail('bad_eph_key', 'ephemeral key gives no shared secret')
    this.secrets.push(keys.value.rx, keys.value.tx)

    const peerKey = await lookup(o, hello.from, hello.kid)
    if (!this.stillWorking()) return this.closed()
    if (peerKey === null) return this.fail('unknown_key', `no key ${hello.kid} for ${hello.from}`)

    const unsigned = {
      type: 'hello',
      v: LINK_VERSION,
      from: o.serverName,
      to: hello.from,
      kid: o.signer.kid,
      eph_pk: toBase64Url(pair.publicKey),
      nonce,
      ts: now,
    } as const
    const reply: ServerHello = { ...unsigned, sig: sign(o, serverSigningBytes(hello, unsigned)) }
    this.#clientHello = hello
    this.#serverHello = reply
    this.#peerKey = peerKey
    this.#keys = keys.value
    this.phase = 'awaiting_auth'
    return ok({ send: canonicalJson(reply), link: null })
  }

  #onAuth(frame: string | Uint8Array): Result<HandshakeStep, LinkFailure> {
    const o = this.o
    const parsed = parseFrame(frame, 'auth', LinkAuth)
    if (!parsed.ok) return this.failWith(parsed.error)
    const clientHello = this.#clientHello!
    const serverHello = this.#serverHello!
    const peerKey = this.#peerKey!
    const sig = fromBase64Url(parsed.value.sig)!
    if (o.verify(peerKey, clientSigningBytes(clientHello, serverHello), sig) !== true)
      return this.fail('bad_signature', 'AUTH signature does not verify')
    const replay = commitNonce(o, clientHello.nonce, clock(o))
    if (replay) return this.failWith(replay)
    const link: EstablishedLink = {
      role: 'responder',
      self: o.serverName,
      peer: clientHello.from,
      peerKid: clientHello.kid,
      peerPublicKey: peerKey,
      transcriptHash: clientTranscriptHash(clientHello, serverHello),
      keys: this.#keys!,
    }
    this.secrets = []
    this.#keys = null
    this.phase = 'established'
    return ok({ send: null, link })
  }
}
