/** The E2E key directory and key backup (`/api/v1/keys`; docs/protocol.md, "Keys"). */
import { Hono } from 'hono'
import {
  BackupSessionsQuery,
  KeysQueryBody,
  PutBackupBody,
  PutBackupSessionsBody,
  PutDeviceListBody,
  PutPrekeyBody,
  PutSecretStorageBody,
} from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'
import { requireAuth, valid } from './middleware.ts'

export const keys = new Hono<AppEnv>()
  .use(requireAuth)
  .put('/device-list', valid('json', PutDeviceListBody), async (c) => {
    await c.var.services.keys.publishDeviceList(c.var.session.userId, c.req.valid('json').device_list)
    return c.json({})
  })
  .put('/prekey', valid('json', PutPrekeyBody), async (c) => {
    await c.var.services.keys.putPrekey(c.var.session, c.req.valid('json').signed_prekey)
    return c.json({})
  })
  .post('/query', valid('json', KeysQueryBody), async (c) =>
    c.json(await c.var.services.keys.query(c.var.session.userId, c.req.valid('json').users)),
  )
  .put('/backup', valid('json', PutBackupBody), async (c) => {
    await c.var.services.keys.putBackup(c.var.session.userId, c.req.valid('json').metadata)
    return c.json({})
  })
  .get('/backup', (c) => c.json(c.var.services.keys.getBackup(c.var.session.userId)))
  .put('/backup/sessions', valid('json', PutBackupSessionsBody), async (c) => {
    const b = c.req.valid('json')
    await c.var.services.keys.putBackupSessions(c.var.session.userId, b.version, b.records)
    return c.json({})
  })
  .get('/backup/sessions', valid('query', BackupSessionsQuery), (c) =>
    c.json(c.var.services.keys.getBackupSessions(c.var.session.userId, c.req.valid('query').version)),
  )
  .put('/secret-storage', valid('json', PutSecretStorageBody), async (c) => {
    await c.var.services.keys.putSecretStorage(c.var.session.userId, c.req.valid('json').secret_storage)
    return c.json({})
  })
  .get('/secret-storage', (c) => c.json(c.var.services.keys.getSecretStorage(c.var.session.userId)))
