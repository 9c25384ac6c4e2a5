/**
 * `parley-homeserver start | create-user | reset-password | deactivate | rotate-key | peers`.
 * Admin commands open the same database file (WAL lets them run beside a live server); sockets of a
 * revoked user are closed by the running server on its next heartbeat, a trust decision on a peer
 * applies at its next key lookup, and a rotated key is used after the server's next start.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { sodiumReady, isLocalpart, isServerName, userId as makeUserId } from '@parley/protocol'
import { systemClock } from './clock.ts'
import { parseConfig, type ConfigInput } from './config.ts'
import { openDatabase } from './db/database.ts'
import { Repos } from './db/repos/index.ts'
import { httpKeyFetcher } from './federation/key-fetcher.ts'
import { PeerKeys, type PeerInfo } from './federation/peer-keys.ts'
import { createLogger } from './logger.ts'
import { AccountsService, accountsOptions } from './services/accounts.ts'
import { PasswordHasher } from './services/passwords.ts'
import { rotateServerKey } from './services/server-keys.ts'
import { startServer } from './server.ts'

const USAGE = `usage:
  parley-homeserver start --server-name NAME [--host 127.0.0.1] [--port 8008] [--data-dir DIR]
                          [--peer NAME=URL ...] [--allow-origin ORIGIN ...] [--web-client DIR] [--config FILE]
  parley-homeserver create-user USERNAME --data-dir DIR --server-name NAME   (password from PARLEY_PASSWORD or stdin)
  parley-homeserver reset-password USERNAME --data-dir DIR --server-name NAME
  parley-homeserver deactivate USERNAME --data-dir DIR --server-name NAME
  parley-homeserver rotate-key --data-dir DIR --server-name NAME   (restart the server to use the new key)
  parley-homeserver peers [--json] --data-dir DIR --server-name NAME          list peers, their keys and state
  parley-homeserver peers trust PEER --data-dir DIR --server-name NAME [--peer PEER=URL]
                                      fetch PEER's key document now and pin its keys (clears a quarantine)
  parley-homeserver peers forget PEER --data-dir DIR --server-name NAME     drop PEER and its pinned keys`

const OPTIONS = {
  'server-name': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'data-dir': { type: 'string' },
  peer: { type: 'string', multiple: true },
  'allow-origin': { type: 'string', multiple: true },
  'web-client': { type: 'string' },
  config: { type: 'string' },
  'log-level': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

async function configFrom(values: ReturnType<typeof parse>['values']): Promise<ConfigInput> {
  const file: Record<string, unknown> = values.config
    ? (JSON.parse(await readFile(values.config, 'utf8')) as Record<string, unknown>)
    : {}
  const merged: Record<string, unknown> = { dataDir: './data', ...file }
  if (values['server-name']) merged.serverName = values['server-name']
  if (values.host) merged.host = values.host
  if (values.port !== undefined) merged.port = Number(values.port)
  if (values['data-dir']) merged.dataDir = values['data-dir']
  if (values['web-client']) merged.webClientDir = values['web-client']
  if (values['log-level']) merged.logLevel = values['log-level']
  if (values['allow-origin']) merged.allowedOrigins = values['allow-origin']
  if (values.peer) {
    const peers: Record<string, string> = { ...((file.peers as Record<string, string>) ?? {}) }
    for (const p of values.peer) {
      const eq = p.indexOf('=')
      if (eq < 1) throw new Error(`--peer wants NAME=URL, got ${p}`)
      peers[p.slice(0, eq)] = p.slice(eq + 1)
    }
    merged.peers = peers
  }
  return merged as ConfigInput
}

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
}

async function readPassword(): Promise<string> {
  if (process.env.PARLEY_PASSWORD) return process.env.PARLEY_PASSWORD
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '')
}

async function admin(
  command: string,
  username: string | undefined,
  values: ReturnType<typeof parse>['values'],
) {
  const config = parseConfig(await configFrom(values))
  if (!username || !isLocalpart(username.toLowerCase())) throw new Error('give a valid user name')
  await sodiumReady()
  const db = openDatabase(join(config.dataDir, 'homeserver.db'), { synchronous: config.synchronous })
  try {
    const repos = new Repos(db)
    const hasher = new PasswordHasher({
      memoryKiB: config.argon2.memoryKiB,
      iterations: config.argon2.iterations,
      maxConcurrent: 1,
    })
    const accounts = new AccountsService(repos, hasher, systemClock, accountsOptions(config, 'open'))
    const id = makeUserId(username.toLowerCase(), config.serverName)
    if (command === 'create-user') {
      const password = await readPassword()
      if (password.length < 8) throw new Error('password must be at least 8 characters')
      console.log(`created ${await accounts.createUser(username.toLowerCase(), password)}`)
    } else if (command === 'reset-password') {
      const password = await readPassword()
      if (password.length < 8) throw new Error('password must be at least 8 characters')
      await accounts.resetPassword(id, password)
      console.log(`password reset for ${id}; all its sessions were ended`)
    } else {
      accounts.deactivate(id)
      console.log(`deactivated ${id}; all its sessions were ended`)
    }
  } finally {
    db.close()
  }
}

const iso = (ts: number) => new Date(ts).toISOString()

/** Human-readable listing of peers, one block each. */
export function formatPeers(peers: readonly PeerInfo[]): string {
  if (peers.length === 0) return 'no peers'
  const blocks = peers.map((p) => {
    const lines = [
      `${p.serverName}  ${p.state}  first seen ${iso(p.firstSeenTs)}  updated ${iso(p.updatedTs)}`,
    ]
    if (p.reason) lines.push(`  reason: ${p.reason}`)
    for (const k of p.keys) {
      lines.push(`  ${k.kid}  ${k.key}  ${k.expiredTs === null ? 'current' : `expired ${iso(k.expiredTs)}`}`)
    }
    return lines.join('\n')
  })
  return blocks.join('\n')
}

