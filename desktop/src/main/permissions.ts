/**
 * Permission requests of the app window: notifications (mentions and DMs) and nothing else; and
 * only from the app itself. Camera, microphone, geolocation, clipboard reads and the rest are denied.
 */
import { mayNavigate } from './navigation.ts'

const ALLOWED: ReadonlySet<string> = new Set(['notifications'])

export function permissionAllowed(permission: string, requestingUrl: string): boolean {
  return ALLOWED.has(permission) && mayNavigate(requestingUrl)
}
