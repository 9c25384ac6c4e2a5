/** startServer(config) -> { url, close }: the only place that binds a port. */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import { sodiumReady } from '@parley/protocol'
import { createApp } from './app.ts'
import { offsetClock, type Clock } from './clock.ts'
import { parseConfig, type Config, type ConfigInput } from './config.ts'
import { openDatabase } from './db/database.ts'
import { Checkpointer } from './db/checkpointer.ts'
import { WalSync } from './db/wal-sync.ts'
import { createLogger, type Logger } from './logger.ts'
import { createServices, type Durability, type Services } from './services/index.ts'
import { ServerKeys } from './services/server-keys.ts'
import { ServerKeysRepo } from './db/repos/server-keys.ts'
import { httpKeyFetcher } from './federation/key-fetcher.ts'
import type { KeyFetcher } from './federation/peer-keys.ts'
import { routeFederationUpgrades } from './federation/link-manager.ts'

export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string
  readonly port: number
  readonly config: Config
  readonly services: Services
  /** Graceful shutdown: stop accepting, close sockets, commit what is queued, close the database. */
  close(): Promise<void>
}

export interface StartOptions {
  /** Overrides the configured clock (tests). */
  readonly clock?: Clock
  readonly logger?: Logger
  /** Overrides how peer key documents are fetched (tests: a fake peer). Default: HTTP via `peers`. */
  readonly keyFetcher?: KeyFetcher
}

export async function startServer(input: ConfigInput, options: StartOptions = {}): Promise<RunningServer> {
  const config = parseConfig(input)
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 })
  await sodiumReady()
  const log = options.logger ?? createLogger(config.logLevel, config.serverName)
  const clock = options.clock ?? offsetClock(config.clockOffsetMs)
  const dbPath = join(config.dataDir, 'homeserver.db')
  // FULL durability is NORMAL commits plus an fdatasync of the WAL off the event loop (db/wal-sync.ts).
  const db = openDatabase(dbPath, { synchronous: 'NORMAL' })
  // Checkpoints run in a worker thread; the inline autocheckpoint only guards against a stalled worker.
  db.pragma('wal_autocheckpoint = 100000')
  // Keys are loaded once: a key rotated by `parley-homeserver rotate-key` is used after a restart.
  // Loaded before any worker starts, so a missing or corrupt key stops start-up cleanly.
  const serverKeys = await ServerKeys.open({
    dataDir: config.dataDir,
    serverName: config.serverName,
    repo: new ServerKeysRepo(db),
    clock,
    log,
  }).catch((err: unknown) => {
    db.close()
    throw err
  })
  const checkpointer = new Checkpointer(dbPath, 250, log)
  const walSync = config.synchronous === 'FULL' ? new WalSync(`${dbPath}-wal`) : null
  const durability: Durability = {
    ...(walSync ? { sync: () => walSync.sync() } : {}),
    committed: () => checkpointer.markDirty(),
    fatal: (err) => {
      // Whether the last commits reached the disk is unknown; nothing of them was acked. Stop, and
      // let recovery on restart decide (PostgreSQL's lesson: never retry a failed fsync).
      log.fatal({ err: String(err) }, 'fsync of the WAL failed: stopping')
      process.exit(70)
    },
  }
  const keyFetcher =
    options.keyFetcher ??
    httpKeyFetcher(config.peers, { allowPrivateAddresses: config.federation.allowPrivateAddresses })
  const services = createServices(config, db, serverKeys, clock, log, durability, keyFetcher)
  await services.media.init()
  const { app, gateway, injectWebSocket } = createApp(services)

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        port: config.port,
        hostname: config.host,
        // Node checks header and request deadlines only on this interval (default 30 s): without it a
        // slowloris socket outlives headersTimeout by up to 30 s (WS-5).
        serverOptions: { connectionsCheckingInterval: 1000 },
      },
      () => resolve(s as Server),
    )
    s.once('error', reject)
  })
  // Slow or partial headers are dropped quickly (WS-5); upgraded sockets are policed by the gateway.
  server.headersTimeout = 10_000
  // Whole requests (a 10 MiB upload on a slow link) get two minutes; headers get ten seconds.
  server.requestTimeout = 120_000
  // A connection that never sends a byte is not covered by headersTimeout: cut idle sockets too.
  // (ws clears this on upgrade; the gateway polices WebSockets itself.)
  server.timeout = 30_000
  injectWebSocket(server)
  // Server-to-server links have their own ws server and limits (federation/link-manager.ts).
  routeFederationUpgrades(server, services.links)
  services.replication.start()
  // Housekeeping, hourly: sessions that can never be refreshed again, submissions answered long ago.
  const housekeeping = setInterval(() => {
    services.accounts.purgeExpired()
    services.replication.outbox.purgeAnswered()
    services.repos.toDevice.purgeOrphans()
  }, 3600_000)
  housekeeping.unref()
  const port = (server.address() as AddressInfo).port
  const host = config.host.includes(':') ? `[${config.host}]` : config.host
  const url = `http://${host}:${port}`
  log.info({ url, serverName: config.serverName }, 'listening')

  let closing: Promise<void> | null = null
  return {
    url,
    port,
    config,
    services,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
        clearInterval(housekeeping)
        const drained = gateway.close()
        // Links say FINAL before the sockets go; they are upgraded, so closeAllConnections skips them.
        const unlinked = services.links.close()
        server.closeAllConnections()
        await Promise.all([stopped, drained, unlinked])
        await services.sequencer.drain()
        walSync?.close()
        await checkpointer.close()
        db.close()
        log.info('stopped')
      })()
      return closing
    },
  }
}
