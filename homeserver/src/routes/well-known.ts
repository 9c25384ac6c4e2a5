/** `GET /.well-known/parley/server`: this server's self-signed key document (DESIGN.md section 6). */
import type { Context } from 'hono'
import { Hono } from 'hono'
import type { Config } from '../config.ts'
import type { AppEnv } from './env.ts'

export const wellKnown = new Hono<AppEnv>().get('/parley/server', (c) => {
  const { config, clock, serverKeys } = c.var.services
  return c.json(serverKeys.document(federationLink(config, c), clock.now()))
})

/**
 * The URL peers dial for the federation link: from `federation.publicUrl` when set, else from the
 * local address the request arrived on. Never from the Host header: a client could otherwise make us
 * sign a document pointing at any address.
 */
export function federationLink(config: Config, c: Context<AppEnv>): string {
  const publicUrl = config.federation.publicUrl
  if (publicUrl !== undefined) {
    const url = new URL(publicUrl)
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
    url.pathname = url.pathname.replace(/\/+$/, '') + '/api/v1/federation'
    url.search = ''
    url.hash = ''
    return url.toString()
  }
  const socket = c.env?.incoming?.socket
  let host = socket?.localAddress ?? config.host
  if (host.startsWith('::ffff:')) host = host.slice('::ffff:'.length)
  if (host.includes(':')) host = `[${host}]`
  const port = socket?.localPort
  return `ws://${host}${port ? `:${port}` : ''}/api/v1/federation`
}
