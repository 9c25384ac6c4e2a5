import { describe, expect, it, vi } from 'vitest'
import { ApiError, NetworkError, NoSessionError, ProtocolError } from './errors.ts'
import { HttpApi } from './http.ts'
import { MemoryStore } from './store.ts'
import {
  ALICE,
  BASE_URL,
  BOB,
  FakeClock,
  ROOM,
  aliceSession,
  authBody,
  fakeFetch,
  makeEvent,
  type FakeAnswer,
  type SeenRequest,
} from './test-utils.ts'

const ROOM_SUMMARY = {
  room_id: ROOM,
  kind: 'group',
  name: 'General',
  topic: '',
  encrypted: false,
  membership: 'join',
  role: 'owner',
  members: 2,
  unread: 1,
  last_seq: 3,
  last_event: makeEvent(3),
}

async function setup(handler: (request: SeenRequest) => FakeAnswer | Promise<FakeAnswer>, signedIn = true) {
  const clock = new FakeClock()
  const store = new MemoryStore()
  if (signedIn) await store.setSession(aliceSession(clock.now()))
  const server = fakeFetch(handler)
  const onSessionEnded = vi.fn()
  const api = new HttpApi({ baseUrl: BASE_URL + '/', store, fetch: server.fetch, clock, onSessionEnded })
  return { api, store, clock, server, onSessionEnded }
}

/** Answers with the tokens of `auth`: 401 for a stale token, else `ok`. */
function tokenGate(current: () => string, ok: (request: SeenRequest) => FakeAnswer) {
  return (request: SeenRequest): FakeAnswer => {
    if (request.headers.get('authorization') !== `Bearer ${current()}`) {
      return { status: 401, json: { errcode: 'P_UNKNOWN_TOKEN', error: 'unknown token' } }
    }
    return ok(request)
  }
}

