import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { z } from 'zod'
import { ParleyError } from '@parley/protocol'
import { MediaUploadQuery } from '@parley/protocol/schema'
import type { AppEnv } from './env.ts'
import { requireAuth, valid } from './middleware.ts'

const MediaParam = z.object({ id: z.string().max(64) })

/** Media routes; the upload size limit comes from configuration. */
export function media(maxBytes: number) {
  return new Hono<AppEnv>()
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
    .get('/:id', valid('param', MediaParam), async (c) => {
      const { row, bytes } = await c.var.services.media.download(
        c.var.session.userId,
        c.req.valid('param').id,
      )
      // Served as an opaque download in a sandbox: never rendered as a page of our origin (AC-5).
      return c.body(new Uint8Array(bytes), 200, {
        'Content-Type': row.content_type,
        'Content-Length': String(row.size),
        'Content-Disposition': `attachment; filename*=UTF-8''${encodeURIComponent(row.filename)}`,
        'X-Content-Type-Options': 'nosniff',
        'Content-Security-Policy': "sandbox; default-src 'none'",
        'Cache-Control': 'private, max-age=31536000, immutable',
      })
    })
}
