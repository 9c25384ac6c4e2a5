import { afterEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../src/clock.ts'
import { connect, groupWith, http, register, startTestServer, type TestServer } from './helpers.ts'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()))
})

describe('housekeeping and ephemeral limits', () => {
  it('purges devices whose refresh token expired, and only those', async () => {
    const clock = new ManualClock()
    const hs = await startTestServer({ refreshTokenTtlMs: 60_000 }, { clock })
    servers.push(hs)
    const old = await register(hs)
    clock.advance(30_000)
    const fresh = await register(hs)
    clock.advance(31_000)
    expect(hs.services.accounts.purgeExpired()).toBe(1)
    expect(hs.services.repos.devices.get(old.device_id)).toBeUndefined()
    expect(hs.services.repos.devices.get(fresh.device_id)).toBeDefined()
    expect((await http(hs, 'POST', '/api/v1/refresh', { refresh_token: old.refresh_token })).status).toBe(401)
  })

  it('refuses typing toggled faster than a person types, without relaying it', async () => {
    const hs = await startTestServer()
    servers.push(hs)
    const [a, b] = await Promise.all([register(hs), register(hs)])
    const room = await groupWith(hs, a, [b])
    const sa = await connect(hs, a)
    const sb = await connect(hs, b)
    for (let i = 0; i < 30; i++) sa.send({ type: 'typing', room, typing: i % 2 === 0 })
    const refused = await sa.next((f) => f.type === 'error' && f.errcode === 'P_LIMIT_EXCEEDED')
    expect(refused.retry_after_ms).toBeGreaterThan(0)
    // A ping round trip on the receiver after the burst: only the allowed announcements got through.
    sa.send({ type: 'ping', id: 'done' })
    await sa.next((f) => f.type === 'pong')
    sb.send({ type: 'ping', id: 'b' })
    await sb.next((f) => f.type === 'pong')
    expect(sb.frames.filter((f) => f.type === 'typing').length).toBeLessThanOrEqual(10)
    sa.close()
    sb.close()
  })
})

describe('per-user REST budget', () => {
  it('answers 429 with Retry-After once a user spends the budget, across devices, and not for others', async () => {
    const hs = await startTestServer({ limits: { restBurst: 5, restRequestsPerSecond: 0.1 } })
    servers.push(hs)
    const [a, b] = await Promise.all([register(hs), register(hs)])
    for (let i = 0; i < 5; i++)
      expect((await http(hs, 'GET', '/api/v1/rooms', undefined, a.access_token)).status).toBe(200)
    const over = await http(hs, 'GET', '/api/v1/rooms', undefined, a.access_token)
    expect(over.status).toBe(429)
    expect(over.body).toMatchObject({ errcode: 'P_LIMIT_EXCEEDED' })
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0)
    expect((await http(hs, 'GET', '/api/v1/rooms', undefined, b.access_token)).status).toBe(200)
  })
})
