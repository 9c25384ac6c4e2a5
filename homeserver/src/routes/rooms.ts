import { Hono } from 'hono'
import {
  CreateRoomBody,
  EnableEncryptionBody,
  MembershipBody,
  MessagesQuery,
  PowerBody,
  RoomParam,
  RoomSettingsBody,
  TargetUserBody,
} from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'
import { requireAuth, valid } from './middleware.ts'

const room = valid('param', RoomParam)
const target = valid('json', TargetUserBody)
// Join, leave and encryption take an optional body: one without JSON counts as empty.
const membershipBody = valid('json', MembershipBody)

export const rooms = new Hono<AppEnv>()
  .use(requireAuth)
  .post('/', valid('json', CreateRoomBody), async (c) =>
    c.json(await c.var.services.rooms.create(c.var.session.userId, c.req.valid('json')), 201),
  )
  .get('/', (c) => c.json({ rooms: c.var.services.rooms.list(c.var.session.userId) }))
  .get('/:room', room, (c) =>
    c.json(c.var.services.rooms.get(c.var.session.userId, c.req.valid('param').room)),
  )
  .get('/:room/members', room, (c) =>
    c.json({ members: c.var.services.rooms.members(c.var.session.userId, c.req.valid('param').room) }),
  )
  .get('/:room/membership', room, (c) =>
    c.json(c.var.services.rooms.membership(c.var.session.userId, c.req.valid('param').room)),
  )
  .get('/:room/messages', room, valid('query', MessagesQuery), (c) => {
    const q = c.req.valid('query')
    return c.json(
      c.var.services.rooms.history(c.var.session.userId, c.req.valid('param').room, q.before, q.limit),
    )
  })
  .post('/:room/invite', room, target, async (c) => {
    const b = c.req.valid('json')
    const e = await c.var.services.rooms.invite(
      c.var.session.userId,
      c.req.valid('param').room,
      b.user_id,
      b.reason,
      b.statement,
    )
    return c.json({ event_id: e.event_id })
  })
  .post('/:room/join', room, membershipBody, async (c) => {
    const { statement } = c.req.valid('json')
    const e = await c.var.services.rooms.join(c.var.session.userId, c.req.valid('param').room, statement)
    return c.json({ event_id: e.event_id })
  })
  .post('/:room/leave', room, membershipBody, async (c) => {
    const { statement } = c.req.valid('json')
    const e = await c.var.services.rooms.leave(c.var.session.userId, c.req.valid('param').room, statement)
    return c.json({ event_id: e.event_id })
  })
  .post('/:room/kick', room, target, async (c) => {
    const b = c.req.valid('json')
    const e = await c.var.services.rooms.kick(
      c.var.session.userId,
      c.req.valid('param').room,
      b.user_id,
      b.reason,
      b.statement,
    )
    return c.json({ event_id: e.event_id })
  })
  .post('/:room/ban', room, target, async (c) => {
    const b = c.req.valid('json')
    const e = await c.var.services.rooms.ban(
      c.var.session.userId,
      c.req.valid('param').room,
      b.user_id,
      b.reason,
      b.statement,
    )
    return c.json({ event_id: e.event_id })
  })
  .post('/:room/unban', room, target, async (c) => {
    const b = c.req.valid('json')
    const e = await c.var.services.rooms.unban(
      c.var.session.userId,
      c.req.valid('param').room,
      b.user_id,
      b.statement,
    )
    return c.json({ event_id: e.event_id })
  })
  .put('/:room/settings', room, valid('json', RoomSettingsBody), async (c) => {
    await c.var.services.rooms.settings(c.var.session.userId, c.req.valid('param').room, c.req.valid('json'))
    return c.json({})
  })
  // Irreversible: turning end-to-end encryption off again does not exist.
  .post('/:room/encryption', room, valid('json', EnableEncryptionBody), async (c) => {
    const e = await c.var.services.rooms.enableEncryption(
      c.var.session.userId,
      c.req.valid('param').room,
      c.req.valid('json').snapshot,
    )
    return c.json({ event_id: e.event_id })
  })
  .put('/:room/power', room, valid('json', PowerBody), async (c) => {
    const b = c.req.valid('json')
    const e = await c.var.services.rooms.setRole(
      c.var.session.userId,
      c.req.valid('param').room,
      b.user_id,
      b.role,
    )
    return c.json({ event_id: e.event_id })
  })
