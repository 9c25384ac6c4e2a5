/**
 * Outbound federation connections never reach private address ranges unless allowed (DESIGN.md
 * section 6, "Abuse controls"): a peer name is attacker-chosen in open mode, and discovery must not
 * become a way to probe the homeserver's own network (SSRF). Peers in the static `peers` map are the
 * admin's explicit choice and are exempt.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns'
import { BlockList, isIP } from 'node:net'

const PRIVATE = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  PRIVATE.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
] as const)
  PRIVATE.addSubnet(net, prefix, 'ipv6')

/** True for loopback, private, link-local, CGNAT, multicast and reserved addresses (v4, v6, v4-mapped). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 4) return PRIVATE.check(address, 'ipv4')
  if (family !== 6) return true // not an address at all: refuse
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return PRIVATE.check(mapped[1]!, 'ipv4')
  return PRIVATE.check(address, 'ipv6')
}

export class PrivateAddressError extends Error {
  readonly code = 'EPRIVATEADDRESS'
  constructor(host: string, address: string) {
    super(`${host} resolves to ${address}, a private address: refused (federation.allowPrivateAddresses)`)
  }
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void

/**
 * A `lookup` for `net.connect` / `http.request` that refuses private answers. The connection uses the
 * address checked here, so a second DNS answer cannot swap in another one (no rebinding window).
 */
export function publicOnlyLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, [])
    const list = addresses as LookupAddress[]
    const bad = list.find((a) => isPrivateAddress(a.address))
    if (bad) return callback(new PrivateAddressError(hostname, bad.address) as NodeJS.ErrnoException, [])
    if (options.all) return callback(null, list)
    callback(null, list[0]!.address, list[0]!.family)
  })
}

/** Refuses a URL whose host is a private IP literal (lookup is skipped for literals) . */
export function assertPublicUrl(url: string): void {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '')
  if (isIP(host) && isPrivateAddress(host)) throw new PrivateAddressError(host, host)
}

/** Resolves a host name and refuses private answers (for requests that cannot take a `lookup`). */
export async function assertPublicHost(url: string): Promise<void> {
  assertPublicUrl(url)
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '')
  if (isIP(host)) return
  await new Promise<void>((resolve, reject) =>
    publicOnlyLookup(host, { all: true }, (err) => (err ? reject(err) : resolve())),
  )
}
