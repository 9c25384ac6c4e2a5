/** createApp(services): the Hono app and the WebSocket gateway. It never listens (server.ts does). */
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { bodyLimit } from 'hono/body-limit'
import { cors } from 'hono/cors'
import { createNodeWebSocket } from '@hono/node-ws'
import { ParleyError } from '@parley/protocol'
import type { Services } from './services/index.ts'
import type { AppEnv } from './routes/env.ts'
import { auth } from './routes/auth.ts'
import { users } from './routes/users.ts'
import { rooms } from './routes/rooms.ts'
import { media } from './routes/media.ts'
import { keys } from './routes/keys.ts'
import { wellKnown } from './routes/well-known.ts'
import { webClient } from './routes/web-client.ts'
import { clientAddress } from './routes/middleware.ts'
import { Gateway } from './ws/gateway.ts'

export const VERSION = '0.1.0'

export function createApp(services: Services) {
  const { config } = services
  const app = new Hono<AppEnv>()
  const { upgradeWebSocket, injectWebSocket, wss } = createNodeWebSocket({ app })
  // @hono/node-ws passes no options to ws: without this, a client may send 100 MiB frames (WS-2).
  wss.options.maxPayload = config.limits.maxFrameBytes
  const gateway = new Gateway(services)
  const allowedOrigins = new Set(config.allowedOrigins)
  /** With `--web-client`, the page we serve is an allowed origin: its own host, and nothing else. */
  const servedHere = (origin: string, host: string | undefined): boolean => {
    if (config.webClientDir === undefined || host === undefined) return false
    return origin === `http://${host}` || origin === `https://${host}`
  }

  app.use(async (c, next) => {
    c.set('services', services)
    await next()
    // Writes outside the sequencer (sign-up, login, refresh, logout, profile, media rows) are answered
    // only once durable too: a power cut must not bring back a revoked token or forget a new one.
    if (c.req.method !== 'GET' && c.req.path.startsWith('/api/') && c.res.status < 500)
      await services.durable()
    c.header('X-Content-Type-Options', 'nosniff')
    if (c.req.path.startsWith('/api/')) c.header('Cache-Control', 'no-store')
  })

  app.onError((err, c) => {
    if (err instanceof ParleyError) {
      if (err.retryAfterMs !== undefined) c.header('Retry-After', String(Math.ceil(err.retryAfterMs / 1000)))
      return c.json(err.toBody(), err.status as 400)
    }
    if (err instanceof HTTPException) {
      const code = err.status === 413 ? 'P_TOO_LARGE' : err.status === 400 ? 'P_BAD_JSON' : 'P_BAD_REQUEST'
      return c.json({ errcode: code, error: err.message || 'bad request' }, err.status)
    }
    services.log.error({ err: String(err), stack: (err as Error).stack, path: c.req.path }, 'request failed')
    return c.json({ errcode: 'P_UNKNOWN', error: 'internal error' }, 500)
  })
  app.notFound((c) => c.json({ errcode: 'P_NOT_FOUND', error: 'no such endpoint' }, 404))

  // The desktop app loads from app:// and calls us cross-origin; browsers from anywhere else may not.
  app.use(
    '/api/*',
    cors({ origin: (origin) => (allowedOrigins.has(origin) ? origin : null), credentials: false }),
  )

  // WebSocket upgrade: a GET, so hono/csrf would skip it. Check the Origin ourselves (WS-1): browsers
  // always send one, and only exact allow-listed origins pass. Non-browser clients send none and still
  // need a token in their first frame.
  app.get(
    '/api/v1/ws',
    async (c, next) => {
      const origin = c.req.header('origin')
      if (origin !== undefined && !allowedOrigins.has(origin) && !servedHere(origin, c.req.header('host'))) {
        return c.json({ errcode: 'P_FORBIDDEN', error: 'origin not allowed' }, 403)
      }
      if (c.req.query('access_token') !== undefined) {
        return c.json({ errcode: 'P_BAD_REQUEST', error: 'send the token in the first frame' }, 400)
      }
      if (!gateway.admits(clientAddress(c))) {
        return c.json({ errcode: 'P_LIMIT_EXCEEDED', error: 'too many connections from this address' }, 429)
      }
      await next()
    },
    upgradeWebSocket((c) => gateway.handlers(clientAddress(c))),
  )

  const requestLimit = bodyLimit({
    maxSize: config.limits.maxRequestBytes,
    onError: () => {
      throw new ParleyError('P_TOO_LARGE', 'request body too large')
    },
  })
  // Media has its own, larger limit (routes/media.ts).
  app.use('/api/*', (c, next) => (c.req.path.startsWith('/api/v1/media') ? next() : requestLimit(c, next)))
  app.get('/api/v1/health', (c) => c.json({ ok: true, version: VERSION }))
  app.route('/.well-known', wellKnown)
  app.route('/api/v1', auth)
  app.route('/api/v1', users)
  app.route('/api/v1/rooms', rooms)
  app.route('/api/v1/media', media(config.limits.maxMediaBytes))
  app.route('/api/v1/keys', keys)
  if (config.webClientDir !== undefined) {
    const serve = webClient(config.webClientDir)
    app.get('*', (c, next) => (c.req.path.startsWith('/api/') ? next() : serve(c)))
  }

  return { app, gateway, injectWebSocket, wss }
}
