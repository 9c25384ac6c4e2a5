/**
 * The client view of an event, serialised once and sent to every recipient. Content is stored as
 * canonical JSON text and spliced in as is, so fan-out never re-serialises it.
 */
import type { ClientEvent } from '@parley/protocol/schema'
import type { ClientEventRow } from '../db/repos/index.ts'

/** JSON text of a {@link ClientEvent}. Redacted events carry `{}` content and `redacted_by`. */
export function clientEventJson(row: ClientEventRow): string {
  let out =
    '{"event_id":' +
    JSON.stringify(row.event_id) +
    ',"room":' +
    JSON.stringify(row.room_id) +
    ',"seq":' +
    row.seq +
    ',"stream_pos":' +
    row.stream_pos +
    ',"type":' +
    JSON.stringify(row.type)
  if (row.state_key !== null) out += ',"state_key":' + JSON.stringify(row.state_key)
  out += ',"sender":' + JSON.stringify(row.sender) + ',"origin_ts":' + row.origin_ts
  out += ',"content":' + (row.content ?? '{}')
  if (row.redacted_by !== null) out += ',"redacted_by":' + JSON.stringify(row.redacted_by)
  return out + '}'
}

/** The same as an object (REST answers). */
export function clientEvent(row: ClientEventRow): ClientEvent {
  const event: ClientEvent = {
    event_id: row.event_id,
    room: row.room_id,
    seq: row.seq,
    stream_pos: row.stream_pos,
    type: row.type,
    sender: row.sender,
    origin_ts: row.origin_ts,
    content: row.content === null ? {} : (JSON.parse(row.content) as Record<string, unknown>),
  }
  if (row.state_key !== null) event.state_key = row.state_key
  if (row.redacted_by !== null) event.redacted_by = row.redacted_by
  return event
}

/** The live `event` frame for a committed event. */
export function eventFrameJson(row: ClientEventRow): string {
  return (
    '{"type":"event","room":' +
    JSON.stringify(row.room_id) +
    ',"seq":' +
    row.seq +
    ',"stream_pos":' +
    row.stream_pos +
    ',"event":' +
    clientEventJson(row) +
    '}'
  )
}
