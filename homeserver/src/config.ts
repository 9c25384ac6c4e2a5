/** Homeserver configuration: defaults, a JSON config file, and CLI flags, validated with one schema. */
import { z } from 'zod'
import { schema } from '@parley/protocol'

const Limits = z.strictObject({
  /** Largest WebSocket frame a client may send (bytes). */
  maxFrameBytes: z
    .number()
    .int()
    .min(1024)
    .default(96 * 1024),
  /** Largest event content, canonical JSON bytes (DESIGN.md section 5: 64 KiB). */
  maxContentBytes: z
    .number()
    .int()
    .min(256)
    .default(64 * 1024),
  /** Largest media upload (bytes). */
  maxMediaBytes: z
    .number()
    .int()
    .min(1)
    .default(10 * 1024 * 1024),
  /** Sustained sends per second per device, and the burst allowed above it. */
  messagesPerSecond: z.number().min(0.1).default(20),
  messageBurst: z.number().int().min(1).default(200),
  /** A device that keeps sending while limited is disconnected after this many refusals in a row. */
  floodDisconnectAfter: z.number().int().min(1).default(100),
  /** Frames of any kind per connection per second, and their burst: bounds parsing work per socket. */
  framesPerSecond: z.number().min(1).default(1000),
  frameBurst: z.number().int().min(1).default(2000),
  maxConnectionsPerUser: z.number().int().min(1).default(20),
  maxConnectionsPerIp: z.number().int().min(1).default(2000),
  /** A reader whose unsent output exceeds this is disconnected (it can resume from its cursor). */
  sendBufferBytes: z
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  /** A socket must authenticate within this time. */
  authTimeoutMs: z.number().int().min(10).default(10_000),
  /** Ping interval; a socket that misses two pongs is closed. Sessions are re-validated on the same tick. */
  heartbeatMs: z.number().int().min(10).default(30_000),
  /** Most events in one sync answer. */
  syncPageSize: z.number().int().min(1).max(1000).default(500),
  /** Login attempts: per account failures allowed before 429, and their refill time. */
  loginFailuresPerAccount: z.number().int().min(1).default(10),
  loginFailureRefillMs: z.number().int().min(1).default(60_000),
  /** Login attempts per client address: burst and refill time. */
  loginAttemptsPerIp: z.number().int().min(1).default(30),
  loginIpRefillMs: z.number().int().min(1).default(2_000),
  /** Authenticated REST requests per user: burst and sustained rate (P_LIMIT_EXCEEDED beyond). */
  restBurst: z.number().int().min(1).default(600),
  restRequestsPerSecond: z.number().min(0.1).default(50),
  /** Sign-ups per client address: burst and refill time (each costs an argon2 hash). */
  registrationsPerIp: z.number().int().min(1).default(20),
  registrationIpRefillMs: z.number().int().min(1).default(10_000),
  /** Password hashes computed at once (argon2id is memory-hard: bound it). */
  maxConcurrentHashes: z.number().int().min(1).default(2),
  maxRequestBytes: z
    .number()
    .int()
    .min(1024)
    .default(256 * 1024),
})

