/**
 * The sequencer's group commit against its durability hook, over a real temp SQLite database with the
 * real room rules and repositories, wired by createServices as server.ts does. The fsync is a promise
 * the test settles by hand, so "not yet" is observable: nothing here sleeps.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ParleyError, sodiumReady } from '@parley/protocol'
import { ManualClock } from '../clock.ts'
import { parseConfig } from '../config.ts'
import { openDatabase, type Database } from '../db/database.ts'
import { ServerKeysRepo } from '../db/repos/server-keys.ts'
import { memoryLogger } from '../../test/helpers.ts'
import { createServices, type Services } from './index.ts'
import type { CommittedEvent, Draft, Durability } from './sequencer.ts'
import { ServerKeys } from './server-keys.ts'

const SERVER = 'acme.localhost'
const ALICE = `@alice:${SERVER}`
const MALLORY = `@mallory:${SERVER}`

interface Deferred {
  resolve(): void
  reject(err: unknown): void
}

/** A Durability whose fsyncs complete when the test says so, counting every call. */
class ControlledDurability implements Durability {
  /** fsyncs started and not yet settled, oldest first. */
  readonly pending: Deferred[] = []
  syncCalls = 0
  commitCalls = 0
  readonly fatals: unknown[] = []
  /** When set, fsyncs complete at once (set-up and tear-down). */
  auto = true

  readonly sync = (): Promise<void> => {
    this.syncCalls++
    if (this.auto) return Promise.resolve()
    return new Promise<void>((resolve, reject) => this.pending.push({ resolve, reject }))
  }
  committed(): void {
    this.commitCalls++
  }
  fatal(err: unknown): void {
    this.fatals.push(err)
  }
  /** Completes the oldest running fsync. */
  finish(): void {
    const d = this.pending.shift()
    if (!d) throw new Error('no fsync is running')
    d.resolve()
  }
  /** Fails the oldest running fsync. */
  fail(err: unknown): void {
    const d = this.pending.shift()
    if (!d) throw new Error('no fsync is running')
    d.reject(err)
  }
  resetCounts(): void {
    this.syncCalls = 0
    this.commitCalls = 0
  }
}

/** A promise whose outcome can be read synchronously (handlers attached at once: no unhandled rejection). */
function track<T>(promise: Promise<T>) {
  const t = {
    state: 'pending' as 'pending' | 'resolved' | 'rejected',
    value: undefined as T | undefined,
    error: undefined as unknown,
    done: promise.then(
      (v) => {
        t.state = 'resolved'
        t.value = v
      },
      (e: unknown) => {
        t.state = 'rejected'
        t.error = e
      },
    ),
  }
  return t
}

/** Lets every queued callback run, including the sequencer's scheduled flush (setImmediate). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

let dir: string
let db: Database
let durability: ControlledDurability
let logs: ReturnType<typeof memoryLogger>
let services: Services
let room: string
/** What onCommit listeners saw, one array per call. */
let published: CommittedEvent[][]

beforeAll(() => sodiumReady())

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-sequencer-'))
  const config = parseConfig({ serverName: SERVER, dataDir: dir, logLevel: 'silent' })
  const clock = new ManualClock(1_700_000_000_000)
  db = openDatabase(join(dir, 'homeserver.db'), { synchronous: 'NORMAL' })
  const serverKeys = await ServerKeys.open({
    dataDir: dir,
    serverName: SERVER,
    repo: new ServerKeysRepo(db),
    clock,
  })
  durability = new ControlledDurability()
  logs = memoryLogger('info')
  const noFederation = () => Promise.reject(new Error('no federation in these tests'))
  services = createServices(config, db, serverKeys, clock, logs.logger, durability, noFederation)
  room = (await services.rooms.create(ALICE, { kind: 'group', name: 'sequencer' })).room_id
  published = []
  services.sequencer.onCommit((events) => published.push([...events]))
  durability.resetCounts()
  durability.auto = false
})

