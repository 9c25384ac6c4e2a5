/**
 * Catch-up from a stream cursor: every event the user may see with a stream position after `since`,
 * in order, in pages. Each page scans a bounded window of the server-wide stream, so a page costs
 * the same however long the user was away (DESIGN.md section 5).
 */
import type { Repos } from '../db/repos/index.ts'
import { clientEventJson } from './event-json.ts'
import type { Sequencer } from './sequencer.ts'

/** Stream positions scanned per page at most. */
const WINDOW = 20_000

export interface SyncPage {
  /** JSON text of the `sync` frame. */
  readonly frame: string
  readonly next: number
  readonly done: boolean
  readonly count: number
}

export class SyncService {
  constructor(
    private readonly repos: Repos,
    private readonly sequencer: Sequencer,
  ) {}

  page(userId: string, since: number, limit: number): SyncPage {
    const head = this.sequencer.streamHead
    const from = Math.min(since, head)
    const upto = Math.min(head, from + WINDOW)
    const rows = this.repos.events.visibleSince(userId, from, upto, limit)
    const next = rows.length === limit ? rows.at(-1)!.stream_pos : upto
    const done = next >= head
    let frame = '{"type":"sync","events":['
    for (let i = 0; i < rows.length; i++) frame += (i > 0 ? ',' : '') + clientEventJson(rows[i]!)
    frame += '],"next":' + next + ',"done":' + done + '}'
    return { frame, next, done, count: rows.length }
  }
}
