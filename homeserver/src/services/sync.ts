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

  /**
   * One page: at most `limit` events and, past the first event, at most about `maxBytes` of frame
   * (so a page never trips the slow-reader limit on its own).
   */
  page(userId: string, since: number, limit: number, maxBytes: number): SyncPage {
    const head = this.sequencer.streamHead
    const from = Math.min(since, head)
    const upto = Math.min(head, from + WINDOW)
    const rows = this.repos.events.visibleSince(userId, from, upto, limit)
    let body = ''
    let count = 0
    for (const row of rows) {
      const json = clientEventJson(row)
      if (count > 0 && body.length + json.length > maxBytes) break
      body += (count > 0 ? ',' : '') + json
      count++
    }
    const next = count < rows.length || rows.length === limit ? rows[count - 1]!.stream_pos : upto
    const done = next >= head
    const frame = '{"type":"sync","events":[' + body + '],"next":' + next + ',"done":' + done + '}'
    return { frame, next, done, count }
  }
}
