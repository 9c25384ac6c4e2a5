/** How a room is named on screen: its name, else (a DM) the other person, else its id. */
import type { RoomSummary } from '@parley/protocol/schema'
import { t } from './i18n.ts'

export function roomLabel(
  room: Pick<RoomSummary, 'name' | 'kind' | 'room_id' | 'dm_peer'> | undefined,
  id = '',
): string {
  if (!room) return id
  // A DM is named after the other person, whatever name it was given: any member may rename a DM,
  // and a DM named "@ceo:acme.example" must not pass for a DM with the CEO.
  if (room.kind === 'dm') return room.dm_peer ?? (room.name || t('rooms.dm'))
  return room.name || room.room_id
}
