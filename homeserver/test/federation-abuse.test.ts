/**
 * Abuse controls of federation (DESIGN.md section 6): private address ranges refused for discovered
 * peers, a cap on inbound handshakes in progress, a per-peer frame rate that pauses reads and then
 * costs the link, and the clock window of FLT-6 (a peer whose clock is off by more than five minutes
 * cannot link; within it, order still comes from seq).
 */
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { isPrivateAddress, publicOnlyLookup } from '../src/federation/address-guard.ts'
import { startTestServer, waitUntil, type TestServer } from './helpers.ts'
import { FAST_FEDERATION, startFederation, type Federation } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function federation(
  overrides: (name: string) => Record<string, unknown> = () => ({}),
): Promise<Federation> {
  const fed = await startFederation([ACME, GLOBEX], overrides)
  cleanups.push(() => fed.close())
  return fed
}

describe('private address ranges', () => {
  it('classifies loopback, private, link-local, CGNAT, mapped and reserved addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1'])
      expect(isPrivateAddress(a), a).toBe(true)
    for (const a of ['::1', '::', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', 'not-an-ip'])
      expect(isPrivateAddress(a), a).toBe(true)
    for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:8.8.8.8'])
      expect(isPrivateAddress(a), a).toBe(false)
  })

  it('a lookup that resolves to loopback is refused', async () => {
    const err = await new Promise<Error | null>((resolve) =>
      publicOnlyLookup('localhost', {}, (e) => resolve(e)),
    )
    expect(err?.message).toMatch(/private address/)
  })

  it('in open mode, a discovered peer on a private address is never dialled; a static peer is', async () => {
    const s: TestServer = await startTestServer({
      serverName: ACME,
      federation: { ...FAST_FEDERATION, mode: 'open' },
    })
    cleanups.push(() => s.stop())
    // `localhost` resolves to 127.0.0.1: discovery would reach the server's own network.
    await expect(s.services.links.ensureLink('localhost')).rejects.toThrow(/private address/)
  })
})

describe('inbound handshakes and frame rate', () => {
  it('refuses upgrades beyond the number of handshakes in progress', async () => {
    const s = await startTestServer({
      serverName: ACME,
      federation: { ...FAST_FEDERATION, maxHandshakes: 1 },
    })
    cleanups.push(() => s.stop())
    const url = s.url.replace(/^http/, 'ws') + '/api/v1/federation'
    const first = new WebSocket(url, { perMessageDeflate: false })
    cleanups.push(async () => first.terminate())
    await new Promise((resolve, reject) => first.once('open', resolve).once('error', reject))
    // The first socket sits in its handshake; a second is turned away before any work.
    const second = new WebSocket(url, { perMessageDeflate: false })
    second.on('error', () => {}) // the refused upgrade ends in an error event
    const status = await new Promise<number>((resolve) =>
      second.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
    )
    second.terminate()
    expect(status).toBe(503)
    // Once the first is gone, the slot is free again.
    first.terminate()
    await waitUntil(() => first.readyState === WebSocket.CLOSED)
    const third = new WebSocket(url, { perMessageDeflate: false })
    cleanups.push(async () => third.terminate())
    await new Promise((resolve, reject) => third.once('open', resolve).once('error', reject))
  })

  it('a peer over its frame rate is paused, counted, and loses its link if it keeps going', async () => {
    const fed = await federation((name) =>
      name === ACME ? { federation: { framesPerSecond: 1, frameBurst: 5 } } : {},
    )
    const [a, b] = [fed.get(ACME), fed.get(GLOBEX)]
    const link = await b.services.links.ensureLink(ACME)
    const down = new Promise<void>((resolve) => {
      const off = b.services.links.on('link down', () => {
        off()
        resolve()
      })
    })
    for (let i = 0; i < 40; i++)
      link.send({ type: 'ack', room: '!AAAAAAAAAAAAAAAAAAAAAA:acme.localhost', upto_seq: 0 })
    await down
    expect(a.services.replication.stats.faults.get('rate_limited') ?? 0).toBeGreaterThan(0)
  })
})

describe('FLT-6: clock skew', () => {
  it('a peer ten minutes off cannot link (explicit reason); two minutes off it links', async () => {
    const fed = await federation((name) => (name === GLOBEX ? { clockOffsetMs: 10 * 60_000 } : {}))
    const err = await fed
      .get(GLOBEX)
      .services.links.ensureLink(ACME)
      .catch((e: Error) => e)
    expect(String(err)).toMatch(/clock|stale|time/i)
    await fed.stop(GLOBEX)
    await fed.start(GLOBEX, { clockOffsetMs: -2 * 60_000 })
    const link = await fed.get(GLOBEX).services.links.ensureLink(ACME)
    expect(link.peer).toBe(ACME)
  })
})

describe('redial backoff', () => {
  it('full jitter: below base * 2^attempt, never above the 15-minute cap', async () => {
    const { backoffDelay } = await import('../src/federation/link-manager.ts')
    const cap = 15 * 60_000
    for (const r of [0, 0.5, 0.999999]) {
      expect(backoffDelay(0, 1000, cap, () => r)).toBeLessThan(1000)
      expect(backoffDelay(5, 1000, cap, () => r)).toBeLessThan(32_000)
      for (const attempt of [20, 60, 1000])
        expect(backoffDelay(attempt, 1000, cap, () => r)).toBeLessThan(cap)
    }
    expect(backoffDelay(1000, 1000, cap, () => 0.999999)).toBeGreaterThan(cap - 1000)
  })

  it('any contact from the peer resets its backoff', async () => {
    const fed = await federation()
    const a = fed.get(ACME)
    await fed.stop(GLOBEX)
    await a.services.links.ensureLink(GLOBEX).catch(() => {})
    await waitUntil(() => a.services.links.redialAttempts(GLOBEX) >= 3, 10_000)
    // globex comes back and dials acme first: acme's redial state for it is gone.
    const b = await fed.start(GLOBEX)
    await b.services.links.ensureLink(ACME)
    await waitUntil(() => a.services.links.linkTo(GLOBEX) !== null, 10_000)
    expect(a.services.links.redialAttempts(GLOBEX)).toBe(0)
  })
})
