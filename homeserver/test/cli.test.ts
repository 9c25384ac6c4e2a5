import { execFile } from 'node:child_process'
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { http, startTestServer, tempDir, TestSocket, type TestServer } from './helpers.ts'

const run = promisify(execFile)
const BIN = fileURLToPath(new URL('../bin/parley-homeserver.mjs', import.meta.url))
let dataDir: string
const cli = (...args: string[]) =>
  run(process.execPath, [BIN, ...args, '--data-dir', dataDir, '--server-name', 'acme.localhost'], {
    env: { ...process.env, PARLEY_PASSWORD: 'cli password 1' },
  })

beforeAll(async () => {
  dataDir = await tempDir()
})
afterAll(() => rm(dataDir, { recursive: true, force: true }))

describe('admin CLI', () => {
  let hs: TestServer
  afterAll(() => hs?.close())

  it('create-user makes an account that can log in; the server key file is private', async () => {
    const out = await cli('create-user', 'root')
    expect(out.stdout).toContain('created @root:acme.localhost')
    // The CLI runs with default argon2 cost; the server in this test may use cheap settings.
    hs = await startTestServer({ dataDir })
    const login = await http(hs, 'POST', '/api/v1/login', { username: 'root', password: 'cli password 1' })
    expect(login.status).toBe(200)
    expect((await stat(join(dataDir, 'keys'))).mode & 0o777).toBe(0o700)
    const keyFiles = await readdir(join(dataDir, 'keys'))
    expect(keyFiles).toHaveLength(1)
    for (const f of keyFiles) expect((await stat(join(dataDir, 'keys', f))).mode & 0o777).toBe(0o600)
  })

  it('reset-password ends live sessions on the next heartbeat and changes the password', async () => {
    await hs.close()
    hs = await startTestServer({ dataDir, limits: { heartbeatMs: 50 } })
    const login = await http<{ access_token: string }>(hs, 'POST', '/api/v1/login', {
      username: 'root',
      password: 'cli password 1',
    })
    const sock = new TestSocket(hs.url)
    await sock.opened()
    sock.send({ type: 'auth', token: login.body.access_token })
    await sock.type('ready')
    await run(
      process.execPath,
      [BIN, 'reset-password', 'root', '--data-dir', dataDir, '--server-name', 'acme.localhost'],
      {
        env: { ...process.env, PARLEY_PASSWORD: 'new password 2' },
      },
    )
    expect((await sock.closed()).code).toBe(4001)
    expect(
      (await http(hs, 'POST', '/api/v1/login', { username: 'root', password: 'cli password 1' })).status,
    ).toBe(401)
    expect(
      (await http(hs, 'POST', '/api/v1/login', { username: 'root', password: 'new password 2' })).status,
    ).toBe(200)
  })

  it('deactivate stops logins; the name stays taken', async () => {
    await cli('deactivate', 'root')
    expect(
      (await http(hs, 'POST', '/api/v1/login', { username: 'root', password: 'new password 2' })).status,
    ).toBe(403)
    expect(
      (await http(hs, 'POST', '/api/v1/register', { username: 'root', password: 'whatever123' })).status,
    ).toBe(409)
  })

  it('prints usage and fails on an unknown command', async () => {
    await expect(cli('frobnicate')).rejects.toMatchObject({
      stderr: expect.stringContaining('unknown command'),
    })
  })
})
