/**
 * Main process. `parley://` deep links: `parley://room/<room id>` opens a room, `parley://invite/<room
 * id>` shows an invitation. Anything else is ignored; ids are validated with the protocol's parsers.
 * Links wait in a {@link DeepLinkInbox} until the renderer takes them.
 */
import { RoomId } from '@parley/protocol/schema'
import type { DeepLink } from '../shared/bridge-values.ts'

export type { DeepLink }

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

/**
 * The deep link among command-line arguments: a second instance's (Windows and Linux pass the link
 * there), and our own `process.argv` when the OS launched the app for a link.
 */
export function deepLinkFromArgv(argv: readonly string[]): DeepLink | null {
  for (const arg of argv) {
    const link = arg.startsWith('parley://') ? parseDeepLink(arg) : null
    if (link) return link
  }
  return null
}

/**
 * Links the renderer has not taken yet. Main only announces new links (an argument-less event); the
 * renderer pulls them with an invoke, which drains the inbox atomically. So a link is never handed to a
 * page that is not listening: one that arrives at launch, before the window or the renderer's
 * subscription exists, or while the page reloads, stays here until a subscribed page asks; a pushed
 * payload or a did-finish-load delivery would be lost in each of those cases.
 */
export class DeepLinkInbox {
  readonly #links: DeepLink[] = []
  readonly #max: number

  /** Keeps at most `max` links (the newest): a flood of clicks must not grow main's memory. */
  constructor(max = 16) {
    this.#max = max
  }

  /** Queues `link`, unless it repeats the link queued last (a double click is one request). */
  push(link: DeepLink): void {
    const last = this.#links.at(-1)
    if (last && last.kind === link.kind && last.room === link.room) return
    this.#links.push({ kind: link.kind, room: link.room })
    if (this.#links.length > this.#max) this.#links.shift()
  }

  /** Every waiting link, oldest first; the inbox is empty afterwards. */
  take(): DeepLink[] {
    return this.#links.splice(0)
  }

  get size(): number {
    return this.#links.length
  }
}
