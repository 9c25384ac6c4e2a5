/**
 * Simultaneous dial (DESIGN.md section 6): when two servers dial each other at once there are two
 * authenticated links between them; both sides keep the one **opened (dialled) by the server whose
 * name is lexicographically smaller** and close the other. Names are lowercase ASCII DNS names, so
 * comparing UTF-16 code units is the same as comparing bytes. Both sides compute the same answer
 * from the two names alone, without talking.
 */
import { isServerName } from '../ids.ts'

function assertPair(a: string, b: string): void {
  if (typeof a !== 'string' || !isServerName(a)) throw new TypeError(`invalid server name: ${String(a)}`)
  if (typeof b !== 'string' || !isServerName(b)) throw new TypeError(`invalid server name: ${String(b)}`)
  if (a === b) throw new TypeError('a server does not link to itself')
}

/** The server whose dialled link survives a simultaneous dial between `a` and `b`: the smaller name. */
export function survivingDialer(a: string, b: string): string {
  assertPair(a, b)
  return a < b ? a : b
}

/**
 * Seen from `self`, which of its two links with `peer` survives a simultaneous dial: `outbound` (the
 * one `self` dialled, where it is the initiator C) if `self` sorts first, else `inbound` (the one
 * `peer` dialled). The two servers always pick the same socket.
 */
export function simultaneousDialKeeps(self: string, peer: string): 'outbound' | 'inbound' {
  return survivingDialer(self, peer) === self ? 'outbound' : 'inbound'
}
