/** The composition root of the domain: every service over one database. No HTTP, no WebSocket. */
import { verifySignature, type Signer } from '@parley/protocol/signing'
import type { Clock } from '../clock.ts'
import type { Config } from '../config.ts'
import type { Database } from '../db/database.ts'
import { Repos } from '../db/repos/index.ts'
import { PeerKeys, type KeyFetcher } from '../federation/peer-keys.ts'
import { LinkManager } from '../federation/link-manager.ts'
import { Replication } from '../federation/replication.ts'
import type { Logger } from '../logger.ts'
import { AccountsService, accountsOptions } from './accounts.ts'
import { EphemeralService } from './ephemeral.ts'
import { Hub, RoomMembers } from './hub.ts'
import { KeysService } from './keys.ts'
import { MediaService } from './media.ts'
import { MessagesService } from './messages.ts'
import { PasswordHasher } from './passwords.ts'
import { RateLimiter } from './rate-limit.ts'
import { ProfilesService } from './profiles.ts'
import { RoomRulesImpl } from './room-rules.ts'
import { MembershipStatements } from './membership-statements.ts'
import { RoomsService } from './rooms.ts'
import { Sequencer, type Durability } from './sequencer.ts'
import type { ServerKeys } from './server-keys.ts'
import { SyncService } from './sync.ts'
import { ToDeviceService } from './to-device.ts'

export type { Session } from './accounts.ts'
export type { LiveConnection } from './hub.ts'
export type { Durability } from './sequencer.ts'

export interface Services {
  readonly config: Config
  readonly clock: Clock
  readonly log: Logger
  readonly repos: Repos
  /** The current server key (a restart picks up a rotation). */
  readonly signer: Signer
  /** Every key this server had, and its key document. */
  readonly serverKeys: ServerKeys
  /** The keys we trust for each peer server. */
  readonly peerKeys: PeerKeys
  /** Server-to-server links (transport only; server.ts routes the upgrades and closes it). */
  readonly links: LinkManager
  /** Owner-sequenced rooms across servers, over the links. */
  readonly replication: Replication
  readonly accounts: AccountsService
  readonly sequencer: Sequencer
  readonly rooms: RoomsService
  readonly messages: MessagesService
  readonly sync: SyncService
  readonly members: RoomMembers
  readonly hub: Hub
  readonly ephemeral: EphemeralService
  /** Durable device-to-device messages (E2E key sharing), local and across servers. */
  readonly toDevice: ToDeviceService
  readonly media: MediaService
  /** The E2E key directory (device lists, prekeys) and key backups, local and across servers. */
  readonly keys: KeysService
  readonly profiles: ProfilesService
  /** Authenticated REST requests per user. */
  readonly restLimiter: RateLimiter
  /** Resolves once every write so far is as durable as configured (for answers outside the sequencer). */
  durable(): Promise<void>
}

export function createServices(
  config: Config,
  db: Database,
  serverKeys: ServerKeys,
  clock: Clock,
  log: Logger,
  durability: Durability,
  keyFetcher: KeyFetcher,
): Services {
  const repos = new Repos(db)
  const signer = serverKeys.current
  const hasher = new PasswordHasher({
    memoryKiB: config.argon2.memoryKiB,
    iterations: config.argon2.iterations,
    maxConcurrent: config.limits.maxConcurrentHashes,
  })
  const accounts = new AccountsService(repos, hasher, clock, accountsOptions(config))
  const peerKeys = new PeerKeys(repos, clock, log, {
    serverName: config.serverName,
    ownKeys: serverKeys,
    pinnedKeys: config.federation.pinnedKeys,
    fetch: keyFetcher,
    minFetchIntervalMs: config.federation.keyRefetchMs,
  })
  const links = new LinkManager({
    serverName: config.serverName,
    signer,
    verify: verifySignature,
    peerKeys,
    peers: config.peers,
    federation: config.federation,
    clock,
    log,
  })
  const rules = new RoomRulesImpl(repos, config.serverName, clock, (server) => links.isAllowed(server))
  const sequencer = new Sequencer(db, repos, rules, signer, config.serverName, clock, log, durability)
  const members = new RoomMembers(repos)
  const hub = new Hub(members)
  sequencer.onCommit((events) => hub.publish(events))
  const ephemeral = new EphemeralService(repos, members, hub, clock)
  const toDevice = new ToDeviceService(
    repos,
    sequencer,
    hub,
    config.serverName,
    clock,
    config.limits.maxContentBytes,
  )
  const media = new MediaService(repos, {
    serverName: config.serverName,
    dataDir: config.dataDir,
    maxMediaBytes: config.limits.maxMediaBytes,
    streamHead: () => sequencer.streamHead,
    clock,
  })
  const keys = new KeysService(repos, sequencer, hub, config.serverName, clock, log)
  const replication = new Replication({
    serverName: config.serverName,
    signer,
    repos,
    sequencer,
    rules,
    links,
    peerKeys,
    verify: verifySignature,
    hub,
    members,
    ephemeral,
    toDevice,
    media,
    mediaFetchesPerPeer: config.federation.mediaFetchesPerPeer,
    mediaTimeoutMs: config.federation.mediaTimeoutMs,
    keys,
    keysTimeoutMs: config.federation.keysTimeoutMs,
    maxContentBytes: config.limits.maxContentBytes,
    framesPerSecond: config.federation.framesPerSecond,
    frameBurst: config.federation.frameBurst,
    clock,
    log,
  })
  return {
    config,
    clock,
    log,
    repos,
    signer,
    serverKeys,
    peerKeys,
    links,
    replication,
    accounts,
    sequencer,
    rooms: new RoomsService(
      repos,
      sequencer,
      config.serverName,
      replication.outbox,
      new MembershipStatements(keys),
    ),
    messages: new MessagesService(
      sequencer,
      replication.outbox,
      config.serverName,
      clock,
      config.limits,
      (room, user) =>
        repos.memberships.get(room, user)?.membership === 'join' && repos.rooms.get(room)?.encrypted === 1,
    ),
    sync: new SyncService(repos, sequencer),
    members,
    hub,
    ephemeral,
    toDevice,
    media,
    keys,
    profiles: new ProfilesService(repos),
    restLimiter: new RateLimiter(clock, config.limits.restBurst, config.limits.restRequestsPerSecond),
    durable: () => durability.sync?.() ?? Promise.resolve(),
  }
}
