import { describe, expect, it } from 'vitest'
import type { ClientEvent } from '@parley/protocol/schema'
import { foldTimeline } from './timeline.ts'

const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
let seq = 0
const ev = (
  type: string,
  sender: string,
  content: Record<string, unknown>,
  id = `$${String(++seq).padStart(43, 'a')}`,
): ClientEvent => ({
  event_id: id,
  room: ROOM,
  seq,
  stream_pos: seq,
  type,
  sender,
  origin_ts: seq,
  content,
})

describe('foldTimeline', () => {
  it('applies edits by the author only, deletions, reactions by key, and replies', () => {
    const alice = '@alice:acme.example'
    const bob = '@bob:globex.example'
    const m1 = ev('m.message', alice, { body: 'first' })
    const m2 = ev('m.message', bob, { body: 'reply', reply_to: m1.event_id })
    const events = [
      m1,
      m2,
      ev('m.edit', alice, { target: m1.event_id, body: 'first, fixed' }),
      ev('m.edit', bob, { target: m1.event_id, body: 'hijacked' }), // not the author: ignored
      ev('m.reaction', bob, { target: m1.event_id, key: '👍' }),
      ev('m.reaction', alice, { target: m1.event_id, key: '👍' }),
    ]
    const taken = ev('m.reaction', bob, { target: m1.event_id, key: '🎉' })
    events.push(
      taken,
      ev('m.redaction', bob, { target: taken.event_id }),
      ev('m.redaction', bob, { target: m2.event_id }),
    )
    const items = foldTimeline(events, alice)
    const views = items.flatMap((i) => (i.kind === 'message' ? [i.view] : []))
    expect(views).toHaveLength(2)
    expect(views[0]).toMatchObject({ body: 'first, fixed', edited: true, deleted: false })
    expect(views[0]!.reactions).toEqual([{ key: '👍', senders: [bob, alice], mine: events[5]!.event_id }])
    expect(views[1]).toMatchObject({ deleted: true, body: '', replyTo: m1 })
  })
})
