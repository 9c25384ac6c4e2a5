/**
 * `npm run demo [-- --fresh] [--data-dir DIR] [--acme-port N] [--globex-port N]`
 *
 * Two organisations chatting over federation, on this machine: starts acme.localhost and
 * globex.localhost (child processes, through the homeserver's CLI), seeds users, a shared group room,
 * a cross-organisation DM and a short conversation (scripts/demo-setup.ts), writes a ready CLI session
 * per user, prints how to join in, and keeps both servers running until Ctrl-C.
 *
 * Data stays in `data/demo` (acme.localhost/, globex.localhost/, cli/), so a second run finds the
 * same users and rooms; `--fresh` deletes it first. Ports: 8008 and 8009, or --acme-port/--globex-port
 * (or PARLEY_DEMO_ACME_PORT/PARLEY_DEMO_GLOBEX_PORT); data dir: --data-dir or PARLEY_DEMO_DATA_DIR.
 */
import { existsSync } from 'node:fs'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { HttpApi } from '@parley/protocol/client'
import { FileStore } from './cli/file-store.ts'
import {
  ACME,
  DEMO_SERVERS,
  GLOBEX,
  GROUP_NAME,
  seedDemo,
  startDemoServers,
  type DemoCluster,
  type DemoSeed,
} from './demo-setup.ts'

const HOST = '127.0.0.1'
/** Marks a directory this script created, so `--fresh` never deletes anything else. */
const MARKER = '.parley-demo'

interface Options {
  readonly fresh: boolean
  readonly dataDir: string
  readonly ports: Record<typeof ACME | typeof GLOBEX, number>
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      fresh: { type: 'boolean', default: false },
      'data-dir': { type: 'string', default: process.env.PARLEY_DEMO_DATA_DIR ?? join('data', 'demo') },
      'acme-port': { type: 'string', default: process.env.PARLEY_DEMO_ACME_PORT ?? '8008' },
      'globex-port': { type: 'string', default: process.env.PARLEY_DEMO_GLOBEX_PORT ?? '8009' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    console.log('usage: npm run demo -- [--fresh] [--data-dir DIR] [--acme-port 8008] [--globex-port 8009]')
    process.exit(0)
  }
  const port = (flag: string, v: string | undefined) => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1 || n > 65535)
      throw new Error(`--${flag}: a port from 1 to 65535, not ${v}`)
    return n
  }
  const ports = {
    [ACME]: port('acme-port', values['acme-port']),
    [GLOBEX]: port('globex-port', values['globex-port']),
  }
  if (ports[ACME] === ports[GLOBEX]) throw new Error('acme and globex need two different ports')
  return { fresh: values.fresh ?? false, dataDir: resolve(values['data-dir']!), ports }
}

/** Creates (or, with `fresh`, recreates) the demo directory; refuses a non-empty one it did not make. */
async function prepareDir(dir: string, fresh: boolean): Promise<void> {
  const entries = existsSync(dir) ? await readdir(dir) : []
  if (entries.length > 0 && !entries.includes(MARKER))
    throw new Error(`${dir} is not empty and was not made by the demo: choose another --data-dir`)
  if (fresh && entries.length > 0) {
    await rm(dir, { recursive: true, force: true })
    console.log(`--fresh: deleted ${shown(dir)}`)
  }
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await writeFile(
    join(dir, MARKER),
    'Data of `npm run demo`; `npm run demo -- --fresh` deletes this directory.\n',
  )
}

/** A CLI state file per user, signed in as its own device (kept across runs while it stays valid). */
async function cliSessions(seed: DemoSeed, dir: string): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const files: Record<string, string> = {}
  for (const user of Object.values(seed.users)) {
    const file = join(dir, `${user.name}.json`)
    const store = new FileStore(file)
    const session = await store.getSession()
    if (session?.user_id !== user.userId || session.base_url !== user.url) {
      await new HttpApi({ baseUrl: user.url, store }).login(user.name, user.password, {
        deviceName: 'parley-cli',
      })
    }
    files[user.name] = file
  }
  return files
}

