/**
 * Every user-visible string goes through `t` (issue: "all text through an i18n layer"). Messages are
 * keyed; `{name}` placeholders are filled from `vars`. English is the only locale so far.
 */
const en = {
  'app.title': 'Parley',
  'signin.heading': 'Sign in to your homeserver',
  'signin.server': 'Homeserver',
  'signin.username': 'User name',
  'signin.password': 'Password',
  'signin.submit': 'Sign in',
  'signin.register': 'Create account',
  'signin.failed': 'Could not sign in: {reason}',
  'rooms.heading': 'Rooms',
  'rooms.empty': 'No rooms yet. Start a chat.',
  'rooms.unread': '{count} unread',
  'preview.you': 'You',
  'preview.attachment': '📎 {name}',
  'preview.encrypted': '🔒 Encrypted message',
  'preview.reaction': 'reacted {key}',
  'e2e.encrypted': 'End-to-end encrypted',
  'e2e.encryptedShort': 'Encrypted',
  'e2e.waiting': 'Waiting for this message’s key…',
  'e2e.failed': 'This message could not be decrypted ({reason}).',
  'e2e.pending': 'Encrypted message',
  'e2e.groupOption': 'End-to-end encrypted (cannot be turned off later)',
  'e2e.unavailable': 'Encryption is not available on this device: {reason}',
  'e2e.verify': 'Verify {user}',
  'e2e.verifyHeading': 'Verify {user}',
  'e2e.verifyHelp':
    'Compare these numbers with {user} in person or on a call, or let them scan the code. If they match, nobody is in between.',
  'e2e.safetyNumber': 'Safety number',
  'e2e.qr': 'QR code to scan',
  'e2e.noSafetyNumber': 'No safety number yet: {user} has not set up encryption.',
  'e2e.markVerified': 'They match: mark as verified',
  'e2e.unverify': 'Remove verification',
  'e2e.verified': 'Verified',
  'e2e.close': 'Close',
  'e2e.blockedHeading': '{user}’s identity key changed',
  'e2e.blockedText':
    'You had verified {user}. Their key changed: a new device, a reinstall, or someone in between. Messages to rooms with them are held until you decide.',
  'e2e.accept': 'Accept the new key',
  'e2e.showNumber': 'Accept and compare safety numbers',
  'e2e.warning.identity_changed': '{user}’s identity key changed.',
  'e2e.warning.device_list_rollback': 'The server showed an outdated device list for {user}: ignored.',
  'e2e.warning.device_list_invalid':
    'The server tried to add a device to {user} that {user} did not sign: ignored.',
  'e2e.warning.room_key_rejected': 'A room key from {user} was refused.',
  'e2e.warning.replayed_message': 'A message from {user} was replayed by the server: shown once.',
  'e2e.warning.no_keys': '{user} has not set up encryption: they cannot read encrypted messages yet.',
  'e2e.warning.membership_unsigned':
    'The server tried to add {user} to an encrypted room without a member’s signature: ignored.',
  'e2e.enable': 'Turn on encryption',
  'e2e.enableConfirm': 'Encrypt this room from now on? This cannot be undone.',
  'e2e.enableYes': 'Encrypt',
  'search.label': 'Search messages',
  'search.none': 'No messages found on this device.',
  'search.results': 'Messages found',
  'backup.heading': 'Key backup',
  'backup.newDevice':
    'This device cannot read encrypted messages yet. Enter your recovery key or backup passphrase to add it to your devices.',
  'backup.secret': 'Recovery key or passphrase',
  'backup.restore': 'Add this device',
  'backup.working': 'Working…',
  'backup.restored': 'This device is added: keys of {count} conversations restored.',
  'backup.explain':
    'Back up your message keys, encrypted, on your homeserver, to read your history on a new device. A passphrase is optional; you also get a recovery key.',
  'backup.passphrase': 'Passphrase (optional)',
  'backup.enable': 'Set up key backup',
  'backup.showKey':
    'Your recovery key. Write it down and keep it safe: it is shown only now, and whoever has it can read your backup.',
  'backup.saved': 'I have saved it',
  'backup.on': 'Key backup is on for this device.',
  'e2e.cancel': 'Cancel',
  'rooms.mentions.one': '1 mention of you',
  'rooms.mentions.other': '{count} mentions of you',
  'link.join': 'You were invited to {room}. Join it?',
  'link.unknown': 'That link is for a room you are not in ({room}).',
  'link.dismiss': 'Dismiss',
  'rooms.invited': 'Invitation',
  'rooms.join': 'Join',
  'rooms.dm': 'Direct message',
  'presence.online': 'Online',
  'presence.away': 'Away',
  'presence.offline': 'Offline',
  'newchat.heading': 'Start a chat',
  'newchat.user': 'User id, e.g. @bob:globex.example',
  'newchat.dm': 'Message',
  'newchat.group': 'New group',
  'newchat.groupName': 'Group name',
  'newchat.broadcast': 'New broadcast',
  'newchat.failed': 'Could not start the chat: {reason}',
  'timeline.empty': 'No messages yet. Say hello.',
  'timeline.pending': 'Sending…',
  'timeline.failed': 'Not sent',
  'timeline.unsent': 'Not sent: {reason}',
  'timeline.retry': 'Send again',
  'timeline.discard': 'Discard',
  'timeline.deleted': 'Message deleted',
  'timeline.membership.join': '{user} joined',
  'timeline.membership.invite': '{user} was invited',
  'timeline.membership.leave': '{user} left',
  'timeline.membership.ban': '{user} was banned',
  'timeline.created': 'Room created',
  'message.react': 'React with {key}',
  'message.reply': 'Reply',
  'message.edit': 'Edit',
  'message.delete': 'Delete',
  'message.edited': '(edited)',
  'message.replyingTo': 'Replying to {user}',
  'message.reactions': '{key} by {users}',
  'timeline.seenBy': 'Seen by {users}',
  'timeline.typing': '{users} typing…',
  'room.members': '{count} members',
  'room.invite': 'Invite',
  'room.inviteUser': 'Invite someone by user id',
  'room.leave': 'Leave room',
  'room.kick': 'Remove {user}',
  'room.failed': 'That did not work: {reason}',
  'switcher.label': 'Jump to a room',
  'switcher.placeholder': 'Type a room name…',
  'switcher.none': 'No room matches',
  'composer.editing': 'Editing your message',
  'composer.cancel': 'Cancel',
  'composer.placeholder': 'Message {room}',
  'composer.send': 'Send',
  'composer.readOnly': 'Only admins can post in this broadcast room.',
  'status.online': 'Connected',
  'status.connecting': 'Connecting…',
  'status.syncing': 'Catching up…',
  'status.offline': 'Offline: messages will be sent when you are back',
  signout: 'Sign out',
  'cache.memoryOnly':
    'No system keychain is available: nothing is kept on this computer, so you will sign in again next time.',
  // ---- timeline: virtualised list, day separators, unread (timeline helper) ----
  'timeline.label': 'Messages in {room}',
  'timeline.today': 'Today',
  'timeline.yesterday': 'Yesterday',
  'timeline.loadingOlder': 'Loading older messages…',
  'timeline.historyStart': 'This is the start of the conversation',
  'timeline.unreadDivider': 'New messages',
  'timeline.jumpUnread.one': '1 new message — jump',
  'timeline.jumpUnread.other': '{count} new messages — jump',
  'timeline.newBelow.one': '1 new message below',
  'timeline.newBelow.other': '{count} new messages below',
  'timeline.announce': 'New message from {user}: {body}',
  'timeline.dismiss': 'Dismiss',
  // ---- attachments and display names (attachments helper) ----
  'composer.attach': 'Attach',
  'composer.attached': 'Files to send',
  'composer.removeFile': 'Remove {name}',
  'upload.uploading': 'Uploading {name}…',
  'upload.failed': 'Could not upload {name}: {reason}',
  'upload.tooLarge': '{name} is too large: your server takes files up to {limit}.',
  'upload.tooLargeNoLimit': '{name} is too large for your server.',
  'upload.retry': 'Retry',
  'upload.edit': 'Back to composer',
  'attachment.download': 'Download {name}',
  'attachment.downloadShort': 'Download',
  'attachment.loading': 'Loading {name}…',
  'attachment.failed': 'Could not load {name}: {reason}',
  'attachment.unverified': 'the file does not match what the sender sent',
  'attachment.e2e.altered': 'the encrypted file differs from the one the sender sent',
  'attachment.e2e.incomplete': 'the encrypted file is incomplete or has extra bytes',
  'attachment.e2e.undecryptable': 'the file does not decrypt: it was altered, or belongs to another room',
  'attachment.e2e.invalid': 'the encryption details of the file are invalid',
  'transfer.network': 'the server could not be reached',
  'profile.edit': 'Set display name',
  'profile.label': 'Display name',
  'profile.save': 'Save',
  'profile.failed': 'Could not set the display name: {reason}',
} as const

