import { Hono } from 'hono'
import { DirectoryQuery, PresenceQuery, ProfileBody, UserParam } from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'
import { requireAuth, valid } from './middleware.ts'

// Mounted at /api/v1 beside other areas: authenticate per route, not with a catch-all `use`, which
// would run for every path under /api/v1 (a second token check on each rooms request).
export const users = new Hono<AppEnv>()
  .get('/users', requireAuth, valid('query', DirectoryQuery), (c) => {
    const q = c.req.valid('query')
    return c.json({ users: c.var.services.profiles.search(q.q, q.limit) })
  })
  .get('/profile/:user', requireAuth, valid('param', UserParam), (c) =>
    c.json(c.var.services.profiles.get(c.req.valid('param').user)),
  )
  .get('/presence', requireAuth, valid('query', PresenceQuery), (c) =>
    c.json({
      presence: c.var.services.ephemeral.presenceFor(c.var.session.userId, c.req.valid('query').users),
    }),
  )
  .put('/profile', requireAuth, valid('json', ProfileBody), (c) => {
    c.var.services.profiles.setDisplayName(c.var.session.userId, c.req.valid('json').display_name)
    return c.json({})
  })
