/**
 * The app's state over the headless client (`@parley/protocol/client`): who is signed in, the room
 * list, each room's timeline, what is still being sent. Svelte 5 runes make it reactive; components
 * read it and call its methods, and never talk to the network themselves.
 */
import {
  ApiError,
  ClientClosedError,
  ENCRYPTED_UPLOAD,
  encryptFile,
  ParleyClient,
  type ClientStore,
  type ConnectionStatus,
  type OutboxEntry,
} from '@parley/protocol/client'
import type { ClientEvent, PresenceStatus } from '@parley/protocol/schema'
import { MessageContent, type Attachment } from '@parley/protocol/schema'
import * as att from './attachments.ts'
import { displayName } from './display-text.ts'
import { decryptMedia } from './encrypted-attachments.ts'
import { Encryption } from './encryption.svelte.ts'
import { MediaCache } from './media-cache.ts'
import type { DeepLink, DesktopApi } from './desktop-api.ts'
import { mentionsIn, mentionsUser } from './mentions.ts'
import { LocalSearch } from './local-search.ts'
import { listedRoom, type ListedRoom } from './preview.ts'
import { RoomTimeline } from './room-timeline.ts'
import type { UnreadMark } from './timeline-layout.ts'

/**
 * What the app persists: the client library's store plus what it renders before the network answers
 * (lib/cache/encrypted-store.ts on IndexedDB; an in-memory one where IndexedDB is unavailable).
 */
export interface AppStore extends ClientStore {
  getRooms(): Promise<ListedRoom[] | null>
  putRooms(rooms: readonly ListedRoom[]): Promise<void>
  getTimeline(room: string): Promise<ClientEvent[] | null>
  putTimeline(room: string, events: readonly ClientEvent[]): Promise<void>
}

/** Why something failed, in a sentence for the user. */
export function reasonOf(error: unknown): string {
  if (error instanceof ApiError) return error.message
  return error instanceof Error ? error.message : String(error)
}

export class Chat {
  status = $state<ConnectionStatus>('offline')
  me = $state<string | null>(null)
  rooms = $state<ListedRoom[]>([])
  selected = $state<string | null>(null)
  /** Sends not yet acknowledged (they survive reloads), oldest first. */
  pending = $state<OutboxEntry[]>([])
  /** Sends refused for good, by txn id. */
  failed = $state<Record<string, string>>({})
  /** Who is typing in each room (others only). */
  typing = $state<Record<string, string[]>>({})
  /** Each room's read receipts: user -> seq read up to. */
  receipts = $state<Record<string, Record<string, number>>>({})