export type MessageKey = keyof typeof en

/** The text for `key` in the current locale, with `{placeholders}` filled in. */
export function t(key: MessageKey, vars: Readonly<Record<string, string | number>> = {}): string {
  return en[key].replace(/\{(\w+)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole))
}

// ---- dates and plurals (timeline helper) ----

/** The locale of the messages above (English only so far); dates and plurals follow it. */
export const LOCALE = 'en'
/**
 * Made on first use, not at load: building Intl objects costs start-up time (the cold-start
 * benchmark showed them in the renderer's first 120 ms) and the sign-in screen needs none of them.
 */
function lazy<T>(make: () => T): () => T {
  let value: T | undefined
  return () => (value ??= make())
}
const plurals = lazy(() => new Intl.PluralRules(LOCALE))
const dayFormat = lazy(
  () =>
    new Intl.DateTimeFormat(LOCALE, {
      weekday: 'long',
      year: 'numeric',
      month: 'long',
      day: 'numeric',
    }),
)

/** `one` or `other` by the locale's plural rule for `count`, with `{count}` filled in. */
export function tn(
  one: MessageKey,
  other: MessageKey,
  count: number,
  vars: Readonly<Record<string, string | number>> = {},
): string {
  return t(plurals().select(count) === 'one' ? one : other, { ...vars, count })
}

