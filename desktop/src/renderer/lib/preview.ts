/**
 * The one-line preview of a room's last message in the room list. The part kept in the room list
 * (and its cache) holds no names: who sent it is resolved when rendering, so a display name set later
 * shows up. Shown as text only (the list never renders it as HTML).
 */
import { RoomSummary, type ClientEvent } from '@parley/protocol/schema'
import { z } from 'zod'
import { t } from './i18n.ts'

/** Longest preview line, in UTF-16 units (the ellipsis included). */
const MAX = 80

/** What the room list keeps of a room's last message. */
export const RoomPreview = z.object({
  sender: z.string().max(255),
  kind: z.enum(['text', 'attachment', 'deleted', 'encrypted', 'reaction']),
  text: z.string().max(MAX),
})
export type RoomPreview = z.infer<typeof RoomPreview>

/**
 * The preview of a message event: its first non-empty line as plain text, or the attachment's name.
 * In encrypted rooms the last event may be one not decrypted (yet), or a reaction (the server cannot
 * tell it from a message).
 */
export function previewOf(event: ClientEvent): RoomPreview {
  const content = event.content
  const sender = event.sender
  if (event.type === 'm.encrypted') return { sender, kind: 'encrypted', text: '' }
  if (event.type === 'm.reaction') return { sender, kind: 'reaction', text: clip(String(content.key ?? '')) }
  if (typeof content.body !== 'string' || content.body === '') return { sender, kind: 'deleted', text: '' }
  const attachment = content.attachment
  if (attachment && typeof attachment === 'object') {
    const name = (attachment as { name?: unknown }).name
    return { sender, kind: 'attachment', text: clip(typeof name === 'string' ? name : '') }
  }
  return { sender, kind: 'text', text: clip(plain(content.body)) }
}

/** The line the room list shows: "You: …" or "Bob: …", at most {@link MAX} characters. */
export function previewLine(
  preview: RoomPreview,
  me: string | null,
  nameOf: (user: string) => string,
): string {
  const who = preview.sender === me ? t('preview.you') : nameOf(preview.sender)
  const what =
    preview.kind === 'deleted'
      ? t('timeline.deleted')
      : preview.kind === 'attachment'
        ? t('preview.attachment', { name: preview.text })
        : preview.kind === 'encrypted'
          ? t('preview.encrypted')
          : preview.kind === 'reaction'
            ? t('preview.reaction', { key: preview.text })
            : preview.text
  return clip(`${who}: ${what}`)
}

function clip(text: string): string {
  return text.length > MAX ? `${text.slice(0, MAX - 1)}…` : text
}

/** The first non-empty line without the commonest markdown markers. */
function plain(body: string): string {
  const line = body.split('\n').find((l) => l.trim() !== '') ?? ''
  return line
    .replace(/^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d+\.\s+)/, '')
    .replace(/[*_~`]+/g, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
}

/**
 * A room as the list shows and caches it: the server's summary with its last message reduced to a
 * preview (validating 200 full events on every start was the largest part of rendering the cached
 * list: cold-start benchmark).
 */
export const ListedRoom = RoomSummary.omit({ last_event: true }).extend({ preview: RoomPreview.optional() })
export type ListedRoom = z.infer<typeof ListedRoom>

/** The list's view of a server summary. */
export function listedRoom({ last_event, ...room }: RoomSummary): ListedRoom {
  return last_event ? { ...room, preview: previewOf(last_event) } : room
}
