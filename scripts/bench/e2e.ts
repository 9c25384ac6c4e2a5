/**
 * The end-to-end encryption scenario of `npm run bench` (`--only e2e`): what encryption adds to a
 * message through a real homeserver (child process, core 0) with real `ParleyClient`s and `EndToEnd`
 * (in the orchestrator process, core 1: the clients' crypto is part of what is measured).
 *
 * - Latency, closed loop (one message in flight): from the call to send until every connected reader
 *   has the event and (encrypted) decrypted it. Encrypted: `EndToEnd.send` (members and keys queried
 *   from the server per send, as the client does today; the session's key shared on the first send),
 *   `EndToEnd.decrypt` on arrival. Plain: `ParleyClient.send` of the same body into a plain room.
 * - Rooms of 2 and of 100 members. The 100-member room has the sender, 3 connected readers and 96
 *   members with published device keys that never connect: every message costs the sender the key
 *   query and the server the fan-out to 100 members' rows; the 3 sockets are what readers pay (each
 *   delivery to a reader is one sample). More sockets would measure the fan-out, which the plain
 *   `fanout-*` scenarios already do.
 * - Rotation in the 100-member room: a member is removed, so the next send makes a new session and
 *   seals one envelope per remaining device (98) before the message: envelopes/s over that send.
 * - argon2id unlock (`unwrapRecoveryKey`) at the default parameters (opslimit 3, 128 MiB), in the
 *   orchestrator process (Node, libsodium-wrappers-sumo); and in Chromium, fresh per sample like the
 *   app's Web Worker, at 64, 128 (the default) and 256 MiB (E2E.md's figure): row 19's 1.5 s budget.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { EndToEnd, MemoryStore, ParleyClient } from '@parley/protocol/client'
import { e2e } from '@parley/protocol/crypto'
import type { ClientEvent } from '@parley/protocol/schema'
import { argon2InRenderer } from './argon2-renderer.ts'
import { removeDir, trackDir } from './procs.ts'
import { fmt, ms, type Row, type ScenarioReport } from './report.ts'
import { Homeserver, type SyncMode } from './server.ts'
import { Latency } from './stats.ts'
import { Window } from './window.ts'

export const E2E_SCENARIOS = ['e2e'] as const

export const E2E_FULL = {
  warmup: 20,
  small: 300,
  large: 100,
  readers: 3,
  members: 100,
  rotations: 5,
  unlocks: 3,
}
export const E2E_QUICK: typeof E2E_FULL = {
  warmup: 10,
  small: 60,
  large: 30,
  readers: 3,
  members: 100,
  rotations: 2,
  unlocks: 1,
}

/** What the scenario needs of the bench harness (index.ts's `Bench`). */
export interface E2eHarness {
  readonly opts: { readonly sync: SyncMode }
}

const PASSWORD = 'correct horse battery'

interface User {
  readonly client: ParleyClient
  readonly e2e: EndToEnd
}

async function user(url: string, name: string, connect: boolean): Promise<User> {
  const client = await ParleyClient.register(url, name, PASSWORD, {
    store: new MemoryStore(),
    WebSocket: WebSocket as never,
  })
  const keys = await EndToEnd.start(client)
  if (connect) await client.connect()
  return { client, e2e: keys }
}

/** Resolves when every reader has shown `body` (decrypted, if encrypted); records each arrival. */
class Arrivals {
  readonly latency = new Latency()
  #pending = new Map<string, { t0: number; left: number; resolve: () => void }>()

  constructor(readers: readonly User[], room: string) {
    for (const r of readers)
      r.client.on('event', ({ event }) => {
        if (event.room === room) this.#arrived(r, event)
      })
  }

  expect(body: string, readers: number): Promise<void> {
    return new Promise((resolve) =>
      this.#pending.set(body, { t0: performance.now(), left: readers, resolve }),
    )
  }

  #arrived(reader: User, event: ClientEvent): void {
    let body: unknown
    if (event.type === 'm.encrypted') {
      const result = reader.e2e.decrypt(event)
      if (result.status !== 'decrypted') return
      body = result.content.body
    } else body = (event.content as { body?: unknown }).body
    const wait = typeof body === 'string' ? this.#pending.get(body) : undefined
    if (!wait) return
    this.latency.record(performance.now() - wait.t0)
    if (--wait.left === 0) {
      this.#pending.delete(body as string)
      wait.resolve()
    }
  }
}

