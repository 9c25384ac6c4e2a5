/**
 * `--web-client DIR`: static files from one directory only, a strict CSP, client routes answered
 * with index.html, no way out of the directory; the page's own origin may open the WebSocket (and
 * only with a web client configured).
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { rawRequest, startTestServer, type TestServer } from './helpers.ts'

let dir: string
let server: TestServer
let plain: TestServer

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parley-web-'))
  await mkdir(join(dir, 'web', 'assets'), { recursive: true })
  await writeFile(join(dir, 'web', 'index.html'), '<!doctype html><title>Parley</title>')
  await writeFile(join(dir, 'web', 'assets', 'app-1.js'), 'console.log(1)')
  await writeFile(join(dir, 'secret.txt'), 'outside')
  await symlink(join(dir, 'secret.txt'), join(dir, 'web', 'link.txt'))
  server = await startTestServer({ webClientDir: join(dir, 'web') })
  plain = await startTestServer()
})
afterAll(async () => {
  await server.stop()
  await plain.stop()
  await rm(dir, { recursive: true, force: true })
})

describe('web client route', () => {
  it('serves index.html and assets with a strict CSP; client routes get index.html', async () => {
    const index = await fetch(server.url + '/')
    expect(index.status).toBe(200)
    expect(index.headers.get('content-type')).toContain('text/html')
    const csp = index.headers.get('content-security-policy')!
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'")
    expect(csp).not.toContain('unsafe-inline')
    // Attachments show from blob: URLs the client makes of bytes it downloaded (and checked) through the
    // API: images may come from there and from the client's own files, nothing else (no data:, no
    // remote images); everything else stays as strict.
    const directives = new Map(
      csp.split(';').map((d) => {
        const [name, ...values] = d.trim().split(/\s+/)
        return [name!, values] as const
      }),
    )
    expect(directives.get('img-src')).toEqual(["'self'", 'blob:'])
    expect(directives.get('connect-src')).toEqual(["'self'"])
    expect(directives.get('default-src')).toEqual(["'none'"])
    expect(directives.has('media-src') || directives.has('frame-src') || directives.has('object-src')).toBe(
      false,
    )
    expect(await (await fetch(server.url + '/rooms/some-room')).text()).toContain('<title>Parley')
    const asset = await fetch(server.url + '/assets/app-1.js')
    expect(asset.headers.get('content-type')).toContain('text/javascript')
    expect(asset.headers.get('cache-control')).toContain('immutable')
    expect((await fetch(server.url + '/assets/missing.js')).status).toBe(404)
    // The API keeps its own answers.
    expect((await fetch(server.url + '/api/v1/nope')).status).toBe(404)
    expect((await fetch(server.url + '/api/v1/health')).status).toBe(200)
  })

  it('never serves a file outside the directory', async () => {
    for (const path of [
      '/../secret.txt',
      '/%2e%2e/secret.txt',
      '/assets/..%2f..%2fsecret.txt',
      '/link.txt',
      '/%00',
    ]) {
      const res = await rawRequest(server, 'GET', path)
      expect(res.body.toString(), path).not.toContain('outside')
      expect([400, 404, 200]).toContain(res.status)
    }
  })

  it("lets the page's own origin open the WebSocket, and no other", async () => {
    const host = new URL(server.url).host
    expect(await wsStatus(server, `http://${host}`)).toBe(101)
    expect(await wsStatus(server, 'http://evil.example')).toBe(403)
    // Without a web client, the server's own origin is not special.
    expect(await wsStatus(plain, `http://${new URL(plain.url).host}`)).toBe(403)
  })
})

/** 101 if a WebSocket with this Origin opens, else the HTTP status of the refusal. */
function wsStatus(s: TestServer, origin: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(s.url.replace(/^http/, 'ws') + '/api/v1/ws', { origin })
    ws.on('error', () => {})
    ws.once('open', () => {
      ws.terminate()
      resolve(101)
    })
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate()
      resolve(res.statusCode ?? 0)
    })
  })
}
