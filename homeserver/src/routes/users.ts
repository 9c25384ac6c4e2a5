import { Hono } from 'hono'
import { DirectoryQuery, ProfileBody, UserParam } from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'
import { requireAuth, valid } from './middleware.ts'

export const users = new Hono<AppEnv>()
  .use(requireAuth)
  .get('/users', valid('query', DirectoryQuery), (c) => {
    const q = c.req.valid('query')
    return c.json({ users: c.var.services.profiles.search(q.q, q.limit) })
  })
  .get('/profile/:user', valid('param', UserParam), (c) =>
    c.json(c.var.services.profiles.get(c.req.valid('param').user)),
  )
  .put('/profile', valid('json', ProfileBody), (c) => {
    c.var.services.profiles.setDisplayName(c.var.session.userId, c.req.valid('json').display_name)
    return c.json({})
  })
