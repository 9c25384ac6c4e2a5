/** Hono context shared by every route. */
import type { HttpBindings } from '@hono/node-server'
import type { Services, Session } from '../services/index.ts'

export interface AppEnv {
  Bindings: HttpBindings
  Variables: { services: Services; session: Session }
}
