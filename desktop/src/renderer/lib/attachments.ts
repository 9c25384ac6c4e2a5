/**
 * Attachments in the renderer (renderer process, pure): reading one out of a message's content,
 * which files are shown inline (png, jpeg, gif and webp whose bytes say so, nothing else: never SVG
 * or HTML), the box an image preview reserves, and the `attachment` a finished upload becomes.
 */
import { ApiError, NetworkError, ProtocolError } from '@parley/protocol/client'
import { Attachment, type AttachmentEncryption } from '@parley/protocol/schema'
import { cleanText } from './display-text.ts'
import { formatSize, t } from './i18n.ts'

/** The only types previewed inline; the homeserver serves exactly these as `inline` too. */
export const PREVIEW_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'] as const
export type PreviewType = (typeof PREVIEW_TYPES)[number]

/** Parsed attachments by content object: a row re-rendering (a reaction) gets the same object back. */
const parsedAttachments = new WeakMap<object, Attachment | null>()

/** The attachment of a message's content, if it has a valid one (content is untrusted input). */
export function attachmentOf(content: Readonly<Record<string, unknown>>): Attachment | null {
  if (content.attachment === undefined) return null
  let found = parsedAttachments.get(content)
  if (found === undefined) {
    const parsed = Attachment.safeParse(content.attachment)
    found = parsed.success ? parsed.data : null
    parsedAttachments.set(content, found)
  }
  return found
}

/** Whether an attachment claims a type that is previewed inline (its bytes are checked too: {@link sniffImage}). */
export function isPreviewable(attachment: Pick<Attachment, 'mime'>): boolean {
  return (PREVIEW_TYPES as readonly string[]).includes(attachment.mime)
}

const startsWith = (bytes: Uint8Array, at: number, ascii: string) =>
  bytes.length >= at + ascii.length && [...ascii].every((c, i) => bytes[at + i] === c.charCodeAt(0))

/**
 * The image type the bytes are, by their signature, or null: a preview needs both the claimed type
 * and real image bytes, so a file that only says it is a PNG (an SVG, HTML) is never put in an <img>.
 */
export function sniffImage(bytes: Uint8Array): PreviewType | null {
  if (startsWith(bytes, 0, '\x89PNG\r\n\x1a\n')) return 'image/png'
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg'
  if (startsWith(bytes, 0, 'GIF87a') || startsWith(bytes, 0, 'GIF89a')) return 'image/gif'
  if (startsWith(bytes, 0, 'RIFF') && startsWith(bytes, 8, 'WEBP')) return 'image/webp'
  return null
}

/** The largest box an inline image takes, CSS px. */
export const PREVIEW_MAX = { width: 360, height: 280 } as const
/** The box of an image whose sender gave no size. */
const PREVIEW_DEFAULT = { width: 240, height: 180 } as const

/**
 * The box an image preview reserves before its bytes arrive: the attachment's width and height scaled
 * down (never up) to fit {@link PREVIEW_MAX}, at least 1 px each way. The row's height is thereby known
 * up front and does not change when the image loads (the virtualised list would jump).
 */
export function previewSize(attachment: Pick<Attachment, 'width' | 'height'>): {
  width: number
  height: number
} {
  const { width, height } = attachment
  if (width === undefined || height === undefined) return { ...PREVIEW_DEFAULT }
  const scale = Math.min(1, PREVIEW_MAX.width / width, PREVIEW_MAX.height / height)
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) }
}

const MIME = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/

/** The type to upload and announce a file as: the browser's, if it is a plain `type/subtype`. */
export function mimeOf(file: { readonly type: string }): string {
  const type = file.type.toLowerCase()
  return type.length <= 127 && MIME.test(type) ? type : 'application/octet-stream'
}

/** `text` cut to at most `max` UTF-16 units without splitting a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text
  const end = /[\ud800-\udbff]/.test(text[max - 1]!) ? max - 1 : max
  return text.slice(0, end)
}

/** The name a file is uploaded and announced under: at most 255 UTF-16 units, never empty. */
export function fileNameOf(file: { readonly name: string }): string {
  return cut(file.name, 255) || 'file'
}

/**
 * The `attachment` of a message for an uploaded file (the upload's answer gives the id and digest).
 * With `encryption` the upload was the file's ciphertext (E2E.md section 2.5): the attachment then
 * describes the plaintext (its size is the file's) and carries how to decrypt it, while `sha256`
 * stays the digest of the uploaded bytes, which is what a download is checked against.
 */
export function attachmentFor(
  file: { readonly name: string; readonly type: string; readonly size: number },
  upload: { readonly media_id: string; readonly size: number; readonly sha256?: string | undefined },
  dimensions: { readonly width: number; readonly height: number } | null,
  encryption?: AttachmentEncryption,
): Attachment {
  return {
    media_id: upload.media_id,
    name: fileNameOf(file),
    mime: mimeOf(file),
    size: encryption ? file.size : upload.size,
    ...(dimensions ? { width: dimensions.width, height: dimensions.height } : {}),
    // Inside the signed content: every reader can check the bytes any server hands them.
    ...(upload.sha256 === undefined ? {} : { sha256: upload.sha256 }),
    ...(encryption ? { encryption } : {}),
  }
}

/** The byte limit a homeserver's `P_TOO_LARGE` answer to an upload names ("limited to N bytes"), if any. */
export function uploadLimitOf(message: string): number | null {
  const match = /limited to (\d+) bytes/.exec(message)
  return match ? Number(match[1]) : null
}

/** A downloaded attachment: its bytes (typed as opaque, never as what they claim) and what image they are. */
export interface LoadedMedia {
  readonly blob: Blob
  readonly image: PreviewType | null
  readonly size: number
}

/**
 * The pixel size of an image file the user picked, or null if it does not decode (or is beyond what an
 * attachment may claim). Decoded off the DOM (`createImageBitmap`): nothing is shown or loaded by URL.
 */
export async function imageSize(file: Blob): Promise<{ width: number; height: number } | null> {
  try {
    const bitmap = await createImageBitmap(file)
    const size = { width: bitmap.width, height: bitmap.height }
    bitmap.close()
    const fits = (n: number) => n >= 1 && n <= 100_000
    return fits(size.width) && fits(size.height) ? size : null
  } catch {
    return null
  }
}

/** Why an upload (or a download) of `name` failed, in a sentence for the user. */
export function transferError(
  key: 'upload.failed' | 'attachment.failed',
  name: string,
  error: unknown,
): string {
  const shown = cleanText(name, 80)
  if (key === 'upload.failed' && error instanceof ApiError && error.errcode === 'P_TOO_LARGE') {
    const limit = uploadLimitOf(error.message)
    return limit === null
      ? t('upload.tooLargeNoLimit', { name: shown })
      : t('upload.tooLarge', { name: shown, limit: formatSize(limit) })
  }
  let reason: string
  if (error instanceof ProtocolError) reason = t('attachment.unverified')
  else if (error instanceof NetworkError) reason = t('transfer.network')
  else reason = error instanceof Error ? error.message : String(error)
  return t(key, { name: shown, reason })
}
