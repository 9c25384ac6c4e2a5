import { Hono, type Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { z } from 'zod'
import { ParleyError } from '@parley/protocol'
import { MediaPathParams, MediaUploadQuery } from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'
import { mediaHeaders } from './media-headers.ts'
import { requireAuth, valid } from './middleware.ts'
import type { StoredMedia } from '../services/media.ts'

const MediaParam = z.object({ id: z.string().max(64) })
/** Path parts are looked up, not parsed: anything malformed is media that does not exist (404). */
const RemoteParam = z.object({ server: z.string().max(255), media_id: z.string().max(64) })

/** One answer for every download: the bytes, as an opaque sandboxed file (AC-5). */
function serve(c: Context<AppEnv>, media: { row: StoredMedia; bytes: Buffer }): Response {
  return c.body(new Uint8Array(media.bytes), 200, {
    ...mediaHeaders(media.row),
    // Not even the browser's disk cache keeps a copy: an attachment would sit there in plaintext,
    // outside the app's encrypted cache (the app keeps recent media in memory instead).
    'Cache-Control': 'no-store',
  })
}

/** Media routes; the upload size limit comes from configuration. */
export function media(maxBytes: number) {
  return (
    new Hono<AppEnv>()
      .use(requireAuth)
      .post(
        '/',
        bodyLimit({
          maxSize: maxBytes,
          onError: () => {
            throw new ParleyError('P_TOO_LARGE', `uploads are limited to ${maxBytes} bytes`)
          },
        }),
        valid('query', MediaUploadQuery),
        async (c) => {
          const q = c.req.valid('query')
          const bytes = new Uint8Array(await c.req.arrayBuffer())
          const type = c.req.header('content-type') ?? 'application/octet-stream'
          const out = await c.var.services.media.upload(
            c.var.session.userId,
            q.room,
            bytes,
            type,
            q.filename ?? 'file',
          )
          return c.json(out, 201)
        },
      )
      .get('/:id', valid('param', MediaParam), async (c) =>
        serve(c, await c.var.services.media.download(c.var.session.userId, c.req.valid('param').id)),
      )
      // Media of any server, through ours (docs/federation.md, "Media"): ours is served from disk,
      // another server's from our copy, fetched over the link the first time.
      .get('/:server/:media_id', valid('param', RemoteParam), async (c) => {
        const parsed = MediaPathParams.safeParse(c.req.valid('param'))
        if (!parsed.success) throw new ParleyError('P_NOT_FOUND', 'media not found')
        const { server, media_id } = parsed.data
        return serve(c, await c.var.services.media.downloadFrom(c.var.session.userId, server, media_id))
      })
  )
}