const Federation = z.strictObject({
  /**
   * Keys that must sign a peer's key document, instead of trust on first use: server name -> unpadded
   * base64url Ed25519 public keys (as in the peer's `verify_keys`).
   */
  pinnedKeys: z.record(schema.ServerName, z.array(schema.PublicKeyB64).min(1)).default({}),
  /**
   * The base URL peers reach this server at (`https://acme.example`); the key document's `link` is
   * derived from it. Default: the address the request came in on (dev and tests).
   */
  publicUrl: z.url({ protocol: /^https?$/ }).optional(),
  /**
   * Who may link with us: `allowlist` (default) admits only the servers in `peers` and `allow`;
   * `open` admits everyone but `deny`. `deny` wins in both modes. Checked before any key fetch.
   */
  mode: z.enum(['allowlist', 'open']).default('allowlist'),
  allow: z.array(schema.ServerName).default([]),
  deny: z.array(schema.ServerName).default([]),
  /** Sealed PING interval on each link; a link silent for two intervals is dead. */
  pingMs: z.number().int().min(10).default(30_000),
  /** Deadline of a link handshake, from dial (or upgrade) to the peer's stream header. */
  handshakeTimeoutMs: z.number().int().min(10).default(10_000),
  /**
   * Whether discovery may dial (and fetch keys from) loopback, private, link-local and other reserved
   * addresses. Off by default: in open mode a peer name is attacker-chosen (SSRF). Peers in the static
   * `peers` map are the admin's explicit choice and always allowed.
   */
  allowPrivateAddresses: z.boolean().default(false),
  /**
   * Least time between two fetches of one peer's key document (an unknown key id triggers one). Keeps
   * a peer from making us fetch in a loop; after a rotation, links and events signed with its new key
   * wait at most this long.
   */
  keyRefetchMs: z.number().int().min(0).default(60_000),
  /** Inbound link handshakes in progress at once; more are answered 503 before any work. */
  maxHandshakes: z.number().int().min(1).default(32),
  /** Frames a peer may send per second on its link (sustained, and burst); over it, reads pause. */
  framesPerSecond: z.number().min(1).default(5000),
  frameBurst: z.number().int().min(1).default(20_000),
  /** Media fetches from one peer at once (more wait, up to 8 times as many; beyond, 429). */
  mediaFetchesPerPeer: z.number().int().min(1).default(4),
  /** A media fetch fails (P_UNAVAILABLE) when the peer leaves one chunk request unanswered this long. */
  mediaTimeoutMs: z.number().int().min(10).default(15_000),
  /** A key query to a peer fails (its users' keys come from the last answer, else `failures`) after this. */
  keysTimeoutMs: z.number().int().min(10).default(10_000),
  /** Redial backoff: full jitter, `backoffBaseMs` doubling per failure, capped at `backoffCapMs`. */
  backoffBaseMs: z.number().int().min(1).default(1000),
  backoffCapMs: z
    .number()
    .int()
    .min(1)
    .default(15 * 60_000),
})

export const ConfigSchema = z.strictObject({
  serverName: schema.ServerName,
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8008),
  dataDir: z.string().min(1),
  /** Dev and tests: static map of peer server name -> base URL (federation). */
  peers: z.record(z.string(), z.url()).default({}),
  /** Exact browser origins allowed to open the client WebSocket. Non-browser clients send no Origin. */
  allowedOrigins: z.array(z.string()).default([]),
  /** `open`: anyone may sign up; `closed`: accounts come from the admin CLI. */
  registration: z.enum(['open', 'closed']).default('open'),
  /** FULL survives power loss (default); NORMAL survives process crashes only. */
  synchronous: z.enum(['FULL', 'NORMAL']).default('FULL'),
  accessTokenTtlMs: z
    .number()
    .int()
    .min(1000)
    .default(12 * 3600_000),
  refreshTokenTtlMs: z
    .number()
    .int()
    .min(1000)
    .default(30 * 24 * 3600_000),
  /** argon2id cost (OWASP 2023 minimum: 19 MiB, t=2). */
  argon2: z
    .strictObject({
      memoryKiB: z.number().int().min(8).default(19_456),
      iterations: z.number().int().min(1).default(2),
    })
    .default({ memoryKiB: 19_456, iterations: 2 }),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Directory of a built web client to serve at `/` (`--web-client`). */
  webClientDir: z.string().optional(),
  /** Test builds only: shift the server's clock (fault tests). */
  clockOffsetMs: z.number().int().default(0),
  limits: Limits.default(Limits.parse({})),
  federation: Federation.default(Federation.parse({})),
})

export type Config = z.infer<typeof ConfigSchema>
export type ConfigInput = z.input<typeof ConfigSchema>

/** Validates a configuration, filling defaults. Throws a readable error on invalid input. */
export function parseConfig(input: unknown): Config {
  const parsed = ConfigSchema.safeParse(input)
  if (!parsed.success) throw new Error(`invalid configuration: ${schema.describeZodError(parsed.error)}`)
  return parsed.data
}
