import { Hono } from 'hono'
import { LoginBody, RefreshBody, RegisterBody } from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'
import { clientAddress, requireAuth, valid } from './middleware.ts'

export const auth = new Hono<AppEnv>()
  .post('/register', valid('json', RegisterBody), async (c) => {
    const b = c.req.valid('json')
    return c.json(
      await c.var.services.accounts.register(b.username, b.password, b.device_name ?? '', clientAddress(c)),
      201,
    )
  })
  .post('/login', valid('json', LoginBody), async (c) => {
    const b = c.req.valid('json')
    return c.json(
      await c.var.services.accounts.login(b.username, b.password, b.device_name ?? '', clientAddress(c)),
    )
  })
  .post('/refresh', valid('json', RefreshBody), (c) =>
    c.json(c.var.services.accounts.refresh(c.req.valid('json').refresh_token)),
  )
  .post('/logout', requireAuth, (c) => {
    c.var.services.accounts.logout(c.var.session)
    return c.json({})
  })
  .post('/logout/all', requireAuth, (c) => {
    c.var.services.accounts.logoutAll(c.var.session.userId)
    return c.json({})
  })
