/**
 * The reusable part of `npm run demo` (scripts/demo.ts), also driven by scripts/demo-setup.test.ts.
 * Runs in the demo's (or the test's) Node process; the homeservers are child processes.
 *
 * - {@link startDemoServers}: two homeservers, acme.localhost and globex.localhost, each started
 *   through its public CLI (`parley-homeserver start ... --peer OTHER=URL`) with the other in its
 *   static peer map, logging to `<dataDir>/<server>/homeserver.log`.
 * - {@link seedDemo}: two organisations chatting, through the client library only: four users, a
 *   group room owned by acme with members on both servers, a cross-organisation DM, a short
 *   conversation from both sides. Idempotent: existing users log in, existing rooms are found again,
 *   invites and joins that are missing are made, scripted messages already posted are not posted again.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { ApiError, HttpApi, MemoryStore, ParleyClient, type Session } from '@parley/protocol/client'

export const ACME = 'acme.localhost'
export const GLOBEX = 'globex.localhost'
export type DemoServerName = typeof ACME | typeof GLOBEX
export const DEMO_SERVERS: readonly DemoServerName[] = [ACME, GLOBEX]

const BIN = fileURLToPath(new URL('../homeserver/bin/parley-homeserver.mjs', import.meta.url))

// ---- homeservers ----

export interface DemoServer {
  readonly serverName: DemoServerName
  readonly url: string
  readonly dataDir: string
  readonly logFile: string
  readonly pid: number
  /** SIGTERM (the server drains and closes its database), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>
  /** Resolves when the process has exited, for whatever reason, with its exit code (or signal). */
  readonly exited: Promise<string>
}

export interface StartServerOptions {
  readonly serverName: DemoServerName
  readonly host: string
  readonly port: number
  readonly dataDir: string
  /** Other servers by name -> base URL (`--peer NAME=URL`). */
  readonly peers: Readonly<Record<string, string>>
  /** Extra configuration (written to `<dataDir>/demo-config.json`, passed with `--config`). */
  readonly config?: Readonly<Record<string, unknown>>
  readonly timeoutMs?: number
}