const timeFormat = lazy(() => new Intl.DateTimeFormat(LOCALE, { hour: 'numeric', minute: '2-digit' }))
const fullFormat = lazy(() => new Intl.DateTimeFormat(LOCALE, { dateStyle: 'full', timeStyle: 'short' }))

/** A message's time of day ("14:05" or "2:05 PM" as the locale writes it). */
export function formatTime(ts: number): string {
  return timeFormat().format(new Date(ts))
}

/** A message's full date and time, for its tooltip. */
export function formatDateTime(ts: number): string {
  return fullFormat().format(new Date(ts))
}

/** A day separator's label: "Today", "Yesterday", or the local date written out in the locale. */
export function formatDay(ts: number, now: number = Date.now()): string {
  const day = new Date(ts)
  const today = new Date(now)
  const sameDay = (a: Date, b: Date) =>
    a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate()
  if (sameDay(day, today)) return t('timeline.today')
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1)
  if (sameDay(day, yesterday)) return t('timeline.yesterday')
  return dayFormat().format(day)
}

// ---- sizes (attachments helper) ----

const sizeFormats = new Map<string, Intl.NumberFormat>()

/** A byte count for people: `512 bytes`, `1.5 kB`, `2.3 MB` (decimal units, as Intl names them). */
export function formatSize(bytes: number): string {
  const units = ['byte', 'kilobyte', 'megabyte', 'gigabyte'] as const
  let value = bytes
  let i = 0
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000
    i++
  }
  const unit = units[i]!
  let format = sizeFormats.get(unit)
  if (!format) {
    format = new Intl.NumberFormat(LOCALE, {
      style: 'unit',
      unit,
      unitDisplay: unit === 'byte' ? 'long' : 'short',
      maximumFractionDigits: 1,
    })
    sizeFormats.set(unit, format)
  }
  return format.format(value)
}