function shown(path: string): string {
  const rel = relative(process.cwd(), path)
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path
}

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`

function summary(cluster: DemoCluster, seed: DemoSeed, dir: string, cli: Record<string, string>): string {
  const name = (userId: string) => userId.slice(1, userId.indexOf(':'))
  const out: string[] = ['', 'Parley demo: two organisations on two federated homeservers', '']
  for (const server of DEMO_SERVERS) {
    const s = cluster.servers[server]
    out.push(`  ${server.padEnd(17)} ${s.url.padEnd(23)} data ${shown(s.dataDir)}, log ${shown(s.logFile)}`)
  }
  out.push('', '  user                       password             server')
  for (const u of Object.values(seed.users))
    out.push(`  ${u.userId.padEnd(26)} ${u.password.padEnd(20)} ${u.url}`)
  out.push(
    '',
    `  group "${GROUP_NAME}"  ${seed.rooms.group}`,
    '    owned by acme.localhost; alice, bob (acme) and carol, dave (globex) joined',
    `  DM alice <-> carol  ${seed.rooms.dm}`,
    '',
    `  The group as globex.localhost shows it (acme's messages replicated, globex's sent through acme):`,
  )
  for (const l of seed.views[GLOBEX].group) out.push(`    ${name(l.sender).padEnd(6)} ${l.body}`)
  out.push('  The DM as acme.localhost shows it:')
  for (const l of seed.views[ACME].dm) out.push(`    ${name(l.sender).padEnd(6)} ${l.body}`)
  const state = (user: string) => `--state ${quote(shown(cli[user]!))}`
  out.push(
    '',
    `  Chat from other terminals (each user has a signed-in CLI session in ${shown(join(dir, 'cli'))}/):`,
    `    npm run cli -- ${state('carol')} tail                      # carol's live feed, on globex`,
    `    npm run cli -- ${state('alice')} send ${quote(seed.rooms.group)} hello from acme`,
    `    npm run cli -- ${state('carol')} send ${quote(seed.rooms.dm)} hi alice, from globex`,
    `    npm run cli -- ${state('dave')} rooms`,
    '  or sign in as a new device with a state file of your own:',
    `    PARLEY_PASSWORD=${seed.users.carol.password} npm run cli -- --state /tmp/carol.json login ${seed.users.carol.url} carol`,
    '',
    `  Re-running keeps users, rooms and history; npm run demo -- --fresh starts over. Ctrl-C stops both servers.`,
    '',
  )
  return out.join('\n')
}

async function main(): Promise<void> {
  const opts = options()
  await prepareDir(opts.dataDir, opts.fresh)
  console.log(`starting ${ACME} on port ${opts.ports[ACME]} and ${GLOBEX} on port ${opts.ports[GLOBEX]} ...`)
  const cluster = await startDemoServers({ dataDir: opts.dataDir, host: HOST, ports: opts.ports })
  let stopping = false
  const stop = async (why: string, code: number) => {
    if (stopping) return
    stopping = true
    console.log(`\n${why}: stopping both homeservers ...`)
    await cluster.stop()
    console.log('stopped; data kept in', shown(opts.dataDir))
    process.exit(code)
  }
  // Ctrl-C also reaches the servers directly (same process group): both paths end in a graceful close.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stop(signal, 0))
  for (const server of Object.values(cluster.servers)) {
    void server.exited.then((how) => {
      if (!stopping)
        void stop(`${server.serverName} exited unexpectedly (${how}); see ${shown(server.logFile)}`, 1)
    })
  }
  try {
    const seed = await seedDemo(cluster.urls, { log: (line) => console.log(`  ${line}`) })
    const cli = await cliSessions(seed, join(opts.dataDir, 'cli'))
    console.log(summary(cluster, seed, opts.dataDir, cli))
  } catch (err) {
    console.error(`demo set-up failed: ${err instanceof Error ? err.message : String(err)}`)
    await stop('set-up failed', 1)
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err)
  process.exit(1)
})