  /** End-to-end encryption on this device (lib/encryption.svelte.ts). */
  readonly encryption = new Encryption({
    keyArrived: (room) => this.#keyArrived(room),
    queueChanged: () => void this.#refreshPending(),
    unsent: (entry, reason) => this.#unsent(entry.room, entry.event_type, entry.content, reason),
    keysRestored: () => {
      for (const room of this.#roomTimelines.keys()) this.#keyArrived(room)
    },
  })

  #client: ParleyClient | null = null
  #roomsTimer: ReturnType<typeof setTimeout> | null = null

  /** Message search on this device, over what it showed (decrypted), kept sealed (lib/local-search.ts). */
  readonly search: LocalSearch

  constructor(
    private readonly store: AppStore,
    private readonly desktop: DesktopApi,
  ) {
    this.search = new LocalSearch(store, () => this.rooms.map((r) => r.room_id))
  }

  /**
   * Picks up a stored session, if any, and shows the cached room list at once; the client then
   * connects and catches up in the background (the app is usable before the network answers).
   */
  async resume(): Promise<boolean> {
    const session = await this.store.getSession()
    if (!session) return false
    this.me = session.user_id
    const cached = await this.store.getRooms()
    if (cached && this.rooms.length === 0) this.rooms = cached
    void this.#start(new ParleyClient({ baseUrl: session.base_url, store: this.store, WebSocket }))
    return true
  }

  async signIn(baseUrl: string, username: string, password: string, create: boolean): Promise<void> {
    const options = { store: this.store, WebSocket }
    const client = create
      ? await ParleyClient.register(baseUrl, username, password, options)
      : await ParleyClient.login(baseUrl, username, password, options)
    await this.#start(client)
  }

  async #start(client: ParleyClient): Promise<void> {
    this.#client = client
    this.#watchNetwork()
    await this.#loadMentions()
    this.me = (await this.store.getSession())?.user_id ?? null
    client.on('status', (s) => (this.status = s))
    client.on('event', ({ event, live }) => this.#onEvent(event, live))
    const refreshPending = () => void this.#refreshPending()
    client.on('sent', refreshPending)
    client.on('pending', refreshPending)
    client.on('send_failed', (f) => {
      this.failed = { ...this.failed, [f.txn_id]: reasonOf(f.error) }
      refreshPending()
    })
    client.on('session_ended', () => void this.signOut())
    client.on('typing', ({ room, user_ids }) => {
      this.typing = { ...this.typing, [room]: user_ids.filter((u) => u !== this.me) }
    })
    client.on('presence', ({ user_id, status }) => {
      this.#presenceHeard.set(user_id, ++this.#presenceTick)
      this.presence = { ...this.presence, [user_id]: status }
    })
    // After a (re)connection, statuses may have changed while we were away: ask again.
    client.on('ready', () => void this.#fetchPresence(this.#dmPeers()))
    client.on('receipt', ({ room, user_id, seq }) => {
      this.receipts = { ...this.receipts, [room]: { ...this.receipts[room], [user_id]: seq } }
    })
    // Keys before the first connection: room keys arriving with it need a handler.
    await this.encryption.start(client)
    await this.#refreshPending()
    await this.refreshRooms()
    void client.connect()
    if (!navigator.onLine) client.networkChanged(false)
  }

  /** The browser's word on the network: drop the socket when it goes, reconnect when it is back. */
  readonly #onNetwork = (event: Event) => this.#client?.networkChanged(event.type === 'online')
  #networkWatched = false

  #watchNetwork(): void {
    if (this.#networkWatched) return
    this.#networkWatched = true
    window.addEventListener('online', this.#onNetwork)
    window.addEventListener('offline', this.#onNetwork)
    document.addEventListener('visibilitychange', this.#onVisibility)
  }

  /** After this long hidden (minimised, another tab), the user shows as away. */
  static readonly AWAY_AFTER_MS = 5 * 60_000
  #awayTimer: ReturnType<typeof setTimeout> | null = null
  #away = false

  /** Hidden for a while: away; visible again: online (the server marks us offline on disconnect). */
  readonly #onVisibility = () => {
    if (this.#awayTimer) clearTimeout(this.#awayTimer)
    this.#awayTimer = null
    if (document.visibilityState === 'hidden') {
      this.#awayTimer = setTimeout(() => {
        this.#away = this.#client?.presence('away') ?? false
      }, Chat.AWAY_AFTER_MS)
    } else if (this.#away) {
      this.#away = false
      this.#client?.presence('online')
    }
  }

  #onEvent(received: ClientEvent, live: boolean): void {
    this.encryption.learn(received.room, [received])
    const event = this.encryption.reveal(received)
    if (this.#insertEvents(event.room, [event])) this.#timelineChanged(event.room)
    if (event.type === 'm.member' || live) this.#scheduleRooms()
    // Someone joined a room with us: their presence is now ours to see (it was hidden before).
    if (
      live &&
      event.type === 'm.member' &&
      event.content.membership === 'join' &&
      event.state_key !== this.me
    )
      void this.#fetchPresence([event.state_key!])
    // Reading the room on screen as it happens: tell the others (their "seen by").
    if (live && event.room === this.selected && event.sender !== this.me && document.hasFocus())
      this.#client?.receipt(event.room, event.event_id)
    if (live && event.type === 'm.message' && event.sender !== this.me) this.#noticeMessage(event)
  }

  /** Room summaries change with every event: refresh them at most a few times a second. */
  #scheduleRooms(): void {
    if (this.#roomsTimer) return
    this.#roomsTimer = setTimeout(() => {
      this.#roomsTimer = null
      void this.refreshRooms()
    }, 150)
  }

  async refreshRooms(): Promise<void> {
    const client = this.#client
    if (!client) return
    try {
      const rooms = await client.api.listRooms()
      if (this.#client !== client) return // signed out meanwhile: not this account's list any more
      this.rooms = rooms.map((r) => {
        this.encryption.learn(r.room_id, r.last_event ? [r.last_event] : [], r.encrypted)
        // Once encrypted, always shown (and treated) as encrypted, whatever the server says later.
        const encrypted = r.encrypted || this.encryption.isEncrypted(r.room_id)
        return listedRoom({
          ...r,
          encrypted,
          ...(r.last_event ? { last_event: this.encryption.reveal(r.last_event) } : {}),
        })
      })
      this.#roomsLoaded()
      const unknown = this.#dmPeers().filter((u) => !(u in this.presence))
      if (unknown.length > 0) void this.#fetchPresence(unknown)
      this.desktop.setBadge(this.rooms.reduce((n, r) => n + r.unread, 0))
      this.#cacheWrite(this.store.putRooms($state.snapshot(this.rooms)))
    } catch {
      // Offline: the list stays as it was and refreshes with the next event.
    }
  }

  async #refreshPending(): Promise<void> {
    this.pending = this.encryption.pendingView(await this.store.listOutbox())
  }

  select(room: string): void {
    this.#clearMentions(room)
    this.#markUnread(room)
    this.selected = room
    if (!this.timelines[room]) void this.#loadCachedTimeline(room)
    const last = this.timelines[room]?.at(-1)
    if (last) this.#client?.receipt(room, last.event_id)
    this.#scheduleRooms()
    void this.#loadHistory(room)
  }

  /** The window got focus back: what arrived in the open room meanwhile is read now. */
  windowFocused(): void {
    const room = this.selected
    const last = room ? this.timelines[room]?.at(-1) : undefined
    if (!room || !last) return
    const summary = this.rooms.find((r) => r.room_id === room)
    if (summary && summary.unread > 0) {
      this.#client?.receipt(room, last.event_id)
      this.#scheduleRooms()
    }
  }

  /** Opens the joined room `step` places above (-1) or below (+1) the open one in the list, wrapping. */
  selectNext(step: 1 | -1): void {
    const joined = this.rooms.filter((r) => r.membership === 'join')
    if (joined.length === 0) return
    const at = joined.findIndex((r) => r.room_id === this.selected)
    const next = at < 0 ? (step > 0 ? 0 : joined.length - 1) : (at + step + joined.length) % joined.length
    this.select(joined[next]!.room_id)
  }

  /**
   * The latest page of a room's history. Sync brings what happened while we were members; events from
   * before we joined (a DM's first message, sent while we were invited) come from history.
   */
  async #loadHistory(room: string): Promise<void> {
    if (!this.#client) return
    try {
      const client = this.#client
      const page = await client.api.messages(room, { limit: 50 })
      if (this.#client !== client) return // signed out meanwhile
      // What we hold (a cached tail from the last run) must join up with this page: the cursor may have
      // moved past events the cache never got (a crash within a second of them). If it does not, the
      // stale part goes; older history pages in again from the server on scrolling up.
      const timeline = this.roomTimeline(room)
      const pageOldest = page.events.reduce((min, e) => Math.min(min, e.seq), Infinity)
      const below = timeline.events.filter((e) => e.seq < pageOldest)
      if (page.events.length > 0 && below.length > 0 && below.at(-1)!.seq < pageOldest - 1) timeline.clear()
      if (this.#addPage(room, page)) this.#timelineChanged(room)
    } catch {
      // Not a member (yet) or offline: the timeline shows what sync brought.
    }
  }

  /** The message the composer replies to, if any. */
  replyingTo = $state<{ room: string; event_id: string; sender: string } | null>(null)
  /** The message being edited, if any. */
  editing = $state<{ room: string; event_id: string; body: string } | null>(null)

  /**
   * Sends the composer's text to the selected room (a reply, or an edit if one is in progress); it
   * shows as pending until acknowledged.
   */
  async send(body: string): Promise<void> {
    const room = this.selected
    if (!room || body.trim() === '') return
    const editing = this.editing?.room === room ? this.editing : null
    const reply = this.replyingTo?.room === room ? this.replyingTo : null
    this.editing = null
    this.replyingTo = null
    if (editing)
      return this.#sendEvent(room, 'm.edit', { target: editing.event_id, body, format: 'markdown' })
    const content: Record<string, unknown> = { body, format: 'markdown' }
    if (reply) content.reply_to = reply.event_id
    const mentions = mentionsIn(body)
    if (mentions.length > 0) content.mentions = mentions
    await this.#sendEvent(room, 'm.message', content)
  }

  async react(room: string, target: string, key: string): Promise<void> {
    await this.#sendEvent(room, 'm.reaction', { target, key })
  }

  /** Deletes one of the user's events (a message, or a reaction to take it back). */
  async remove(room: string, target: string): Promise<void> {
    await this.#sendEvent(room, 'm.redaction', { target })
  }

  async #sendEvent(room: string, type: string, content: Record<string, unknown>): Promise<void> {
    if (!this.#client) return
    const sending = this.#transmit(this.#client, room, type, content)
    await this.#refreshPending()
    try {
      await sending
    } catch (error) {
      // A message refused for good, or never stored (the outbox write failed), has left the outbox:
      // keep it on screen with the reason and a retry, so nothing the user wrote silently vanishes.
      // (A closed client keeps its entries in the outbox: those are still pending.)
      if (!(error instanceof ClientClosedError)) this.#unsent(room, type, content, reasonOf(error))
    }
  }

  #unsent(room: string, type: string, content: Record<string, unknown>, reason: string): void {
    if (type === 'm.message') this.unsent = [...this.unsent, { id: ++this.#unsentIds, room, content, reason }]
  }

  /** Every send goes through here (messages, reactions, deletions, attachments). */
  #transmit(
    client: ParleyClient,
    room: string,
    type: string,
    content: Record<string, unknown>,
  ): Promise<unknown> {
    // Deletions stay in the clear: the server checks who may delete what, and drops the content.
    if (this.#encrypted(room) && type !== 'm.redaction') return this.encryption.send(room, type, content)
    return client.send(room, type, content)
  }

  /** Messages that could not be sent and left the outbox, oldest first (shown with a retry). */
  unsent = $state<Array<{ id: number; room: string; content: Record<string, unknown>; reason: string }>>([])
  #unsentIds = 0

  /** Sends an unsent message again (as a new message) or drops it. */
  retryUnsent(id: number, resend: boolean): void {
    const item = this.unsent.find((u) => u.id === id)
    if (!item) return
    this.unsent = this.unsent.filter((u) => u.id !== id)
    if (resend) void this.#sendEvent(item.room, 'm.message', $state.snapshot(item.content))
  }

  #typingSent = 0

  /** The user is typing in a room: tell the others, at most every few seconds. */
  typingIn(room: string, typing: boolean): void {
    const now = Date.now()
    if (typing && now - this.#typingSent < 3000) return
    this.#typingSent = typing ? now : 0
    this.#client?.typing(room, typing)
  }

  /** The unsent text of a room's composer (kept across room switches and reloads). */
  async loadDraft(room: string): Promise<string> {
    return (await this.store.getItem(`draft:${room}`)) ?? ''
  }

  async saveDraft(room: string, text: string): Promise<void> {
    if (text === '') await this.store.removeItem(`draft:${room}`)
    else await this.store.setItem(`draft:${room}`, text)
  }

  /** A direct message: end-to-end encrypted (always, like Signal; the server cannot turn it off). */
  async startDm(userId: string): Promise<string> {
    const room = await this.encryption
      .membership()
      .createRoom({ kind: 'dm', invite: [userId], encrypted: true })
    this.encryption.createdEncrypted(room)
    await this.refreshRooms()
    this.select(room)
    return room
  }

  /** A group (everyone writes) or a broadcast room (only admins write, everyone reads). */
  async createGroup(
    name: string,
    invite: string[],
    kind: 'group' | 'broadcast' = 'group',
    encrypted = false,
  ): Promise<string> {
    const body = { kind, name, invite, encrypted }
    const room = encrypted
      ? await this.encryption.membership().createRoom(body)
      : await this.#client!.api.createRoom(body)
    if (encrypted) this.encryption.createdEncrypted(room)
    await this.refreshRooms()
    this.select(room)
    return room
  }

  /** Membership changes of encrypted rooms are signed by this device (E2E.md section 2.3). */
  #encrypted(room: string): boolean {
    return this.rooms.find((r) => r.room_id === room)?.encrypted === true || this.encryption.isEncrypted(room)
  }

  async invite(room: string, userId: string): Promise<void> {
    if (this.#encrypted(room)) await this.encryption.membership().invite(room, userId)
    else await this.#client!.api.invite(room, userId)
  }

  /** Turns end-to-end encryption on in a group for good (its members are signed in as the roots). */
  async enableEncryption(room: string): Promise<void> {
    await this.encryption.membership().enableEncryption(room)
    await this.refreshRooms()
  }

  async leave(room: string): Promise<void> {
    if (this.#encrypted(room)) await this.encryption.membership().leave(room)
    else await this.#client!.api.leave(room)
    if (this.selected === room) this.selected = null
    await this.refreshRooms()
  }

  async kick(room: string, userId: string): Promise<void> {
    if (this.#encrypted(room)) await this.encryption.membership().kick(room, userId)
    else await this.#client!.api.kick(room, userId)
  }

  /** A room's members; their presence is fetched along (and then kept current by live updates). */
  async members(room: string) {
    const members = await this.#client!.api.members(room)
    void this.#fetchPresence(members.map((m) => m.user_id).filter((u) => !(u in this.presence)))
    return members
  }

  // ---- presence ----

  /** Presence of the people the user sees (DM peers, members listed): fetched, then pushed live. */
  presence = $state<Record<string, PresenceStatus>>({})

  #dmPeers(): string[] {
    return this.rooms.flatMap((r) => (r.kind === 'dm' && r.dm_peer ? [r.dm_peer] : []))
  }

  /** Ordering of presence news: a live update heard after a fetch started beats that fetch's answer. */
  #presenceTick = 0
  readonly #presenceHeard = new Map<string, number>()

  async #fetchPresence(users: readonly string[]): Promise<void> {
    const client = this.#client
    for (let i = 0; client && i < users.length; i += 100) {
      try {
        const asked = ++this.#presenceTick
        const got = await client.api.presence(users.slice(i, i + 100))
        if (this.#client !== client) return
        const fresh = Object.entries(got).filter(([u]) => (this.#presenceHeard.get(u) ?? 0) < asked)
        this.presence = { ...this.presence, ...Object.fromEntries(fresh) }
      } catch {
        return // offline: the next connection asks again
      }
    }
  }

  async join(room: string): Promise<void> {
    if (this.#encrypted(room)) await this.encryption.membership().join(room)
    else
      await this.#client!.api.join(room).catch(async (error: unknown) => {
        // A room we knew nothing of (a link) turned out to be encrypted: join with a signature.
        if (!(error instanceof ApiError && error.errcode === 'P_UNSIGNED_MEMBERSHIP')) throw error
        await this.encryption.membership().join(room)
      })
    if (this.linkPrompt?.room === room) this.linkPrompt = null
    await this.refreshRooms()
    this.select(room)
  }

  // ---- timeline paging (timeline helper) ----

  /**
   * Each room's events and their fold, kept incrementally (lib/room-timeline.ts): a new event costs
   * O(log n) (usually an append) in a room of 100,000, not a copy, a sort and a fold of the room. The
   * timelines are plain objects; `#versions` is the reactive part, one number per room.
   */
  readonly #roomTimelines = new Map<string, RoomTimeline>()
  #versions = $state.raw<Readonly<Record<string, number>>>({})
  /** When paging a room's history last failed (no retry for a few seconds). */
  readonly #olderFailed = new Map<string, number>()
  /** What was unread in each room when it was last opened (lib/timeline-layout.ts `firstUnread`). */
  unreadMarks = $state.raw<Readonly<Record<string, UnreadMark>>>({})

  /** Events of each room, ordered by seq (read-only: the arrays change in place as events arrive). */
  get timelines(): Readonly<Record<string, readonly ClientEvent[]>> {
    void this.#versions
    return Object.fromEntries([...this.#roomTimelines].map(([room, t]) => [room, t.events]))
  }

  /** A room's timeline object; read {@link timelineVersion} to react to its changes. */
  roomTimeline(room: string): RoomTimeline {
    let timeline = this.#roomTimelines.get(room)
    if (!timeline) this.#roomTimelines.set(room, (timeline = new RoomTimeline(this.me)))
    return timeline
  }

  /** Changes whenever the room's events or its paging state change (reactive). */
  timelineVersion(room: string): number {
    return this.#versions[room] ?? 0
  }

  #bump(room: string): void {
    this.#versions = { ...this.#versions, [room]: this.roomTimeline(room).version }
  }

  /** Adds events to a room's timeline (decrypted where they can be); true if any was new. */
  #insertEvents(room: string, events: readonly ClientEvent[]): boolean {
    this.encryption.learn(room, events)
    const revealed = events.map((e) => this.encryption.reveal(e))
    void this.search.add(room, revealed)
    if (this.roomTimeline(room).insert(revealed) === 0) return false
    this.#bump(room)
    return true
  }

  /** A page of history (newest first); without `next_before` it reaches the start of the room. */
  #addPage(
    room: string,
    page: { events: readonly ClientEvent[]; next_before?: number | undefined },
  ): boolean {
    const timeline = this.roomTimeline(room)
    this.encryption.learn(room, page.events)
    const revealed = page.events.map((e) => this.encryption.reveal(e))
    void this.search.add(room, revealed)
    const added = timeline.insert(revealed) > 0
    if (page.next_before === undefined && !timeline.atStart) {
      timeline.atStart = true
      timeline.touch()
    }
    this.#bump(room)
    return added
  }

  /**
   * Pages in the history just before a room's oldest loaded event (scrolling up). One page at a time;
   * after a failure (offline), no retry for a few seconds.
   */
  async loadOlder(room: string, limit = 100): Promise<void> {
    const timeline = this.roomTimeline(room)
    const client = this.#client
    if (!client || timeline.atStart || timeline.loadingOlder) return
    if (Date.now() - (this.#olderFailed.get(room) ?? 0) < 3000) return
    // An invitee cannot read the room's history yet.
    if (this.rooms.find((r) => r.room_id === room)?.membership !== 'join') return
    timeline.loadingOlder = true
    timeline.touch()
    this.#bump(room)
    try {
      const before = timeline.events[0]?.seq
      const page = await client.api.messages(room, before === undefined ? { limit } : { before, limit })
      if (this.#client === client) this.#addPage(room, page)
    } catch {
      this.#olderFailed.set(room, Date.now())
    } finally {
      timeline.loadingOlder = false
      timeline.touch()
      this.#bump(room)
    }
  }

  /**
   * Remembers what is unread as the room opens (opening it sends a read receipt, after which the
   * server counts nothing as unread): the summary's count and `last_seq`, and the user's own receipt
   * if one arrived in this session. Where the divider goes is decided from these by `firstUnread`.
   */
  #markUnread(room: string): void {
    const summary = this.rooms.find((r) => r.room_id === room)
    const mark: UnreadMark = {
      count: summary?.unread ?? 0,
      receiptSeq: this.me === null ? null : (this.receipts[room]?.[this.me] ?? null),
      lastSeq: summary?.last_seq ?? 0,
    }
    this.unreadMarks = { ...this.unreadMarks, [room]: mark }
  }

  /**
   * A room key arrived: the room's events that waited for it are decrypted, and the timeline is
   * rebuilt with them (rare: once per sender's session, about every 100 messages).
   */
  #keyArrived(room: string): void {
    const timeline = this.#roomTimelines.get(room)
    if (!timeline) return
    const before = timeline.events
    const after = before.map((e) => this.encryption.reveal(e))
    if (after.every((e, i) => e === before[i])) return
    const atStart = timeline.atStart
    timeline.clear()
    timeline.insert(after)
    void this.search.add(room, after)
    timeline.atStart ||= atStart
    this.#bump(room)
    this.#timelineChanged(room)
    this.#scheduleRooms()
  }

  #resetTimelines(): void {
    this.#roomTimelines.clear()
    this.#olderFailed.clear()
    this.#versions = {}
    this.unreadMarks = {}
  }

  // ---- mentions, notifications, deep links ----

  /** Unread mentions of the user per room, counted by this client (the server cannot read encrypted rooms). */
  mentions = $state<Record<string, number>>({})
  /** A `parley://` link waiting for the user: a room to join, or one that could not be opened. */
  linkPrompt = $state<{ kind: 'join' | 'unknown'; room: string } | null>(null)

  /**
   * A live message from someone else: DMs and mentions notify, unless the room is on screen and the
   * window has focus; a mention off screen also counts in the room list.
   */
  #noticeMessage(event: ClientEvent): void {
    const onScreen = event.room === this.selected && document.hasFocus()
    if (onScreen) return
    const mentioned = mentionsUser(event.content, this.me)
    if (mentioned && event.room !== this.selected) {
      this.mentions = { ...this.mentions, [event.room]: (this.mentions[event.room] ?? 0) + 1 }
      void this.store.setItem('mentions', JSON.stringify(this.mentions)).catch(() => {})
    }
    const room = this.rooms.find((r) => r.room_id === event.room)
    if (mentioned || room?.kind === 'dm') this.desktop.notify(event.sender, String(event.content.body ?? ''))
  }

  #pendingLink: DeepLink | null = null
  /** The room list came from the server at least once for this account (a cached one may be stale). */
  #roomsKnown = false

  #roomsLoaded(): void {
    this.#roomsKnown = true
    const link = this.#pendingLink
    this.#pendingLink = null
    if (link) this.openLink(link)
  }

  /** Mention counts kept across restarts (read back as untrusted input). */
  async #loadMentions(): Promise<void> {
    try {
      const parsed: unknown = JSON.parse((await this.store.getItem('mentions')) ?? '{}')
      if (typeof parsed !== 'object' || parsed === null) return
      const counts: Record<string, number> = {}
      for (const [room, n] of Object.entries(parsed))
        if (typeof n === 'number' && Number.isSafeInteger(n) && n > 0) counts[room] = n
      this.mentions = counts
    } catch {
      // Unreadable: start from none.
    }
  }

  #clearMentions(room: string): void {
    if (!this.mentions[room]) return
    const { [room]: _, ...rest } = this.mentions
    this.mentions = rest
    void this.store.setItem('mentions', JSON.stringify(rest)).catch(() => {})
  }

  /**
   * Opens a `parley://` link: a room the user is in opens; an invitation (or a room link to a room
   * they are not in) asks before joining: a link never makes the user act on its own.
   */
  openLink(link: DeepLink): void {
    // Before sign-in, or before the room list came: hold it (a link must not be lost, nor judged on
    // an empty list), and open it once the rooms are known.
    if (this.me === null || !this.#roomsKnown) {
      this.#pendingLink = link
      return
    }
    const room = this.rooms.find((r) => r.room_id === link.room)
    if (room?.membership === 'join') {
      this.linkPrompt = null
      this.select(link.room)
    } else {
      this.linkPrompt = {
        kind: link.kind === 'invite' || room?.membership === 'invite' ? 'join' : 'unknown',
        room: link.room,
      }
    }
  }

  // ---- local cache of timelines ----

  readonly #timelinesToCache = new Set<string>()
  #timelineTimer: ReturnType<typeof setTimeout> | null = null
  #cacheWrites = 0
  /** False while cache writes are scheduled or running (shown as `data-cache` for tests and tools). */
  cacheSaved = $state(true)

  #cacheWrite(write: Promise<void>): void {
    this.#cacheWrites++
    this.cacheSaved = false
    void write
      .catch(() => {}) // a failed cache write only costs a refetch on the next start
      .finally(() => {
        this.#cacheWrites--
        this.cacheSaved = this.#cacheWrites === 0 && this.#timelineTimer === null
      })
  }

  /** A room's timeline changed: keep its tail for the next start (batched, at most once a second). */
  #timelineChanged(room: string): void {
    this.#timelinesToCache.add(room)
    this.cacheSaved = false
    this.#timelineTimer ??= setTimeout(() => {
      this.#timelineTimer = null
      const rooms = [...this.#timelinesToCache]
      this.#timelinesToCache.clear()
      for (const r of rooms) {
        const events = this.timelines[r]
        if (events) this.#cacheWrite(this.store.putTimeline(r, events.slice(-100)))
      }
      this.cacheSaved = this.#cacheWrites === 0
    }, 1000)
  }

  /** Shows a room's cached events while its history loads (events already in memory win). */
  async #loadCachedTimeline(room: string): Promise<void> {
    const cached = await this.store.getTimeline(room)
    if (!cached || cached.length === 0) return
    this.encryption.trustCached(cached)
    this.#insertEvents(room, cached)
  }

  async signOut(): Promise<void> {
    const client = this.#client
    this.#client = null
    // Nothing of this account may reach the cache after it is cleared.
    if (this.#timelineTimer) clearTimeout(this.#timelineTimer)
    this.#timelineTimer = null
    this.#timelinesToCache.clear()
    if (client) await client.logout().catch(() => client.close())
    this.search.reset()
    await this.store.clear()
    this.me = null
    this.rooms = []
    this.#resetTimelines()
    this.pending = []
    this.selected = null
    this.mentions = {}
    this.linkPrompt = null
    this.#pendingLink = null
    this.#roomsKnown = false
    this.presence = {}
    this.#presenceHeard.clear()
    this.unsent = []
    this.typing = {}
    this.receipts = {}
    this.failed = {}
    this.editing = null
    this.replyingTo = null
    this.status = 'offline'
    this.encryption.reset()
    this.#resetAttachments()
  }

  // ==== attachments and display names (attachments helper) ====================================

  /** Display names by user id as fetched ('' for none); show them through {@link nameOf}. */
  #profiles = $state.raw<Readonly<Record<string, string>>>({})
  /** When each user's profile was last asked for (plain: asking is not showing). */
  readonly #profileAsked = new Map<string, number>()
  readonly #profileQueue = new Set<string>()
  #profileTimer: ReturnType<typeof setTimeout> | null = null
  /** A display name is asked for again after this long, when its user is on screen again. */
  static readonly PROFILE_TTL_MS = 10 * 60_000

  /** What to call a user: their display name (cleaned, capped: lib/display-text.ts) or their user id. */
  nameOf(userId: string): string {
    return displayName(this.#profiles[userId], userId)
  }

  /** The signed-in user's display name as the server has it ('' for none). */
  get myDisplayName(): string {
    return this.me === null ? '' : (this.#profiles[this.me] ?? '')
  }

  /**
   * `userId` is on screen: fetch their display name unless known. Only users of our own server: the
   * homeserver keeps no profiles of other servers' users (`GET /profile` answers 404), so they show as
   * their user id. Safe to call while rendering: it changes no state, the fetch runs a moment later.
   */
  wantProfile(userId: string): void {
    if (this.me === null || serverOf(userId) !== serverOf(this.me)) return
    const asked = this.#profileAsked.get(userId)
    if (asked !== undefined && Date.now() - asked < Chat.PROFILE_TTL_MS) return
    this.#profileAsked.set(userId, Date.now())
    this.#profileQueue.add(userId)
    this.#profileTimer ??= setTimeout(() => void this.#fetchProfiles(), 50)
  }

  async #fetchProfiles(): Promise<void> {
    this.#profileTimer = null
    const users = [...this.#profileQueue]
    this.#profileQueue.clear()
    const client = this.#client
    // One request per user (the API has no batch lookup), a few at a time.
    for (let i = 0; client && i < users.length; i += 4) {
      const got = await Promise.all(
        users.slice(i, i + 4).map((user) =>
          client.api.getProfile(user).then(
            (p) => [user, p.display_name] as const,
            (error: unknown) => {
              if (error instanceof ApiError && error.errcode === 'P_NOT_FOUND') return [user, ''] as const
              this.#profileAsked.delete(user) // offline: asked again when next on screen
              return null
            },
          ),
        ),
      )
      if (this.#client !== client) return
      const next = { ...this.#profiles }
      for (const entry of got) if (entry) next[entry[0]] = entry[1]
      this.#profiles = next
    }
  }

  /** Sets the user's display name (`PUT /profile`: at most 128 characters, trimmed by the server). */
  async setDisplayName(name: string): Promise<void> {
    if (!this.#client || this.me === null) return
    await this.#client.api.setProfile(name)
    this.#profiles = { ...this.#profiles, [this.me]: name.trim() }
  }

  /** Files being uploaded, or whose upload failed (until retried or taken back), oldest first. */
  uploads = $state.raw<readonly Upload[]>([])
  /** Files and text a failed upload hands back to its room's composer (the composer takes them). */
  composerRestore = $state.raw<{ room: string; text: string; files: readonly File[] } | null>(null)
  #uploadIds = 0

  /**
   * Sends files to a room: each is uploaded to our homeserver (an "uploading" row meanwhile), then
   * sent as a message carrying its attachment; the caption goes with the first file (a file without
   * one has its name as the body). A failed upload keeps its row, with the error, the file and the
   * caption, until it is retried or taken back into the composer: nothing the user typed is lost.
   */
  sendFiles(room: string, files: readonly File[], caption: string): void {
    const reply = this.replyingTo?.room === room ? this.replyingTo.event_id : null
    this.replyingTo = null
    const added = files.map((file, i) => ({
      id: `upload-${++this.#uploadIds}`,
      room,
      file,
      caption: i === 0 ? caption.trim() : '',
      replyTo: i === 0 ? reply : null,
      error: null,
    }))
    this.uploads = [...this.uploads, ...added]
    for (const upload of added) void this.#upload(upload)
  }

  retryUpload(id: string): void {
    const upload = this.uploads.find((u) => u.id === id)
    if (!upload?.error) return
    const again = { ...upload, error: null }
    this.uploads = this.uploads.map((u) => (u.id === id ? again : u))
    void this.#upload(again)
  }

  /** Takes an upload's file and caption back into its room's composer and drops its row. */
  editUpload(id: string): void {
    const upload = this.uploads.find((u) => u.id === id)
    if (!upload) return
    this.uploads = this.uploads.filter((u) => u.id !== id)
    const waiting = this.composerRestore?.room === upload.room ? this.composerRestore : null
    this.composerRestore = {
      room: upload.room,
      text: [waiting?.text ?? '', upload.caption].filter((x) => x !== '').join('\n'),
      files: [...(waiting?.files ?? []), upload.file],
    }
  }

  async #upload(upload: Upload): Promise<void> {
    const client = this.#client
    const { file } = upload
    try {
      if (!client) throw new Error('signed out')
      const mime = att.mimeOf(file)
      const dimensions = att.isPreviewable({ mime }) ? await att.imageSize(file) : null
      let attachment: Attachment
      if (this.#encrypted(upload.room)) {
        // E2E.md section 2.5: the server gets ciphertext under a neutral name and type; the real ones,
        // the size and the key go in the attachment, which #transmit encrypts with the message.
        const { ciphertext, encryption } = await encryptFile(
          new Uint8Array(await file.arrayBuffer()),
          upload.room,
        )
        const { name, mime: neutral } = ENCRYPTED_UPLOAD
        const res = await client.api.uploadMedia(upload.room, ciphertext, neutral, name)
        attachment = att.attachmentFor(file, res, dimensions, encryption)
      } else {
        const res = await client.api.uploadMedia(upload.room, file, mime, att.fileNameOf(file))
        attachment = att.attachmentFor(file, res, dimensions)
      }
      const content: Record<string, unknown> = {
        body: upload.caption || attachment.name,
        format: 'markdown',
        attachment,
      }
      if (upload.replyTo) content.reply_to = upload.replyTo
      const mentions = mentionsIn(upload.caption)
      if (mentions.length > 0) content.mentions = mentions
      // Checked before it goes: a refused send would otherwise lose the row (e.g. an over-long caption).
      const checked = MessageContent.safeParse(content)
      if (!checked.success) throw new Error(checked.error.issues[0]?.message ?? 'invalid message')
      if (this.#client !== client) return
      // The outbox entry shows as pending before the upload row goes: the list does not flicker.
      const sending = this.#transmit(client, upload.room, 'm.message', content)
      await this.#refreshPending()
      this.uploads = this.uploads.filter((u) => u.id !== upload.id)
      await sending.catch((error: unknown) => {
        // A plain send's failure arrives as send_failed (its row stays, "Not sent"); an encrypted one
        // that could not be sent left its queue: keep it on screen with the reason.
        if (this.#encrypted(upload.room) && !(error instanceof ClientClosedError))
          this.#unsent(upload.room, 'm.message', content, reasonOf(error))
      })
    } catch (error) {
      const failed = { ...upload, error: att.transferError('upload.failed', file.name, error) }
      this.uploads = this.uploads.map((u) => (u.id === upload.id ? failed : u))
    }
  }

  /** Downloaded attachments, shared by the rows showing them; 64 entries or 64 MiB at most. */
  readonly #media = new MediaCache<att.LoadedMedia>(64, 64 * 1024 * 1024)

  /**
   * An attachment's bytes, downloaded through our own homeserver (from the sender's server, which
   * holds it) and checked against the attachment's sha256, then, if it is encrypted, decrypted for
   * `room`, the room of its message (E2E.md section 2.5; all or nothing); kept in a small LRU cache.
   */
  media(attachment: Attachment, sender: string, room: string): Promise<att.LoadedMedia> {
    const client = this.#client
    if (!client) return Promise.reject(new Error('signed out'))
    const { encryption } = attachment
    // Decryption depends on the room and every encryption field: a copy that decrypted for one message
    // is never handed to another that names the same media differently.
    const decrypting = encryption ? `/${room}/${JSON.stringify(encryption)}` : ''
    const key = `${serverOf(sender)}/${attachment.media_id}/${attachment.sha256 ?? ''}${decrypting}`
    return this.#media.get(key, async () => {
      const downloaded = (await client.api.downloadAttachment(attachment, sender)).bytes
      const bytes = encryption ? await decryptMedia(downloaded, attachment, room) : downloaded
      const owned =
        bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes)
      // Typed as opaque bytes: whatever the sender claims, a blob: URL of this never renders as a page.
      const blob = new Blob([owned], { type: 'application/octet-stream' })
      return { blob, image: att.sniffImage(bytes), size: bytes.length }
    })
  }

  #resetAttachments(): void {
    if (this.#profileTimer) clearTimeout(this.#profileTimer)
    this.#profileTimer = null
    this.#profileQueue.clear()
    this.#profileAsked.clear()
    this.#profiles = {}
    this.uploads = []
    this.composerRestore = null
    this.#media.clear()
  }
}

/** A file on its way to a room (Chat.uploads). */
export interface Upload {
  readonly id: string
  readonly room: string
  readonly file: File
  readonly caption: string
  readonly replyTo: string | null
  /** Why the last attempt failed, for the user; null while uploading. */
  readonly error: string | null
}

/** The server part of a user id (ids come validated from the server or the session). */
const serverOf = (userId: string): string => userId.slice(userId.indexOf(':') + 1)
// ==== end of attachments and display names ====
