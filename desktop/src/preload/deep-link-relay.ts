/**
 * Preload (sandboxed renderer, isolated world). Relays `parley://` links from main to the page's
 * `onDeepLink` listeners. Main only announces links; this pulls them (an invoke that drains main's
 * inbox) when some listener exists: when the first listener subscribes, and on each announcement while
 * any is subscribed. Links taken while every listener has just unsubscribed wait here for the next one.
 * Plain module (the Electron calls are passed in) so it can be tested without Electron.
 */
import { toDeepLink, type DeepLink } from '../shared/bridge-values.ts'

export interface DeepLinkTransport {
  /** Calls `announced` on each main -> renderer deep-link event. */
  onAnnounce(announced: () => void): void
  /** Takes the waiting links from main (its result is not trusted). */
  take(): Promise<unknown>
  /** Where a throwing listener's error goes; by default it is rethrown in a microtask (uncaught). */
  reportError?(error: unknown): void
}

export type DeepLinkListener = (link: DeepLink) => void

/** Links kept for a listener that has not subscribed yet, at most (the newest). */
const MAX_HELD = 16

export function createDeepLinkRelay(
  transport: DeepLinkTransport,
): (listener: DeepLinkListener) => () => void {
  const listeners = new Set<DeepLinkListener>()
  const held: DeepLink[] = []
  const reportError =
    transport.reportError ??
    ((error: unknown) =>
      queueMicrotask(() => {
        throw error
      }))

  function deliver(link: DeepLink): void {
    if (listeners.size === 0) {
      held.push(link)
      if (held.length > MAX_HELD) held.shift()
      return
    }
    for (const listener of [...listeners]) {
      try {
        // A fresh plain object per listener: nothing one listener does reaches another.
        listener({ kind: link.kind, room: link.room })
      } catch (error) {
        // One failing listener must not cost the others their link.
        reportError(error)
      }
    }
  }

  function pull(): void {
    if (listeners.size === 0) return // leave them in main's inbox
    transport.take().then(
      (links) => {
        if (!Array.isArray(links)) return
        for (const value of links) {
          const link = toDeepLink(value)
          if (link) deliver(link)
        }
      },
      () => {
        // Refused or failed: the links stay in main, and the next announcement or subscription retries.
      },
    )
  }

  transport.onAnnounce(pull)

  return (listener) => {
    if (typeof listener !== 'function') throw new TypeError('onDeepLink needs a function')
    listeners.add(listener)
    for (const link of held.splice(0)) deliver(link)
    pull()
    return () => {
      listeners.delete(listener)
    }
  }
}