afterEach(async () => {
  // Let whatever is still queued finish, so nothing touches the database after it is closed.
  durability.auto = true
  while (durability.pending.length > 0) durability.finish()
  await services.sequencer.drain()
  db.close()
  await rm(dir, { recursive: true, force: true })
})

const message = (body: string, sender = ALICE): Draft => ({
  room,
  type: 'm.message',
  sender,
  content: { body },
})

/** Stream position of the newest stored row, visible or not. */
const storedHead = () => services.repos.events.maxStreamPos()

describe('Sequencer with a durability hook', () => {
  it('neither acks, publishes nor shows a commit to readers until its fsync completes', async () => {
    const seq = services.sequencer
    const head = seq.streamHead
    const sent = track(seq.submit(message('hello')))
    seq.flush()
    // Written and committed: the fsync is running.
    expect(durability.commitCalls).toBe(1)
    expect(durability.syncCalls).toBe(1)
    expect(storedHead()).toBe(head + 1)
    await turn()

    expect(sent.state).toBe('pending')
    expect(published).toEqual([])
    expect(seq.streamHead).toBe(head)
    // Readers are bounded by the stream head: neither sync nor history shows it.
    expect(services.sync.page(ALICE, head, 100, 1 << 20).count).toBe(0)
    expect(services.rooms.history(ALICE, room, undefined, 50).events.map((e) => e.type)).not.toContain(
      'm.message',
    )

    durability.finish()
    await sent.done
    expect(sent.state).toBe('resolved')
    expect(sent.value).toMatchObject({ stream_pos: head + 1, type: 'm.message', sender: ALICE })
    expect(seq.streamHead).toBe(head + 1)
    expect(published).toEqual([[sent.value]])
    expect(services.sync.page(ALICE, head, 100, 1 << 20).count).toBe(1)
  })

  it('commits drafts that arrive during an fsync together in one transaction and acks them after the next fsync', async () => {
    const seq = services.sequencer
    const head = seq.streamHead
    const first = track(seq.submit(message('first')))
    seq.flush()
    expect(durability.syncCalls).toBe(1)

    const later = ['second', 'third', 'fourth'].map((b) => track(seq.submit(message(b))))
    seq.flush()
    await turn()
    // Queued, not written: the sequencer waits for the running fsync.
    expect(durability.commitCalls).toBe(1)
    expect(durability.syncCalls).toBe(1)
    expect(storedHead()).toBe(head + 1)

    durability.finish()
    await first.done
    await turn()
    expect(first.state).toBe('resolved')
    // The fsync's completion wrote all three in a single commit and started the next fsync.
    expect(durability.commitCalls).toBe(2)
    expect(durability.syncCalls).toBe(2)
    expect(storedHead()).toBe(head + 4)
    expect(seq.streamHead).toBe(head + 1)
    expect(later.map((t) => t.state)).toEqual(['pending', 'pending', 'pending'])

    durability.finish()
    await Promise.all(later.map((t) => t.done))
    expect(later.map((t) => t.state)).toEqual(['resolved', 'resolved', 'resolved'])
    expect(later.map((t) => t.value!.stream_pos)).toEqual([head + 2, head + 3, head + 4])
    expect(seq.streamHead).toBe(head + 4)
    expect(published.map((batch) => batch.map((e) => JSON.parse(e.content).body))).toEqual([
      ['first'],
      ['second', 'third', 'fourth'],
    ])
    // One transaction per batch: the owner signs only the newest envelope of a room in each batch.
    const sigs = [first, ...later].map((t) => services.repos.events.get(t.value!.event_id)!.owner_sig)
    expect(sigs.map((s) => s !== null)).toEqual([true, false, false, true])
    expect(durability.fatals).toEqual([])
  })

  it('settles a batch whose drafts are all refused without an fsync', async () => {
    const seq = services.sequencer
    const head = seq.streamHead
    const refused = [
      track(seq.submit(message('let me in', MALLORY))),
      track(seq.submit(message('?', MALLORY))),
    ]
    seq.flush()
    await Promise.all(refused.map((t) => t.done))

    for (const t of refused) {
      expect(t.state).toBe('rejected')
      expect(t.error).toBeInstanceOf(ParleyError)
      expect(t.error).toMatchObject({ errcode: 'P_FORBIDDEN' })
    }
    expect(durability.syncCalls).toBe(0)
    expect(durability.commitCalls).toBe(0)
    expect(storedHead()).toBe(head)
    expect(seq.streamHead).toBe(head)
    expect(published.flat()).toEqual([])
  })

  it('answers a repeated txn id with the durable original without another fsync', async () => {
    const seq = services.sequencer
    const txn = { deviceId: 'DEVICE', txnId: 'once' }
    const original = track(seq.submit({ ...message('once'), txn }))
    seq.flush()
    durability.finish()
    await original.done
    expect(durability.syncCalls).toBe(1)

    const retry = track(seq.submit({ ...message('once'), txn }))
    seq.flush()
    await retry.done
    expect(retry.state).toBe('resolved')
    expect(retry.value!.event_id).toBe(original.value!.event_id)
    expect(durability.syncCalls).toBe(1)
    expect(storedHead()).toBe(original.value!.stream_pos)
  })

  it('rejects every pending and later submit with P_STORAGE and calls fatal once when an fsync fails', async () => {
    const seq = services.sequencer
    const head = seq.streamHead
    const inFsync = track(seq.submit(message('in the failing fsync')))
    seq.flush()
    const queued = track(seq.submit(message('queued behind it')))
    const drained = track(seq.drain())
    await turn()
    expect(drained.state).toBe('pending')

    const eio = Object.assign(new Error('fdatasync: EIO'), { code: 'EIO' })
    durability.fail(eio)
    await Promise.all([inFsync.done, queued.done, drained.done])

    for (const t of [inFsync, queued]) {
      expect(t.state).toBe('rejected')
      expect(t.error).toMatchObject({ errcode: 'P_STORAGE' })
    }
    expect(drained.state).toBe('resolved')
    expect(durability.fatals).toEqual([eio])

    const after = track(seq.submit(message('after the failure')))
    let callbackError: unknown
    seq.submitWith(
      message('after the failure, hot path'),
      () => expect.unreachable('acked after a failed fsync'),
      (err) => (callbackError = err),
    )
    await after.done
    expect(after.error).toMatchObject({ errcode: 'P_STORAGE' })
    expect(callbackError).toMatchObject({ errcode: 'P_STORAGE' })
    await seq.drain()

    // Nothing more was written, synced, published or made visible; fatal stayed a single call.
    expect(durability.syncCalls).toBe(1)
    expect(durability.commitCalls).toBe(1)
    expect(durability.fatals).toHaveLength(1)
    expect(storedHead()).toBe(head + 1)
    expect(seq.streamHead).toBe(head)
    expect(published).toEqual([])
  })

  it('still acks a commit whose listener throws, and logs the listener error', async () => {
    const seq = services.sequencer
    seq.onCommit(() => {
      throw new Error('listener exploded')
    })
    const after: CommittedEvent[][] = []
    seq.onCommit((events) => after.push([...events]))

    const sent = track(seq.submit(message('still acked')))
    seq.flush()
    durability.finish()
    await sent.done

    expect(sent.state).toBe('resolved')
    expect(published).toEqual([[sent.value]])
    // The listeners after the failing one still run.
    expect(after).toEqual([[sent.value]])
    const lines = logs
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: string })
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 50,
        msg: 'commit listener failed',
        err: expect.stringContaining('listener exploded'),
      }),
    )
    // The message text never reaches the log.
    expect(logs.text()).not.toContain('still acked')
  })
})