async function room(owner: User, members: readonly User[], joiners: readonly User[], encrypted: boolean) {
  // Membership of encrypted rooms is signed by the acting device (E2E.md section 2.3).
  const id = await owner.e2e.createRoom({ kind: 'group', name: 'bench', encrypted })
  for (const m of members)
    await (encrypted ? owner.e2e.invite(id, m.e2e.userId) : owner.client.api.invite(id, m.e2e.userId))
  for (const j of joiners) await (encrypted ? j.e2e.join(id) : j.client.api.join(id))
  return id
}

/** Sends `count` messages one at a time after `warmup`; the latency of the measured ones. */
async function series(
  send: (body: string) => Promise<unknown>,
  arrivals: Arrivals,
  readers: number,
  label: string,
  warmup: number,
  count: number,
  server: Homeserver,
) {
  for (let i = 0; i < warmup; i++) {
    const seen = arrivals.expect(`${label} warm ${i}`, readers)
    await send(`${label} warm ${i}`)
    await seen
  }
  const latency = new Latency()
  const window = new Window(server, [process.pid], null)
  await window.start()
  for (let i = 0; i < count; i++) {
    const t0 = performance.now()
    const seen = arrivals.expect(`${label} ${i}`, readers)
    await send(`${label} ${i}`)
    await seen
    latency.record(performance.now() - t0)
  }
  await window.end()
  return { latency: latency.summary(), window: window.stats, perDelivery: arrivals.latency.summary() }
}

