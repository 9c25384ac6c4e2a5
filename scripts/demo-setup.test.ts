/**
 * `npm run demo`'s set-up against two real homeservers (child processes through the CLI, as the demo
 * runs them) on free ports with a temp data dir: the world it seeds, seen from both servers, and a
 * second run over the same data.
 */
import net from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ACME,
  DEMO_SCRIPT,
  GLOBEX,
  seedDemo,
  startDemoServers,
  type DemoCluster,
  type DemoSeed,
} from './demo-setup.ts'

/** A port nobody listens on right now: each server must know the other's URL before it starts. */
async function freePort(): Promise<number> {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const address = probe.address()
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const bodies = (lines: readonly { body: string }[]) => lines.map((l) => l.body)
const script = (room: 'group' | 'dm') => DEMO_SCRIPT.filter((l) => l.room === room).map((l) => l.body)

let dataDir: string
let cluster: DemoCluster | null = null
let first: DemoSeed

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'parley-demo-test-'))
  cluster = await startDemoServers({
    dataDir,
    host: '127.0.0.1',
    ports: { [ACME]: await freePort(), [GLOBEX]: await freePort() },
    config: { argon2: { memoryKiB: 1024, iterations: 1 } },
  })
}, 60_000)

afterAll(async () => {
  await cluster?.stop()
  await rm(dataDir, { recursive: true, force: true })
})

describe('demo set-up', () => {
  it('seeds two organisations whose users see each other’s messages on both servers', async () => {
    first = await seedDemo(cluster!.urls)
    expect(first.registered).toEqual(['alice', 'bob', 'carol', 'dave'])
    expect(first.createdRooms).toEqual(['group', 'dm'])
    expect(first.posted).toBe(DEMO_SCRIPT.length)
    expect(first.users.carol.userId).toBe('@carol:globex.localhost')
    // Both rooms are owned by acme, the group has members from both servers.
    expect(first.rooms.group.endsWith(':acme.localhost')).toBe(true)
    expect(first.rooms.dm.endsWith(':acme.localhost')).toBe(true)

    // Each server shows the whole conversation in the scripted order, with one log of event ids.
    for (const room of ['group', 'dm'] as const) {
      expect(bodies(first.views[ACME][room])).toEqual(script(room))
      expect(bodies(first.views[GLOBEX][room])).toEqual(script(room))
      expect(first.views[GLOBEX][room].map((l) => l.eventId)).toEqual(
        first.views[ACME][room].map((l) => l.eventId),
      )
    }
    const senders = (server: typeof ACME | typeof GLOBEX) =>
      new Set(first.views[server].group.map((l) => l.sender.split(':')[1]))
    // globex sees acme's users' messages and acme sees globex's.
    expect(senders(GLOBEX)).toEqual(new Set([ACME, GLOBEX]))
    expect(senders(ACME)).toEqual(new Set([ACME, GLOBEX]))
  }, 60_000)

  it('a second run logs in, finds the same rooms and posts nothing twice', async () => {
    const again = await seedDemo(cluster!.urls)
    expect(again.registered).toEqual([])
    expect(again.createdRooms).toEqual([])
    expect(again.posted).toBe(0)
    expect(again.rooms).toEqual(first.rooms)
    for (const server of [ACME, GLOBEX] as const) {
      for (const room of ['group', 'dm'] as const)
        expect(again.views[server][room]).toEqual(first.views[server][room])
    }
  }, 60_000)
})