/** Starts `parley-homeserver start` as a child process; resolves once it prints its URL. */
export async function startHomeserver(options: StartServerOptions): Promise<DemoServer> {
  const { serverName, dataDir } = options
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const args = [
    BIN,
    'start',
    '--server-name',
    serverName,
    '--host',
    options.host,
    '--port',
    String(options.port),
    '--data-dir',
    dataDir,
    '--log-level',
    'info',
  ]
  for (const [name, url] of Object.entries(options.peers)) args.push('--peer', `${name}=${url}`)
  if (options.config) {
    const file = join(dataDir, 'demo-config.json')
    await writeFile(file, JSON.stringify(options.config, null, 2) + '\n')
    args.push('--config', file)
  }
  const logFile = join(dataDir, 'homeserver.log')
  const log = createWriteStream(logFile, { flags: 'a' })
  // Its own process group member: the demo decides when it stops (Ctrl-C reaches it through us).
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const tail: string[] = []
  const keep = (chunk: Buffer) => {
    log.write(chunk)
    tail.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    tail.splice(0, Math.max(0, tail.length - 20))
  }
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => {
      log.end()
      resolve(signal ?? String(code))
    }),
  )
  let url: string | null = null
  const timeoutMs = options.timeoutMs ?? 30_000
  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${serverName} did not start within ${timeoutMs / 1000} s`)),
        timeoutMs,
      )
      child.stdout!.on('data', (chunk: Buffer) => {
        keep(chunk)
        const m = /listening on (http:\/\/\S+)/.exec(chunk.toString('utf8'))
        if (m) {
          clearTimeout(timer)
          resolve(m[1]!)
        }
      })
      child.stderr!.on('data', keep)
      void exited.then((how) => {
        clearTimeout(timer)
        reject(new Error(`${serverName} exited (${how}) before listening`))
      })
    })
  } catch (err) {
    child.kill('SIGKILL')
    throw new Error(`${(err as Error).message}; its log (${logFile}) ends with:\n${tail.join('\n')}`, {
      cause: err,
    })
  }
  return {
    serverName,
    url,
    dataDir,
    logFile,
    pid: child.pid ?? -1,
    exited,
    stop: (graceMs = 15_000) => stopChild(child, exited, graceMs),
  }
}

async function stopChild(child: ChildProcess, exited: Promise<string>, graceMs: number): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }
}

export interface DemoCluster {
  readonly servers: Readonly<Record<DemoServerName, DemoServer>>
  readonly urls: Readonly<Record<DemoServerName, string>>
  stop(): Promise<void>
}

/**
 * Starts acme and globex on `host` and the given ports, each with its data in `<dataDir>/<server>`.
 * The ports must be fixed (not 0): each server is told the other's URL when it starts.
 */
export async function startDemoServers(options: {
  readonly dataDir: string
  readonly host: string
  readonly ports: Readonly<Record<DemoServerName, number>>
  readonly config?: Readonly<Record<string, unknown>>
}): Promise<DemoCluster> {
  const { host, ports } = options
  for (const name of DEMO_SERVERS) {
    if (!Number.isInteger(ports[name]) || ports[name] < 1 || ports[name] > 65535)
      throw new Error(
        `${name}: give a port from 1 to 65535 (the peer needs it in advance), not ${ports[name]}`,
      )
  }
  const shown = host.includes(':') ? `[${host}]` : host
  const urls = { [ACME]: `http://${shown}:${ports[ACME]}`, [GLOBEX]: `http://${shown}:${ports[GLOBEX]}` }
  const started = await Promise.allSettled(
    DEMO_SERVERS.map((name) =>
      startHomeserver({
        serverName: name,
        host,
        port: ports[name],
        dataDir: join(options.dataDir, name),
        peers: Object.fromEntries(DEMO_SERVERS.filter((n) => n !== name).map((n) => [n, urls[n]])),
        ...(options.config ? { config: options.config } : {}),
      }),
    ),
  )
  const up = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
  const failed = started.find((s) => s.status === 'rejected')
  if (failed) {
    await Promise.all(up.map((s) => s.stop()))
    throw failed.reason
  }
  const [acme, globex] = up as [DemoServer, DemoServer]
  return {
    servers: { [ACME]: acme, [GLOBEX]: globex },
    urls: { [ACME]: acme.url, [GLOBEX]: globex.url },
    stop: async () => {
      await Promise.all([acme.stop(), globex.stop()])
    },
  }
}

// ---- the scripted world ----

export type DemoUserName = 'alice' | 'bob' | 'carol' | 'dave'

export interface DemoUser {
  readonly name: DemoUserName
  readonly server: DemoServerName
  /** A demo password, printed by the demo: never reuse it for anything real. */
  readonly password: string
}

export const DEMO_USERS: readonly DemoUser[] = [
  { name: 'alice', server: ACME, password: 'alice-demo-password' },
  { name: 'bob', server: ACME, password: 'bob-demo-password' },
  { name: 'carol', server: GLOBEX, password: 'carol-demo-password' },
  { name: 'dave', server: GLOBEX, password: 'dave-demo-password' },
]

export const GROUP_NAME = 'Acme + Globex launch'
const GROUP_TOPIC = 'Owned by acme.localhost; Globex joins over federation'

type RoomKey = 'group' | 'dm'

/** The conversation, in order. Lines already in a room's history are not posted again. */
export const DEMO_SCRIPT: ReadonlyArray<{ room: RoomKey; from: DemoUserName; body: string }> = [
  {
    room: 'group',
    from: 'alice',
    body: 'Welcome, Globex! This room lives on acme.localhost; your messages reach it over federation.',
  },
  { room: 'group', from: 'carol', body: 'Hi Acme, Carol from Globex here, writing from globex.localhost.' },
  { room: 'group', from: 'bob', body: 'Bob (Acme) here. Shall we go through the launch checklist?' },
  {
    room: 'group',
    from: 'dave',
    body: 'Dave (Globex): the checklist is ready, three items left on our side.',
  },
  { room: 'group', from: 'alice', body: 'Great. Same time next week for the go/no-go?' },
  { room: 'dm', from: 'alice', body: 'Carol, could you review the contract draft by Friday?' },
  { room: 'dm', from: 'carol', body: 'Sure, Alice: comments by Thursday.' },
]