/** Runs the scenario on a fresh server and data directory. */
export async function e2ePipeline(h: E2eHarness, sizes: typeof E2E_FULL): Promise<ScenarioReport> {
  const dataDir = await mkdtemp(join(tmpdir(), 'parley-bench-e2e-'))
  trackDir(dataDir)
  const server = await Homeserver.start({ dataDir, sync: h.opts.sync, core: 0, inspect: true })
  const users: User[] = []
  try {
    const setupStart = performance.now()
    const sender = await user(server.url, 'e2esender', true)
    const readers: User[] = []
    for (let i = 0; i < sizes.readers; i++) readers.push(await user(server.url, `e2ereader${i}`, true))
    const silent: User[] = []
    for (let i = 0; i < sizes.members - 1 - sizes.readers; i++)
      silent.push(await user(server.url, `e2esilent${i}`, false))
    users.push(sender, ...readers, ...silent)
    const one = readers.slice(0, 1)
    const small = { enc: await room(sender, one, one, true), plain: await room(sender, one, one, false) }
    const others = [...readers, ...silent]
    const large = {
      enc: await room(sender, others, readers, true),
      plain: await room(sender, others, readers, false),
    }
    const setupMs = Math.round(performance.now() - setupStart)

    const rows: Row[] = []
    const data: Record<string, unknown> = { setupMs, sizes }
    const run = async (name: string, roomId: string, encrypted: boolean, n: number, readersOf: User[]) => {
      const arrivals = new Arrivals(readersOf, roomId)
      const send = encrypted
        ? (body: string) => sender.e2e.send(roomId, 'm.message', { body })
        : (body: string) => sender.client.send(roomId, 'm.message', { body })
      const r = await series(send, arrivals, readersOf.length, name, sizes.warmup, n, server)
      data[name] = r
      rows.push({
        scenario: name,
        result: `p50 ${ms(r.latency.p50)} ms, p99 ${ms(r.latency.p99)} ms (${fmt(r.latency.count)} msgs)`,
        latency: r.latency,
        window: r.window,
        cpuPerMsgUs: Math.round((r.window.serverCpuMs * 1000) / n),
        notes: `per delivery p50 ${ms(r.perDelivery.p50)} ms; client CPU ${r.window.loadCpuPct}% of core 1`,
      })
      return r
    }
    /** What the client asks the server before each encrypted send (members, then their keys). */
    const lookups = async (roomId: string, n: number) => {
      const latency = new Latency()
      for (let i = 0; i < n; i++) {
        const t0 = performance.now()
        // What a send asks when it has no cached view of the room (the first, or after a change).
        const view = await sender.client.api.membership(roomId)
        await sender.client.api.queryKeys(view.members.map((m) => m.user_id))
        latency.record(performance.now() - t0)
      }
      return latency.summary()
    }
    const plain2 = await run('e2e-2-plain', small.plain, false, sizes.small, one)
    const enc2 = await run('e2e-2-encrypted', small.enc, true, sizes.small, one)
    const plain100 = await run('e2e-100-plain', large.plain, false, sizes.large, readers)
    const enc100 = await run('e2e-100-encrypted', large.enc, true, sizes.large, readers)

    // Rotation: remove a silent member, then time the send that makes and shares the new session.
    const rotationWindow = new Window(server, [process.pid], null)
    await rotationWindow.start()
    let rotationMs = 0
    let envelopes = 0
    for (let i = 0; i < sizes.rotations; i++) {
      const gone = silent[i]!
      await sender.e2e.kick(large.enc, gone.e2e.userId)
      const devices = sizes.members - 2 - i
      const t0 = performance.now()
      await sender.e2e.send(large.enc, 'm.message', { body: `after rotation ${i}` })
      rotationMs += performance.now() - t0
      envelopes += devices
    }
    await rotationWindow.end()
    const envelopesPerS = Math.round((envelopes * 1000) / rotationMs)
    data.rotation = { rotations: sizes.rotations, envelopes, ms: Math.round(rotationMs), envelopesPerS }
    rows.push({
      scenario: 'e2e-rotation-100',
      result: `${fmt(envelopesPerS)} envelopes/s (${ms(rotationMs / sizes.rotations)} ms per rotation, ${envelopes / sizes.rotations} envelopes)`,
      latency: null,
      window: rotationWindow.stats,
      cpuPerMsgUs: null,
      notes: 'new session + one envelope per remaining device + the to-device round trip + the message',
    })

    // argon2id at the defaults (E2E.md section 2.5): wrap once, time each unlock.
    const rk = e2e.generateRecoveryKey()
    const wrapped = e2e.wrapRecoveryKey(rk, 'a bench pass phrase')
    const unlocks: number[] = []
    const argonWindow = new Window(server, [process.pid], null)
    await argonWindow.start()
    for (let i = 0; i < sizes.unlocks; i++) {
      const t0 = performance.now()
      e2e.unwrapRecoveryKey(wrapped, 'a bench pass phrase')
      unlocks.push(Math.round(performance.now() - t0))
    }
    await argonWindow.end()
    data.argon2id = { opslimit: wrapped.kdf.opslimit, memlimit: wrapped.kdf.memlimit, unlockMs: unlocks }
    rows.push({
      scenario: 'e2e-argon2id-unlock',
      result: `${unlocks.join(' / ')} ms (opslimit ${wrapped.kdf.opslimit}, ${wrapped.kdf.memlimit / 2 ** 20} MiB)`,
      latency: null,
      window: argonWindow.stats,
      cpuPerMsgUs: null,
      notes: 'in Node on core 1, not a renderer Worker',
    })

    // The same in Chromium, as the app's Worker does it (fresh: libsodium load + one derivation).
    const rendererWindow = new Window(server, [process.pid], null)
    await rendererWindow.start()
    const rendered = await argon2InRenderer(
      [
        [3, 64],
        [3, 128],
        [3, 256],
      ],
      sizes.unlocks,
    )
    await rendererWindow.end()
    data.argon2idRenderer = rendered
    rows.push({
      scenario: 'e2e-argon2id-renderer',
      result: rendered.map((r) => `${r.mib} MiB: ${r.ms.join('/')} ms`).join('; '),
      latency: null,
      window: rendererWindow.stats,
      cpuPerMsgUs: null,
      notes: 'Chromium, fresh page per sample (libsodium load + one derivation), opslimit 3; budget 1.5 s',
    })

    const lookupWindow = new Window(server, [process.pid], null)
    await lookupWindow.start()
    const lookup2 = await lookups(small.enc, Math.min(sizes.small, 50))
    const lookup100 = await lookups(large.enc, Math.min(sizes.large, 50))
    await lookupWindow.end()
    data.keyLookupsMs = { twoMembers: lookup2, hundredMembers: lookup100 }
    rows.push({
      scenario: 'e2e-key-lookups',
      result: `2 members p50 ${ms(lookup2.p50)} ms; 100 members p50 ${ms(lookup100.p50)} ms`,
      latency: lookup2,
      window: lookupWindow.stats,
      cpuPerMsgUs: null,
      notes:
        'GET membership + POST /keys/query: what a send asks when it has no cached view of the room (the first send, or the first after a change)',
    })
    const added2 = Math.round((enc2.latency.p50 - plain2.latency.p50) * 1000) / 1000
    const added100 = Math.round((enc100.latency.p50 - plain100.latency.p50) * 1000) / 1000
    data.e2eAddedP50Ms = { twoMembers: added2, hundredMembers: added100 }
    return {
      rows,
      headline: {
        e2eAddedP50Ms: added2,
        latencyP50Ms: enc2.latency.p50,
        latencyP99Ms: enc2.latency.p99,
        argon2RendererMaxMs: Math.max(
          ...(rendered.find((r) => r.mib * 2 ** 20 === e2e.DEFAULT_PWHASH_MEMLIMIT)?.ms ?? [Number.NaN]),
        ),
      },
      data: { ...data, logProblems: server.logProblems },
    }
  } finally {
    for (const u of users) u.client.close()
    await server.stop()
    removeDir(dataDir)
  }
}
