/**
 * The link driver over real sockets (docs/federation.md, "Link driver (homeserver)"): two or three
 * real homeservers, the real `/.well-known` key fetch (TOFU), the policy before any fetch, FED-4
 * (handshake replay), WS-3 (no deflate) and FLT-3's dead-link detection through the chaos proxy.
 * Synchronisation is by events and promises only.
 */
import type { IncomingMessage } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { verifySignature } from '@parley/protocol/signing'
import {
  LinkInitiator,
  MemoryReplayCache,
  REPLICATION_FRAMES,
  SealedChannel,
} from '@parley/protocol/federation'
import { httpKeyFetcher } from '../src/federation/key-fetcher.ts'
import type { LinkManager } from '../src/federation/link-manager.ts'
import type { AppFrame, Link, LinkError } from '../src/federation/link-socket.ts'
import { startTestServer, type TestServer } from './helpers.ts'
import { ChaosProxy } from './support/chaos-proxy.ts'
import { freePort } from './support/federation.ts'

const ACME = 'acme.localhost'
const GLOBEX = 'globex.localhost'
const INITECH = 'initech.localhost'
const PING_MS = 250
/** Small timings so dead links and redials happen in test time. */
const FAST = { pingMs: PING_MS, handshakeTimeoutMs: 1000, backoffBaseMs: 20, backoffCapMs: 200 }

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** Starts a homeserver whose key fetches (the real HTTP ones) are counted. */
async function server(name: string, port: number, peers: Record<string, string>, allow: string[] = []) {
  const real = httpKeyFetcher(peers)
  const fetches: string[] = []
  const s = await startTestServer(
    { serverName: name, port, peers, federation: { ...FAST, allow } },
    {
      keyFetcher: (peer) => {
        fetches.push(peer)
        return real(peer)
      },
    },
  )
  cleanups.push(() => s.stop())
  return { s, links: s.services.links, fetches }
}

/** Acme and globex, each with the other in its peer map. */
async function acmeAndGlobex() {
  const [portA, portB] = await Promise.all([freePort(), freePort()])
  const a = await server(ACME, portA, { [GLOBEX]: `http://127.0.0.1:${portB}` })
  const b = await server(GLOBEX, portB, { [ACME]: `http://127.0.0.1:${portA}` })
  return { a, b }
}

function nextUp(links: LinkManager): Promise<Link> {
  return new Promise((resolve) => {
    const off = links.on('link up', (link) => {
      off()
      resolve(link)
    })
  })
}

function nextDown(links: LinkManager): Promise<{ peer: string; why: LinkError }> {
  return new Promise((resolve) => {
    const off = links.on('link down', (peer, why) => {
      off()
      resolve({ peer, why })
    })
  })
}

/** The next application frame that is not replication's own (those start flowing on every link). */
function nextFrame(links: LinkManager): Promise<{ peer: string; frame: AppFrame }> {
  return new Promise((resolve) => {
    const off = links.onFrame((peer, frame) => {
      if (Object.hasOwn(REPLICATION_FRAMES, frame.type)) return
      off()
      resolve({ peer, frame })
    })
  })
}

const federationUrl = (s: TestServer) => s.url.replace(/^http/, 'ws') + '/api/v1/federation'

