/** Boundary middleware: schema validation, bearer authentication, client address. */
import { createMiddleware } from 'hono/factory'
import { validator } from 'hono/validator'
import type { Context } from 'hono'
import type { z } from 'zod'
import { ParleyError } from '@parley/protocol'
import { validate } from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'

/** Validates a request part with a protocol schema; failures become P_BAD_REQUEST through onError. */
export function valid<T extends 'json' | 'query' | 'param', S extends z.ZodType>(target: T, schema: S) {
  return validator(target, (value) => {
    const result = validate(schema, value)
    if (!result.ok) throw new ParleyError('P_BAD_REQUEST', result.error.message)
    return result.value as z.infer<S>
  })
}

/** Requires `Authorization: Bearer <token>`; a token in the query string is refused outright (AUTH-1). */
export const requireAuth = createMiddleware<AppEnv>(async (c, next) => {
  if (c.req.query('access_token') !== undefined) {
    throw new ParleyError('P_BAD_REQUEST', 'send the token in the Authorization header, never in the URL')
  }
  const header = c.req.header('authorization')
  if (!header?.startsWith('Bearer ')) throw new ParleyError('P_UNAUTHORIZED', 'missing bearer token')
  const session = c.var.services.accounts.authenticate(header.slice(7).trim())
  // One budget per user across devices: history pages, room lists and directory scans cost the server.
  const wait = c.var.services.restLimiter.take(session.userId)
  if (wait > 0) throw new ParleyError('P_LIMIT_EXCEEDED', 'too many requests', wait)
  c.set('session', session)
  await next()
})

/** The client's address as the socket sees it (no proxy headers are trusted). */
export function clientAddress(c: Context<AppEnv>): string {
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown'
}