/** `rotate-key` and `peers`: server keys and peer trust, on the database beside a live server. */
async function keys(positionals: string[], values: ReturnType<typeof parse>['values']) {
  const config = parseConfig(await configFrom(values))
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 })
  await sodiumReady()
  const db = openDatabase(join(config.dataDir, 'homeserver.db'), { synchronous: config.synchronous })
  try {
    const repos = new Repos(db)
    if (positionals[0] === 'rotate-key') {
      const rotation = await rotateServerKey({
        dataDir: config.dataDir,
        serverName: config.serverName,
        repo: repos.serverKeys,
        clock: systemClock,
      })
      console.log(
        `rotated: ${rotation.current} is the current key; ${rotation.retired} expired at ${iso(rotation.expiredTs)} ` +
          'and stays in old_verify_keys. Restart the server to sign with the new key.',
      )
      return
    }
    const peerKeys = new PeerKeys(repos, systemClock, createLogger('silent', config.serverName), {
      serverName: config.serverName,
      ownKeys: { keyFor: () => null },
      pinnedKeys: config.federation.pinnedKeys,
      fetch: httpKeyFetcher(config.peers, { allowPrivateAddresses: config.federation.allowPrivateAddresses }),
    })
    const [, action, peer] = positionals
    if (action === undefined) {
      const list = peerKeys.list()
      console.log(values.json ? JSON.stringify(list, null, 2) : formatPeers(list))
      return
    }
    if (action !== 'trust' && action !== 'forget') throw new Error(`unknown peers action ${action}\n${USAGE}`)
    if (!peer || !isServerName(peer)) throw new Error('give a valid peer server name')
    if (peer === config.serverName) throw new Error('that is this server')
    if (action === 'forget') {
      if (!peerKeys.forget(peer)) throw new Error(`no peer ${peer}`)
      console.log(`forgot ${peer}; its next key document is trusted on first use`)
      return
    }
    const trusted = await peerKeys.trust(peer)
    if (!trusted.ok) throw new Error(`cannot trust ${peer}: ${trusted.error.message}`)
    console.log(`trusted ${peer}\n${formatPeers([trusted.value])}`)
  } finally {
    db.close()
  }
}

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv)
  const command = positionals[0]
  if (values.help || !command) {
    console.log(USAGE)
    return
  }
  if (command === 'start') {
    const config = await configFrom(values)
    const server = await startServer(config)
    // The public contract: one line containing "listening" and the base URL.
    console.log(`parley-homeserver ${server.config.serverName} listening on ${server.url}`)
    let stopping = false
    const stop = (signal: string) => {
      if (stopping) return
      stopping = true
      createLogger('info', server.config.serverName).info({ signal }, 'shutting down')
      server.close().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    }
    process.on('SIGTERM', () => stop('SIGTERM'))
    process.on('SIGINT', () => stop('SIGINT'))
    return
  }
  if (command === 'create-user' || command === 'reset-password' || command === 'deactivate') {
    return admin(command, positionals[1], values)
  }
  if (command === 'rotate-key' || command === 'peers') return keys(positionals, values)
  throw new Error(`unknown command ${command}\n${USAGE}`)
}