/** A bare ws client on a server's link endpoint: frames in order, and how it closed. */
async function rawClient(s: TestServer) {
  const ws = new WebSocket(federationUrl(s), { perMessageDeflate: false })
  const frames: (string | Uint8Array)[] = []
  const waiting: ((frame: string | Uint8Array) => void)[] = []
  ws.on('message', (data, isBinary) => {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    const frame = isBinary ? new Uint8Array(bytes) : bytes.toString()
    const waiter = waiting.shift()
    if (waiter) waiter(frame)
    else frames.push(frame)
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  )
  cleanups.push(() => {
    ws.terminate()
    return closed
  })
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
  const nextMessage = () =>
    new Promise<string | Uint8Array>((resolve) => {
      const queued = frames.shift()
      if (queued !== undefined) resolve(queued)
      else waiting.push(resolve)
    })
  return { ws, next: nextMessage, closed }
}

/** Runs a full handshake as `self` to `target` by hand; returns the C.HELLO it sent. */
async function handshakeByHand(self: TestServer, target: TestServer): Promise<string> {
  const initiator = new LinkInitiator({
    serverName: self.config.serverName,
    signer: self.services.signer,
    verify: verifySignature,
    lookupKey: () => target.services.signer.publicKey,
    isAllowed: () => true,
    replayCache: new MemoryReplayCache(),
    peer: target.config.serverName,
  })
  const raw = await rawClient(target)
  const hello = initiator.start()
  raw.ws.send(hello)
  const step = await initiator.receive(await raw.next())
  if (!step.ok || step.value.send === null || step.value.link === null) throw new Error('handshake failed')
  raw.ws.send(step.value.send)
  const { header } = SealedChannel.open(step.value.link.keys)
  raw.ws.send(header)
  // The target's stream header: it accepted AUTH.
  const theirs = await raw.next()
  expect(theirs).toBeInstanceOf(Uint8Array)
  expect(theirs.length).toBe(24)
  raw.ws.close()
  await raw.closed
  return hello
}

describe('federation link driver', () => {
  it('links two real servers, TOFU via /.well-known, and carries sealed frames both ways', async () => {
    const { a, b } = await acmeAndGlobex()
    const bUp = nextUp(b.links)
    const link = await a.links.ensureLink(GLOBEX)
    expect(link.role).toBe('initiator')
    const inbound = await bUp
    expect(inbound.role).toBe('responder')
    expect(inbound.peer).toBe(ACME)
    expect(Buffer.from(inbound.transcriptHash)).toEqual(Buffer.from(link.transcriptHash))
    // Each side fetched the other's document once, over HTTP, and pinned it.
    expect(a.fetches).toEqual([GLOBEX])
    expect(b.fetches).toEqual([ACME])
    expect(a.s.services.peerKeys.list().map((p) => p.serverName)).toEqual([GLOBEX])

    const atB = nextFrame(b.links)
    expect(a.links.send(GLOBEX, { type: 'test.hello', n: 1, nested: { ok: true } })).toBe(true)
    expect(await atB).toEqual({ peer: ACME, frame: { type: 'test.hello', n: 1, nested: { ok: true } } })
    const atA = nextFrame(a.links)
    expect(b.links.send(ACME, { type: 'test.reply', text: 'héllo' })).toBe(true)
    expect(await atA).toEqual({ peer: GLOBEX, frame: { type: 'test.reply', text: 'héllo' } })

    // One link per pair: asking again gives the same one.
    expect(await a.links.ensureLink(GLOBEX)).toBe(link)
    expect(b.links.linkTo(ACME)).toBe(inbound)

    // Shutdown is clean: the peer sees its link go down.
    const bDown = nextDown(b.links)
    await a.s.close()
    const { peer, why } = await bDown
    expect(peer).toBe(ACME)
    expect(why.reason).toBe('closed_by_peer')
  })

  it('keeps one link on a simultaneous dial', async () => {
    const { a, b } = await acmeAndGlobex()
    await Promise.all([a.links.ensureLink(GLOBEX), b.links.ensureLink(ACME)])
    // Either side may first install the link that loses; wait (on link events) until both agree.
    await new Promise<void>((resolve) => {
      const check = () => {
        const la = a.links.linkTo(GLOBEX)
        const lb = b.links.linkTo(ACME)
        if (!la?.open || !lb?.open) return
        if (!Buffer.from(la.transcriptHash).equals(lb.transcriptHash)) return
        offA()
        offB()
        resolve()
      }
      const offA = a.links.on('link up', check)
      const offB = b.links.on('link up', check)
      check()
    })
    // acme < globex: both keep the link acme dialled.
    expect(a.links.linkTo(GLOBEX)?.role).toBe('initiator')
    expect(b.links.linkTo(ACME)?.role).toBe('responder')
    const atB = nextFrame(b.links)
    a.links.send(GLOBEX, { type: 'test.after-tie-break' })
    expect((await atB).frame.type).toBe('test.after-tie-break')
  })

  it('refuses a server outside the allow-list before any key fetch', async () => {
    const [portB, portC] = await Promise.all([freePort(), freePort()])
    const b = await server(GLOBEX, portB, { [ACME]: 'http://127.0.0.1:1' })
    const c = await server(INITECH, portC, { [GLOBEX]: b.s.url })
    await expect(c.links.ensureLink(GLOBEX)).rejects.toThrow(/4001 not_allowed/)
    expect(b.fetches).toEqual([])
    expect(c.fetches).toEqual([])
    expect(b.links.linkedPeers).toEqual([])
    // And we never dial a server our own policy refuses.
    await expect(b.links.ensureLink('nobody.localhost')).rejects.toThrow(/not_allowed/)
  })

  it('FED-4: a recorded C.HELLO replayed to its target or to a third server is refused', async () => {
    const { a, b } = await acmeAndGlobex()
    const portC = await freePort()
    const c = await server(INITECH, portC, { [ACME]: a.s.url }, [ACME])
    const bUp = nextUp(b.links)
    const hello = await handshakeByHand(a.s, b.s)
    expect((await bUp).peer).toBe(ACME)

    const replayB = await rawClient(b.s)
    replayB.ws.send(hello)
    expect(await replayB.closed).toEqual({ code: 4001, reason: 'replayed_nonce' })

    const replayC = await rawClient(c.s)
    replayC.ws.send(hello)
    expect(await replayC.closed).toEqual({ code: 4001, reason: 'bad_to' })
    expect(c.fetches).toEqual([])

    // A fresh HELLO still succeeds.
    await handshakeByHand(a.s, b.s)
  })

  it('WS-3: never negotiates permessage-deflate, and refuses browser origins', async () => {
    const { b } = await acmeAndGlobex()
    const ws = new WebSocket(federationUrl(b.s), { perMessageDeflate: true })
    // 'upgrade' and 'open' come in the same tick: listen for both first.
    const upgraded = new Promise<IncomingMessage>((resolve) => ws.once('upgrade', resolve))
    const opened = new Promise((resolve) => ws.once('open', resolve))
    const response = await upgraded
    await opened
    expect(response.headers['sec-websocket-extensions']).toBeUndefined()
    expect(ws.extensions).toBe('')
    const closed = new Promise((resolve) => ws.once('close', resolve))
    ws.terminate()
    await closed

    const browser = new WebSocket(federationUrl(b.s), { headers: { origin: 'https://evil.example' } })
    const refused = await new Promise<IncomingMessage>((resolve) =>
      browser.once('unexpected-response', (req, res) => {
        req.destroy() // with this listener, ws leaves the request to us
        resolve(res)
      }),
    )
    expect(refused.statusCode).toBe(403)
  })

  it('FLT-3: a blackholed link goes down within two ping intervals and comes back', async () => {
    const [portA, portB] = await Promise.all([freePort(), freePort()])
    const b = await server(GLOBEX, portB, { [ACME]: `http://127.0.0.1:${portA}` })
    const proxy = await ChaosProxy.start(b.s.url)
    cleanups.push(() => proxy.close())
    const a = await server(ACME, portA, { [GLOBEX]: proxy.url })
    await a.links.ensureLink(GLOBEX)

    const down = nextDown(a.links)
    const cut = Date.now()
    proxy.setMode({ kind: 'blackhole' })
    const { peer, why } = await down
    expect(peer).toBe(GLOBEX)
    expect(why.reason).toBe('idle')
    // Two intervals from the last frame heard, which came at most one interval before the cut.
    expect(Date.now() - cut).toBeLessThan(3 * PING_MS + 500)

    const up = nextUp(a.links)
    proxy.setMode({ kind: 'pass' })
    const link = await up
    expect(link.peer).toBe(GLOBEX)
    const atB = nextFrame(b.links)
    a.links.send(GLOBEX, { type: 'test.healed' })
    expect((await atB).frame.type).toBe('test.healed')
  })
})