describe('HttpApi', () => {
  it('calls the documented paths with encoded ids and validates the answers', async () => {
    const { api, server } = await setup((req) => {
      const path = req.url.pathname
      if (path === '/api/v1/rooms' && req.method === 'GET') return { json: { rooms: [ROOM_SUMMARY] } }
      if (path === '/api/v1/rooms' && req.method === 'POST') return { json: { room_id: ROOM } }
      if (path.endsWith('/members'))
        return { json: { members: [{ user_id: ALICE, membership: 'join', role: 'owner' }] } }
      if (path.endsWith('/messages'))
        return { json: { events: [makeEvent(3), makeEvent(2)], next_before: 2 } }
      if (path.startsWith('/api/v1/profile/')) return { json: { user_id: BOB, display_name: 'Bob' } }
      if (path === '/api/v1/users') return { json: { users: [{ user_id: BOB, display_name: 'Bob' }] } }
      if (path === `/api/v1/rooms/${encodeURIComponent(ROOM)}` && req.method === 'GET')
        return { json: ROOM_SUMMARY }
      return { status: 200, json: {} }
    })

    expect(await api.listRooms()).toEqual([ROOM_SUMMARY])
    expect(await api.getRoom(ROOM)).toEqual(ROOM_SUMMARY)
    expect(await api.createRoom({ kind: 'group', name: 'General', invite: [BOB] })).toBe(ROOM)
    expect(await api.members(ROOM)).toHaveLength(1)
    expect(await api.messages(ROOM, { before: 4, limit: 2 })).toMatchObject({ next_before: 2 })
    expect(await api.getProfile(BOB)).toEqual({ user_id: BOB, display_name: 'Bob' })
    expect(await api.searchUsers('bo', 5)).toEqual([{ user_id: BOB, display_name: 'Bob' }])
    await api.setProfile('Alice')
    await api.invite(ROOM, BOB)
    await api.join(ROOM)
    await api.leave(ROOM)
    await api.kick(ROOM, BOB, 'spam')
    await api.ban(ROOM, BOB)
    await api.unban(ROOM, BOB)
    await api.updateSettings(ROOM, { topic: 'news' })
    await api.setRole(ROOM, BOB, 'moderator')

    const room = encodeURIComponent(ROOM)
    expect(room).toBe('!AAAAAAAAAAAAAAAAAAAAAA%3Aacme.test') // '!' is legal in a path segment
    expect(server.requests.map((r) => `${r.method} ${r.url.pathname}${r.url.search}`)).toEqual([
      'GET /api/v1/rooms',
      `GET /api/v1/rooms/${room}`,
      'POST /api/v1/rooms',
      `GET /api/v1/rooms/${room}/members`,
      `GET /api/v1/rooms/${room}/messages?before=4&limit=2`,
      `GET /api/v1/profile/${encodeURIComponent(BOB)}`,
      'GET /api/v1/users?q=bo&limit=5',
      'PUT /api/v1/profile',
      `POST /api/v1/rooms/${room}/invite`,
      `POST /api/v1/rooms/${room}/join`,
      `POST /api/v1/rooms/${room}/leave`,
      `POST /api/v1/rooms/${room}/kick`,
      `POST /api/v1/rooms/${room}/ban`,
      `POST /api/v1/rooms/${room}/unban`,
      `PUT /api/v1/rooms/${room}/settings`,
      `PUT /api/v1/rooms/${room}/power`,
    ])
    const bodies = server.requests.map((r) => r.json)
    expect(bodies[2]).toEqual({ kind: 'group', name: 'General', invite: [BOB] })
    expect(bodies[7]).toEqual({ display_name: 'Alice' })
    expect(bodies[8]).toEqual({ user_id: BOB })
    expect(bodies[11]).toEqual({ user_id: BOB, reason: 'spam' })
    expect(bodies[14]).toEqual({ topic: 'news' })
    expect(bodies[15]).toEqual({ user_id: BOB, role: 'moderator' })
    for (const request of server.requests) expect(request.headers.get('authorization')).toBe('Bearer tok1')
  })

  it('throws a typed ApiError carrying errcode, status and retry_after_ms', async () => {
    const { api } = await setup(() => ({
      status: 429,
      json: { errcode: 'P_LIMIT_EXCEEDED', error: 'slow down', retry_after_ms: 1500 },
    }))
    const error = await api.listRooms().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({
      errcode: 'P_LIMIT_EXCEEDED',
      status: 429,
      message: 'slow down',
      retryAfterMs: 1500,
    })
  })

  it('maps an error answer that is not JSON to P_UNKNOWN with its status', async () => {
    const { api } = await setup(() => ({
      status: 502,
      text: '<html>bad gateway</html>',
      headers: { 'retry-after': '3' },
    }))
    await expect(api.listRooms()).rejects.toMatchObject({
      errcode: 'P_UNKNOWN',
      status: 502,
      retryAfterMs: 3000,
    })
  })

  it('rejects an answer that violates its schema with ProtocolError', async () => {
    const { api } = await setup(() => ({ json: { rooms: [{ ...ROOM_SUMMARY, room_id: 'general' }] } }))
    await expect(api.listRooms()).rejects.toBeInstanceOf(ProtocolError)
  })

  it('wraps transport failures in NetworkError', async () => {
    const { api } = await setup(() => Promise.reject(new TypeError('fetch failed')))
    const error = await api.listRooms().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(NetworkError)
    expect((error as NetworkError).cause).toBeInstanceOf(TypeError)
  })

  it('throws NoSessionError for an authenticated call without a session', async () => {
    const { api, server } = await setup(() => ({ json: {} }), false)
    await expect(api.listRooms()).rejects.toBeInstanceOf(NoSessionError)
    expect(server.requests).toEqual([])
  })

  it('refreshes once on P_UNKNOWN_TOKEN, stores the new session and retries', async () => {
    let token = 'tok2'
    const ctx = await setup((req) => {
      if (req.url.pathname === '/api/v1/refresh') {
        expect(req.headers.get('authorization')).toBeNull()
        const n = Number((req.json as { refresh_token: string }).refresh_token.slice(3)) + 1
        return { json: authBody(`tok${n}`, `ref${n}`, 60) }
      }
      return tokenGate(
        () => token,
        () => ({ json: { rooms: [] } }),
      )(req)
    })
    expect(await ctx.api.listRooms()).toEqual([])
    expect(
      ctx.server.requests.map((r) => `${r.method} ${r.url.pathname} ${r.headers.get('authorization')}`),
    ).toEqual(['GET /api/v1/rooms Bearer tok1', 'POST /api/v1/refresh null', 'GET /api/v1/rooms Bearer tok2'])
    expect(await ctx.store.getSession()).toEqual({
      ...aliceSession(ctx.clock.now(), 'tok2', 'ref2'),
      expires_at: ctx.clock.now() + 60_000,
    })

    // Once expired by the clock, the token is refreshed before the call rather than after a 401.
    token = 'tok3'
    ctx.server.requests.length = 0
    ctx.clock.advance(60_000)
    expect(await ctx.api.listRooms()).toEqual([])
    expect(ctx.server.requests.map((r) => `${r.url.pathname} ${JSON.stringify(r.json)}`)).toEqual([
      '/api/v1/refresh {"refresh_token":"ref2"}',
      '/api/v1/rooms undefined',
    ])
  })

  it('shares one refresh between concurrent calls (refresh tokens are single use)', async () => {
    const ctx = await setup((req) => {
      if (req.url.pathname === '/api/v1/refresh') return { json: authBody('tok2', 'ref2') }
      return tokenGate(
        () => 'tok2',
        () => ({ json: { rooms: [] } }),
      )(req)
    })
    await Promise.all([ctx.api.listRooms(), ctx.api.listRooms(), ctx.api.members(ROOM).catch(() => [])])
    expect(ctx.server.requests.filter((r) => r.url.pathname === '/api/v1/refresh')).toHaveLength(1)
    // A caller holding an already-replaced token gets the stored session without a request.
    expect(await ctx.api.refresh('tok1')).toMatchObject({ access_token: 'tok2' })
    expect(ctx.server.requests.filter((r) => r.url.pathname === '/api/v1/refresh')).toHaveLength(1)
  })

  it('reports the end of the session when the refresh token is refused', async () => {
    const ctx = await setup((req) =>
      req.url.pathname === '/api/v1/refresh'
        ? { status: 401, json: { errcode: 'P_UNKNOWN_TOKEN', error: 'refresh token reused' } }
        : { status: 401, json: { errcode: 'P_UNKNOWN_TOKEN', error: 'unknown token' } },
    )
    await expect(ctx.api.listRooms()).rejects.toMatchObject({ errcode: 'P_UNKNOWN_TOKEN' })
    expect(ctx.onSessionEnded).toHaveBeenCalledTimes(1)
    expect(ctx.onSessionEnded.mock.calls[0]![0]).toMatchObject({ message: 'refresh token reused' })
    expect(ctx.server.requests).toHaveLength(2) // no retry without a new token
  })

  it('does not refresh on other 401 errors', async () => {
    const ctx = await setup(() => ({ status: 401, json: { errcode: 'P_UNAUTHORIZED', error: 'no' } }))
    await expect(ctx.api.listRooms()).rejects.toMatchObject({ errcode: 'P_UNAUTHORIZED' })
    expect(ctx.server.requests).toHaveLength(1)
  })

  it('register() and login() store the session, clearing data of another user first', async () => {
    const ctx = await setup((req) => ({
      json: req.url.pathname === '/api/v1/register' ? authBody('a', 'b') : {},
    }))
    await ctx.store.setCursor(42)
    await ctx.store.setItem('draft', 'hello')
    const session = await ctx.api.register('alice', 'correct horse')
    expect(session).toMatchObject({ user_id: ALICE, access_token: 'a', base_url: BASE_URL })
    expect(ctx.server.requests[0]!.json).toEqual({ username: 'alice', password: 'correct horse' })
    expect(await ctx.store.getCursor()).toBe(42) // same user: kept
    expect(await ctx.store.getItem('draft')).toBe('hello')

    const other = await setup(() => ({ json: { ...authBody('c', 'd'), user_id: BOB } }))
    await other.store.setCursor(42)
    await other.api.login('bob', 'password!')
    expect(await other.store.getCursor()).toBe(0)
    expect(await other.store.getSession()).toMatchObject({ user_id: BOB })
  })

  it('logout() revokes the device and clears the store, even if the token is already gone', async () => {
    const ctx = await setup(() => ({ status: 200, json: {} }))
    await ctx.store.setCursor(5)
    await ctx.api.logout()
    expect(ctx.server.requests.map((r) => `${r.method} ${r.url.pathname}`)).toEqual(['POST /api/v1/logout'])
    expect(await ctx.store.getSession()).toBeNull()
    expect(await ctx.store.getCursor()).toBe(0)

    const gone = await setup(() => ({ status: 401, json: { errcode: 'P_UNKNOWN_TOKEN', error: 'revoked' } }))
    await gone.api.logoutAll()
    expect(gone.server.requests.map((r) => r.url.pathname)).toEqual(['/api/v1/logout/all', '/api/v1/refresh'])
    expect(await gone.store.getSession()).toBeNull()
  })

  it('uploads raw bytes with their content type and downloads them back', async () => {
    const bytes = new Uint8Array([137, 80, 78, 71])
    const ctx = await setup((req) => {
      if (req.method === 'POST')
        return { json: { media_id: 'M'.repeat(22), size: 4, content_type: 'image/png' } }
      return { text: 'PNG!', headers: { 'content-type': 'image/png' } }
    })
    expect(await ctx.api.uploadMedia(ROOM, bytes, 'image/png', 'a b.png')).toEqual({
      media_id: 'M'.repeat(22),
      size: 4,
      content_type: 'image/png',
    })
    const upload = ctx.server.requests[0]!
    expect(upload.url.pathname).toBe('/api/v1/media')
    expect(upload.url.searchParams.get('room')).toBe(ROOM)
    expect(upload.url.searchParams.get('filename')).toBe('a b.png')
    expect(upload.headers.get('content-type')).toBe('image/png')
    expect(upload.body).toEqual(bytes)

    const download = await ctx.api.downloadMedia('M'.repeat(22))
    expect(ctx.server.requests[1]!.url.pathname).toBe(`/api/v1/media/${'M'.repeat(22)}`)
    expect(new TextDecoder().decode(download.bytes)).toBe('PNG!')
    expect(download.contentType).toBe('image/png')
  })

  it("downloads media of another server through ours, and an attachment from its sender's server", async () => {
    const media = 'M'.repeat(22)
    const actual = '24501919c367725c2a5d4811c95045b78bb0a3c4529f9bd7381c800152792afe' // sha256("PNG!")
    const ctx = await setup(() => ({
      text: 'PNG!',
      headers: {
        'content-type': 'image/png',
        'content-length': '4',
        'content-disposition': "inline; filename=_mega.png; filename*=UTF-8''%CE%A9mega.png",
      },
    }))
    const got = await ctx.api.downloadRemoteMedia('globex.example', media, { sha256: actual })
    expect(ctx.server.requests[0]!.url.pathname).toBe(`/api/v1/media/globex.example/${media}`)
    expect(new TextDecoder().decode(got.bytes)).toBe('PNG!')
    expect(got).toMatchObject({ contentType: 'image/png', filename: 'Ωmega.png' })

    const attachment = { media_id: media, name: 'x.png', mime: 'image/png', size: 4, sha256: actual }
    await ctx.api.downloadAttachment(attachment, '@gus:globex.example')
    expect(ctx.server.requests[1]!.url.pathname).toBe(`/api/v1/media/globex.example/${media}`)

    await expect(ctx.api.downloadAttachment({ ...attachment, sha256: '0'.repeat(64) }, BOB)).rejects.toThrow(
      ProtocolError,
    )
    // Caller bugs throw before any request.
    const before = ctx.server.requests.length
    await expect(ctx.api.downloadRemoteMedia('not a server', media)).rejects.toThrow(TypeError)
    await expect(ctx.api.downloadRemoteMedia('globex.example', '../etc')).rejects.toThrow(TypeError)
    await expect(ctx.api.downloadRemoteMedia('globex.example', media, { sha256: 'ABC' })).rejects.toThrow(
      TypeError,
    )
    await expect(ctx.api.downloadAttachment(attachment, 'nobody')).rejects.toThrow(TypeError)
    expect(ctx.server.requests.length).toBe(before)
  })

  it('reads the file name when there is one, and maps errors to ApiError', async () => {
    const plain = await setup(() => ({ text: 'abcd', headers: { 'content-length': '4' } }))
    const got = await plain.api.downloadRemoteMedia('globex.example', 'M'.repeat(22))
    expect(got.bytes).toHaveLength(4)
    expect(got.filename).toBeUndefined()
    const down = await setup(() => ({
      status: 503,
      json: { errcode: 'P_UNAVAILABLE', error: 'globex.example cannot be reached right now' },
    }))
    await expect(down.api.downloadRemoteMedia('globex.example', 'M'.repeat(22))).rejects.toMatchObject({
      errcode: 'P_UNAVAILABLE',
      status: 503,
    })
  })

  it('keeps a path prefix of the base URL', async () => {
    const server = fakeFetch(() => ({ json: { events: [] } }))
    const store = new MemoryStore()
    await store.setSession(aliceSession(Date.now()))
    const api = new HttpApi({ baseUrl: 'https://example.test/parley/', store, fetch: server.fetch })
    await api.messages(ROOM)
    expect(server.requests[0]!.url.href).toBe(
      `https://example.test/parley/api/v1/rooms/${encodeURIComponent(ROOM)}/messages`,
    )
  })
})
