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
  'rooms.invited': 'Invitation',
  'rooms.join': 'Join',
  'rooms.dm': 'Direct message',
  'newchat.heading': 'Start a chat',
  'newchat.user': 'User id, e.g. @bob:globex.example',
  'newchat.dm': 'Message',
  'newchat.group': 'New group',
  'newchat.groupName': 'Group name',
  'newchat.failed': 'Could not start the chat: {reason}',
  'timeline.empty': 'No messages yet. Say hello.',
  'timeline.pending': 'Sending…',
  'timeline.failed': 'Not sent',
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
  'status.online': 'Connected',
  'status.connecting': 'Connecting…',
  'status.syncing': 'Catching up…',
  'status.offline': 'Offline: messages will be sent when you are back',
  signout: 'Sign out',
} as const

export type MessageKey = keyof typeof en

/** The text for `key` in the current locale, with `{placeholders}` filled in. */
export function t(key: MessageKey, vars: Readonly<Record<string, string | number>> = {}): string {
  return en[key].replace(/\{(\w+)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole))
}
