/**
 * `parley://` deep links: `parley://room/<room id>` opens a room, `parley://invite/<room id>` shows an
 * invitation. Anything else is ignored; ids are validated with the protocol's parsers.
 */
import { RoomId } from '@parley/protocol/schema'

export type DeepLink = { readonly kind: 'room' | 'invite'; readonly room: string }

export function parseDeepLink(url: string): DeepLink | null {
  if (url.length > 512) return null
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return null
  }
  if (u.protocol !== 'parley:') return null
  const kind = u.host
  if (kind !== 'room' && kind !== 'invite') return null
  let room: string
  try {
    room = decodeURIComponent(u.pathname.replace(/^\//, ''))
  } catch {
    return null
  }
  if (u.search !== '' || u.hash !== '' || !RoomId.safeParse(room).success) return null
  return { kind, room }
}

/** The deep link among a second instance's command-line arguments (Windows and Linux pass it there). */
export function deepLinkFromArgv(argv: readonly string[]): DeepLink | null {
  for (const arg of argv) {
    const link = arg.startsWith('parley://') ? parseDeepLink(arg) : null
    if (link) return link
  }
  return null
}