/** One message as a server shows it. */
export interface HistoryLine {
  readonly eventId: string
  readonly seq: number
  readonly sender: string
  readonly body: string
}

export interface DemoSeed {
  readonly users: Readonly<
    Record<
      DemoUserName,
      DemoUser & { readonly userId: string; readonly url: string; readonly session: Session }
    >
  >
  readonly rooms: Readonly<Record<RoomKey, string>>
  /** What this run had to do (empty on a re-run over complete data). */
  readonly registered: readonly DemoUserName[]
  readonly createdRooms: readonly RoomKey[]
  readonly posted: number
  /** The messages of each room as each server shows them (acme: through alice, globex: through carol). */
  readonly views: Readonly<Record<DemoServerName, Readonly<Record<RoomKey, readonly HistoryLine[]>>>>
}

export interface SeedOptions {
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void
  /** How long to wait for federation (invites to arrive, messages to replicate); default 30 s. */
  readonly timeoutMs?: number
}

interface Signed {
  readonly user: DemoUser
  readonly api: HttpApi
  readonly store: MemoryStore
  readonly session: Session
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` every 50 ms until it returns a value; throws `what` once the deadline passes. */
async function waitFor<T>(what: string, deadline: number, check: () => Promise<T | null>): Promise<T> {
  for (;;) {
    const value = await check()
    if (value !== null) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

async function signIn(url: string, user: DemoUser): Promise<{ signed: Signed; registered: boolean }> {
  const store = new MemoryStore()
  const api = new HttpApi({ baseUrl: url, store })
  let registered = true
  let session: Session
  try {
    session = await api.register(user.name, user.password, { deviceName: 'demo setup' })
  } catch (err) {
    if (!(err instanceof ApiError && err.errcode === 'P_USER_IN_USE')) throw err
    registered = false
    session = await api.login(user.name, user.password, { deviceName: 'demo setup' })
  }
  return { signed: { user, api, store, session }, registered }
}

/** Every message of a room, oldest first. */
async function messagesOf(api: HttpApi, room: string): Promise<HistoryLine[]> {
  const lines: HistoryLine[] = []
  let before: number | undefined
  for (;;) {
    const page = await api.messages(room, before === undefined ? { limit: 200 } : { before, limit: 200 })
    for (const e of page.events) {
      if (e.type !== 'm.message' || typeof e.content.body !== 'string') continue
      lines.push({ eventId: e.event_id, seq: e.seq, sender: e.sender, body: e.content.body })
    }
    if (page.next_before === undefined) return lines.reverse()
    before = page.next_before
  }
}

/**
 * Makes sure `member` is joined to `room` (owned by `owner`'s server): invited by the owner if they
 * are not (or no longer) in the member list, then joined on their own server once the invite has
 * arrived there, and waits until their server shows them joined (a remote join is committed by the
 * owner first and replicated back).
 */
async function ensureJoined(owner: Signed, member: Signed, room: string, deadline: number): Promise<void> {
  const listed = (await owner.api.members(room)).find((m) => m.user_id === member.session.user_id)
  if (!listed || listed.membership === 'leave') await owner.api.invite(room, member.session.user_id)
  else if (listed.membership === 'ban') throw new Error(`${member.session.user_id} is banned from ${room}`)
  let joinSent = false
  await waitFor(`${member.session.user_id} to be joined to ${room}`, deadline, async () => {
    const mine = (await member.api.listRooms()).find((r) => r.room_id === room)
    if (mine?.membership === 'join') return true
    if (mine?.membership === 'invite' && !joinSent) {
      await member.api.join(room)
      joinSent = true
    }
    return null
  })
}

/** Seeds (or finds again) the demo world on two running servers. See the file comment. */
export async function seedDemo(
  urls: Readonly<Record<DemoServerName, string>>,
  options: SeedOptions = {},
): Promise<DemoSeed> {
  const log = options.log ?? (() => {})
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)

  const signed = {} as Record<DemoUserName, Signed>
  const registered: DemoUserName[] = []
  for (const user of DEMO_USERS) {
    const result = await signIn(urls[user.server], user)
    signed[user.name] = result.signed
    if (result.registered) registered.push(user.name)
    log(`${result.registered ? 'registered' : 'logged in'} ${result.signed.session.user_id}`)
  }
  const { alice, bob, carol, dave } = signed

  // Rooms are found again by what they are: alice's group of that name, alice's DM with carol.
  const createdRooms: RoomKey[] = []
  const aliceRooms = await alice.api.listRooms()
  let group = aliceRooms.find((r) => r.kind === 'group' && r.name === GROUP_NAME)?.room_id
  if (!group) {
    group = await alice.api.createRoom({
      kind: 'group',
      name: GROUP_NAME,
      topic: GROUP_TOPIC,
      invite: [bob, carol, dave].map((s) => s.session.user_id),
    })
    createdRooms.push('group')
    log(`created the group ${group}`)
  }
  let dm: string | undefined
  for (const r of aliceRooms) {
    if (r.kind !== 'dm' || r.membership !== 'join') continue
    const members = await alice.api.members(r.room_id)
    if (members.some((m) => m.user_id === carol.session.user_id)) dm = r.room_id
  }
  if (!dm) {
    dm = await alice.api.createRoom({ kind: 'dm', invite: [carol.session.user_id] })
    createdRooms.push('dm')
    log(`created the DM ${dm}`)
  }
  const rooms: Record<RoomKey, string> = { group, dm }
  for (const member of [bob, carol, dave]) await ensureJoined(alice, member, group, deadline)
  await ensureJoined(alice, carol, dm, deadline)
  log('everyone is joined')

  // The conversation: each scripted line once, in order. A send resolves once the owner (acme)
  // committed it: at once for acme's users, after the round trip over the link for globex's.
  const owned = new Map<RoomKey, Set<string>>()
  for (const key of ['group', 'dm'] as const)
    owned.set(key, new Set((await messagesOf(alice.api, rooms[key])).map((l) => l.body)))
  const clients = new Map<DemoUserName, ParleyClient>()
  let posted = 0
  try {
    for (const line of DEMO_SCRIPT) {
      if (owned.get(line.room)!.has(line.body)) continue
      let client = clients.get(line.from)
      if (!client) {
        const who = signed[line.from]
        client = new ParleyClient({
          baseUrl: urls[who.user.server],
          store: who.store,
          WebSocket: WebSocket as never,
        })
        clients.set(line.from, client)
        await client.connect()
      }
      await client.send(rooms[line.room], 'm.message', { body: line.body })
      posted++
    }
  } finally {
    for (const c of clients.values()) c.close()
  }
  if (posted > 0) log(`posted ${posted} messages`)

  // Both servers hold every scripted line of both rooms (replication to globex is asynchronous).
  const want = (key: RoomKey) => DEMO_SCRIPT.filter((l) => l.room === key).map((l) => l.body)
  const views = {} as Record<DemoServerName, Record<RoomKey, HistoryLine[]>>
  for (const [server, viewer] of [
    [ACME, alice],
    [GLOBEX, carol],
  ] as const) {
    views[server] = await waitFor(`${server} to hold the whole conversation`, deadline, async () => {
      const view = { group: await messagesOf(viewer.api, group), dm: await messagesOf(viewer.api, dm) }
      const complete = (['group', 'dm'] as const).every((key) => {
        const bodies = new Set(view[key].map((l) => l.body))
        return want(key).every((b) => bodies.has(b))
      })
      return complete ? view : null
    })
  }
  log('both servers show the whole conversation')

  const users = Object.fromEntries(
    DEMO_USERS.map((u) => [
      u.name,
      { ...u, userId: signed[u.name].session.user_id, url: urls[u.server], session: signed[u.name].session },
    ]),
  ) as DemoSeed['users']
  return { users, rooms, registered, createdRooms, posted, views }
}
