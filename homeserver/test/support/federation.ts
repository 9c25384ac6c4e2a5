/**
 * Several real homeservers that know each other (static peer map, real key discovery over HTTP),
 * for replication tests. Each runs on its own free port with its own temp data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { FAST_ARGON2, listeningUrl, startTestServer, type TestServer } from '../helpers.ts'
import type { ConfigInput } from '../../src/config.ts'
import type { StartOptions } from '../../src/server.ts'

/** Small timings so dead links and redials happen in test time. */
export const FAST_FEDERATION = { pingMs: 250, handshakeTimeoutMs: 2000, backoffBaseMs: 20, backoffCapMs: 300 }

/** A port nobody listens on right now (so servers can know each other's URL before starting). */
export async function freePort(): Promise<number> {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const address = probe.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return address.port
}

export interface Federation {
  readonly servers: Map<string, TestServer>
  /** Base URL of each server (stable across restarts). */
  readonly urls: Record<string, string>
  readonly ports: Record<string, number>
  get(name: string): TestServer
  /** Starts (or restarts on its port and data directory, unless `dataDir` is given) one server. */
  start(name: string, overrides?: Partial<ConfigInput>): Promise<TestServer>
  /** Stops one server, keeping its data (for restarts). */
  stop(name: string): Promise<void>
  /** Stops everything and deletes the data. */
  close(): Promise<void>
}

/** Starts homeservers with the given names, each with every other in its peer map. */
export async function startFederation(
  names: readonly string[],
  /** Config per server; `urls` are every server's own address (to put a proxy in front of a peer). */
  overrides: (name: string, urls: Readonly<Record<string, string>>) => Partial<ConfigInput> = () => ({}),
  /** Start options per server, e.g. an in-memory logger whose lines a test searches. */
  startOptions: (name: string) => StartOptions = () => ({}),
): Promise<Federation> {
  const ports: Record<string, number> = {}
  const urls: Record<string, string> = {}
  for (const name of names) {
    ports[name] = await freePort()
    urls[name] = `http://127.0.0.1:${ports[name]}`
  }
  const servers = new Map<string, TestServer>()
  const dataDirs = new Map<string, string>()
  const allDirs = new Set<string>()
  const peersOf = (name: string) =>
    Object.fromEntries(names.filter((n) => n !== name).map((n) => [n, urls[n]!]))
  const federation: Federation = {
    servers,
    urls,
    ports,
    get(name) {
      const s = servers.get(name)
      if (!s) throw new Error(`${name} is not running`)
      return s
    },
    async start(name, extra = {}) {
      const custom = overrides(name, urls)
      const s = await startTestServer(
        {
          serverName: name,
          port: ports[name]!,
          peers: peersOf(name),
          // PARLEY_TEST_LOG=debug shows the servers' logs (debugging a federation test).
          ...(process.env.PARLEY_TEST_LOG ? { logLevel: process.env.PARLEY_TEST_LOG as 'debug' } : {}),
          ...custom,
          ...extra,
          federation: { ...FAST_FEDERATION, ...custom.federation, ...extra.federation },
          ...(dataDirs.has(name) && extra.dataDir === undefined ? { dataDir: dataDirs.get(name)! } : {}),
        },
        startOptions(name),
      )
      dataDirs.set(name, s.dataDir)
      allDirs.add(s.dataDir)
      servers.set(name, s)
      return s
    },
    async stop(name) {
      const s = servers.get(name)
      servers.delete(name)
      await s?.close()
    },
    async close() {
      for (const s of servers.values()) await s.close()
      servers.clear()
      const { rm } = await import('node:fs/promises')
      for (const dir of allDirs) await rm(dir, { recursive: true, force: true })
    },
  }
  await Promise.all(names.map((n) => federation.start(n)))
  return federation
}

/** A homeserver in its own process on a fixed port and data directory, so it can be killed and restarted. */
export interface ChildHomeserver {
  readonly url: string
  readonly proc: ChildProcess
  /** kill -9, resolves once the process is gone. */
  kill(): Promise<void>
  /** SIGTERM, resolves once it exited. */
  stop(): Promise<void>
}

/** Starts `parley-homeserver start` with a config file written next to (not inside) the data directory. */
export async function spawnHomeserver(
  serverName: string,
  port: number,
  dataDir: string,
  config: Record<string, unknown>,
): Promise<ChildHomeserver> {
  const configPath = `${dataDir}.config.json`
  await writeFile(configPath, JSON.stringify({ logLevel: 'silent', argon2: FAST_ARGON2, ...config }))
  const bin = fileURLToPath(new URL('../../bin/parley-homeserver.mjs', import.meta.url))
  const proc = spawn(
    process.execPath,
    [bin, 'start', '--server-name', serverName, '--host', '127.0.0.1', '--port', String(port)].concat([
      '--data-dir',
      dataDir,
      '--config',
      configPath,
    ]),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const url = await listeningUrl(proc, exited)
  return {
    url,
    proc,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
      await exited
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      await exited
    },
  }
}

/** The newest seq of a room that a server's readers see (committed and durable; `rooms.last_seq` may run ahead). */
export function visibleHead(
  server: {
    services: {
      repos: { events: { lastSeq(room: string, upto: number): number } }
      sequencer: { streamHead: number }
    }
  },
  room: string,
): number {
  return server.services.repos.events.lastSeq(room, server.services.sequencer.streamHead)
}
