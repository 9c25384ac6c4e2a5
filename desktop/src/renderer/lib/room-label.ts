/** How a room is named on screen: its name, else (a DM) the other person, else its id. */
import type { RoomSummary } from '@parley/protocol/schema'
import { t } from './i18n.ts'

export function roomLabel(
  room: Pick<RoomSummary, 'name' | 'kind' | 'room_id' | 'dm_peer'> | undefined,
  id = '',
): string {
  if (!room) return id
  if (room.name) return room.name
  if (room.kind === 'dm') return room.dm_peer ?? t('rooms.dm')
  return room.room_id
}
