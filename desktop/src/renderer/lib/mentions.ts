/**
 * Mentions are explicit: the composer lists the `@user:server` ids written in a message in its
 * content's `mentions`, and a message notifies exactly the users listed there. Detection runs in the
 * client, so it works the same in encrypted rooms, where the server cannot read the body.
 */
import { UserId } from '@parley/protocol/schema'

/** Candidate ids: `@` + localpart + `:` + host labels (a port is not part of our server names). */
const CANDIDATE = /@[a-z0-9._=-]{1,64}:[A-Za-z0-9.-]{1,253}/g
const MAX_MENTIONS = 50

/** The valid user ids written in `body`, in order of first appearance, without repeats (at most 50). */
export function mentionsIn(body: string): string[] {
  const found: string[] = []
  for (const match of body.matchAll(CANDIDATE)) {
    // "ask @bob:globex.example." — the sentence's full stop is not part of the server name.
    const id = match[0].replace(/[.-]+$/, '')
    if (!found.includes(id) && UserId.safeParse(id).success) found.push(id)
    if (found.length === MAX_MENTIONS) break
  }
  return found
}

/** True when a message's content lists `me` among its mentions. */
export function mentionsUser(content: Readonly<Record<string, unknown>>, me: string | null): boolean {
  const listed = content.mentions
  return me !== null && Array.isArray(listed) && listed.includes(me)
}
