/**
 * FLT-1: kill -9 mid-stream. A homeserver in a child process receives a pipelined stream of sends;
 * it is SIGKILLed at a random point several times and restarted on the same data directory. Every
 * send that was acked `sent` must be stored exactly once, the database must pass integrity_check, and
 * the client finishes the stream by resending un-acked txn ids with no duplicate.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { createRoom, fullHistory, register, tempDir, TestSocket, FAST_ARGON2 } from './helpers.ts'

const BIN = fileURLToPath(new URL('../bin/parley-homeserver.mjs', import.meta.url))
const TOTAL = 3000
const ROUNDS = 4
const IN_FLIGHT = 64

interface Child {
  proc: ChildProcess
  url: string
}

function startChild(dataDir: string, configPath: string): Promise<Child> {
  const proc = spawn(
    process.execPath,
    [
      BIN,
      'start',
      '--server-name',
      'acme.localhost',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--config',
      configPath,
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  return new Promise((resolve, reject) => {
    let out = ''
    const onData = (chunk: Buffer) => {
      out += chunk.toString()
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m) {
        proc.stdout!.off('data', onData)
        proc.stdout!.resume()
        resolve({ proc, url: m[1]! })
      }
    }
    proc.stdout!.on('data', onData)
    proc.once('exit', (code) => reject(new Error(`homeserver exited early with ${code}: ${out}`)))
  })
}

function killHard(child: Child): Promise<void> {
  return new Promise((resolve) => {
    child.proc.once('exit', () => resolve())
    child.proc.kill('SIGKILL')
  })
}

const dirs: string[] = []
const children = new Set<ChildProcess>()
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL')
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

describe('FLT-1 durability across kill -9', () => {
  it(
    'keeps every acked message exactly once and resumes the stream without duplicates',
    { timeout: 120_000 },
    async () => {
      const dataDir = await tempDir()
      dirs.push(dataDir)
      const configPath = join(dataDir, 'config.json')
      await writeFile(
        configPath,
        JSON.stringify({
          logLevel: 'warn',
          argon2: FAST_ARGON2,
          limits: {
            messagesPerSecond: 100_000,
            messageBurst: 100_000,
            framesPerSecond: 100_000,
            frameBurst: 100_000,
          },
        }),
      )
      let child = await startChild(dataDir, configPath)
      const alice = await register(child, 'alice')
      const room = await createRoom(child, alice, { kind: 'group', name: 'durable' })

      const acked = new Map<string, string>() // txn id -> event id
      let round = 0
      while (acked.size < TOTAL) {
        const sock = new TestSocket(child.url)
        await sock.opened()
        sock.send({ type: 'auth', token: alice.access_token })
        await sock.type('ready')
        // Kill at a random point of this round's stream (the last round runs to the end).
        const killAt = round < ROUNDS ? acked.size + 200 + Math.floor(Math.random() * 400) : Infinity
        let next = 0
        const pending = new Set<string>()
        const done = new Promise<void>((resolve) => {
          const pump = () => {
            while (pending.size < IN_FLIGHT && next < TOTAL) {
              const txn = `t${next++}`
              if (acked.has(txn)) continue
              pending.add(txn)
              sock.send({ type: 'send', txn_id: txn, room, event_type: 'm.message', content: { body: txn } })
            }
            if (pending.size === 0 && next >= TOTAL) resolve()
          }
          sock.ws.on('message', (data) => {
            const f = JSON.parse(data.toString()) as { type: string; txn_id?: string; event_id?: string }
            if (f.type === 'sent' && f.txn_id) {
              // An ack is only counted once the harness has seen it: that is the promise under test.
              acked.set(f.txn_id, f.event_id!)
              pending.delete(f.txn_id)
              if (acked.size >= killAt) {
                resolve()
                return
              }
              pump()
            }
          })
          sock.ws.on('close', () => resolve())
          pump()
        })
        await done
        if (acked.size >= TOTAL) {
          sock.close()
          break
        }
        await killHard(child)
        sock.close()
        round++
        child = await startChild(dataDir, configPath)
        // After each restart every acked event is there.
        const ids = await allMessageIds(child.url, room, alice.access_token)
        for (const [txn, eventId] of acked) expect(ids.get(eventId), `acked ${txn} lost`).toBe(txn)
      }
      expect(round).toBe(ROUNDS)

      const ids = await allMessageIds(child.url, room, alice.access_token)
      const bodies = [...ids.values()]
      expect(bodies).toHaveLength(TOTAL)
      expect(bodies).toEqual(Array.from({ length: TOTAL }, (_, i) => `t${i}`))
      await new Promise<void>((resolve) => {
        child.proc.once('exit', () => resolve())
        child.proc.kill('SIGTERM')
      })
      const db = new Database(join(dataDir, 'homeserver.db'), { readonly: true })
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok')
      expect((db.prepare('SELECT COUNT(*) AS n FROM txns').get() as { n: number }).n).toBe(TOTAL)
      db.close()
    },
  )
})

/** event id -> body of every message in the room, oldest first. */
async function allMessageIds(url: string, room: string, token: string): Promise<Map<string, string>> {
  const events = await fullHistory({ url }, token, room)
  return new Map(events.filter((e) => e.type === 'm.message').map((e) => [e.event_id, e.content.body!]))
}
