/**
 * Fetches a peer's key document over HTTP(S): `GET <base>/.well-known/parley/server`, where the base
 * URL comes from the static peer map (`peers`, `--peer NAME=URL`) or else is `https://<server name>`
 * (DESIGN.md section 6). Bounded in time and size; redirects are refused. Returns parsed JSON,
 * unverified: `PeerKeys` verifies it.
 */
import { assertPublicHost } from './address-guard.ts'
import type { KeyFetcher } from './peer-keys.ts'

export interface HttpKeyFetcherOptions {
  /** Whole request deadline. Default 10 s. */
  readonly timeoutMs?: number
  /** Largest document accepted. Default 64 KiB. */
  readonly maxBytes?: number
  /** Fetch from private addresses for servers outside the static map (`federation.allowPrivateAddresses`). */
  readonly allowPrivateAddresses?: boolean
}

/** The well-known path of the key document. */
export const KEY_DOCUMENT_PATH = '/.well-known/parley/server'

/** Where a peer's key document is fetched from. */
export function keyDocumentUrl(peers: Readonly<Record<string, string>>, server: string): string {
  const base = peers[server] ?? `https://${server}`
  return base.replace(/\/+$/, '') + KEY_DOCUMENT_PATH
}

export function httpKeyFetcher(
  peers: Readonly<Record<string, string>>,
  options: HttpKeyFetcherOptions = {},
): KeyFetcher {
  const timeoutMs = options.timeoutMs ?? 10_000
  const maxBytes = options.maxBytes ?? 64 * 1024
  return async (server) => {
    const url = keyDocumentUrl(peers, server)
    // fetch() takes no lookup hook: check the answer first (the document is verified by signature, so
    // a rebinding in between can at worst point one GET of this path somewhere it cannot read back).
    if (!options.allowPrivateAddresses && !Object.hasOwn(peers, server)) await assertPublicHost(url)
    const res = await fetch(url, {
      headers: { accept: 'application/json' },
      redirect: 'error',
      signal: AbortSignal.timeout(timeoutMs),
    })
    if (!res.ok || !res.body) {
      await res.body?.cancel()
      throw new Error(`HTTP ${res.status}`)
    }
    const declared = Number(res.headers.get('content-length') ?? 0)
    if (declared > maxBytes) {
      await res.body.cancel()
      throw new Error(`document larger than ${maxBytes} bytes`)
    }
    const chunks: Uint8Array[] = []
    let size = 0
    const reader = res.body.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.length
      if (size > maxBytes) {
        await reader.cancel()
        throw new Error(`document larger than ${maxBytes} bytes`)
      }
      chunks.push(value)
    }
    // Throws on malformed UTF-8 or JSON; the caller turns any throw into a fetch failure.
    const text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
    return JSON.parse(text) as unknown
  }
}
