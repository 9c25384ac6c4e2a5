/**
 * The app's state over the headless client (`@parley/protocol/client`): who is signed in, the room
 * list, each room's timeline, what is still being sent. Svelte 5 runes make it reactive; components
 * read it and call its methods, and never talk to the network themselves.
 */
import {
  ApiError,
  ParleyClient,
  type ClientStore,
  type ConnectionStatus,
  type OutboxEntry,
} from '@parley/protocol/client'
import type { ClientEvent, RoomSummary } from '@parley/protocol/schema'
import type { DesktopApi } from './desktop-api.ts'

/**
 * What the app persists: the client library's store plus what it renders before the network answers
 * (lib/cache/encrypted-store.ts on IndexedDB; an in-memory one where IndexedDB is unavailable).
 */
export interface AppStore extends ClientStore {
  getRooms(): Promise<RoomSummary[] | null>
  putRooms(rooms: readonly RoomSummary[]): Promise<void>
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
  rooms = $state<RoomSummary[]>([])
  selected = $state<string | null>(null)
  /** Events of each room, ordered by seq. */
  timelines = $state<Record<string, ClientEvent[]>>({})
  /** Sends not yet acknowledged (they survive reloads), oldest first. */
  pending = $state<OutboxEntry[]>([])
  /** Sends refused for good, by txn id. */
  failed = $state<Record<string, string>>({})
  /** Who is typing in each room (others only). */
  typing = $state<Record<string, string[]>>({})
  /** Each room's read receipts: user -> seq read up to. */
  receipts = $state<Record<string, Record<string, number>>>({})

  #client: ParleyClient | null = null
  #roomsTimer: ReturnType<typeof setTimeout> | null = null

  constructor(
    private readonly store: AppStore,
    private readonly desktop: DesktopApi,
  ) {}

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
    client.on('receipt', ({ room, user_id, seq }) => {
      this.receipts = { ...this.receipts, [room]: { ...this.receipts[room], [user_id]: seq } }
    })
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
  }

  #onEvent(event: ClientEvent, live: boolean): void {
    const list = this.timelines[event.room] ?? []
    if (!list.some((e) => e.event_id === event.event_id)) {
      const next = [...list, event].sort((a, b) => a.seq - b.seq)
      this.timelines = { ...this.timelines, [event.room]: next }
      this.#timelineChanged(event.room)
    }
    if (event.type === 'm.member' || live) this.#scheduleRooms()
    // Reading the room on screen as it happens: tell the others (their "seen by").
    if (live && event.room === this.selected && event.sender !== this.me && document.hasFocus())
      this.#client?.receipt(event.room, event.event_id)
    if (live && event.type === 'm.message' && event.sender !== this.me && event.room !== this.selected) {
      const room = this.rooms.find((r) => r.room_id === event.room)
      if (room?.kind === 'dm') this.desktop.notify(event.sender, String(event.content.body ?? ''))
    }
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
    if (!this.#client) return
    try {
      this.rooms = await this.#client.api.listRooms()
      this.desktop.setBadge(this.rooms.reduce((n, r) => n + r.unread, 0))
      this.#cacheWrite(this.store.putRooms($state.snapshot(this.rooms)))
    } catch {
      // Offline: the list stays as it was and refreshes with the next event.
    }
  }

  async #refreshPending(): Promise<void> {
    this.pending = await this.store.listOutbox()
  }

  select(room: string): void {
    this.selected = room
    if (!this.timelines[room]) void this.#loadCachedTimeline(room)
    const last = this.timelines[room]?.at(-1)
    if (last) this.#client?.receipt(room, last.event_id)
    this.#scheduleRooms()
    void this.#loadHistory(room)
  }

  /**
   * The latest page of a room's history. Sync brings what happened while we were members; events from
   * before we joined (a DM's first message, sent while we were invited) come from history.
   */
  async #loadHistory(room: string): Promise<void> {
    if (!this.#client) return
    try {
      const page = await this.#client.api.messages(room, { limit: 50 })
      const known = new Set((this.timelines[room] ?? []).map((e) => e.event_id))
      const fresh = page.events.filter((e) => !known.has(e.event_id))
      if (fresh.length === 0) return
      const next = [...(this.timelines[room] ?? []), ...fresh].sort((a, b) => a.seq - b.seq)
      this.timelines = { ...this.timelines, [room]: next }
      this.#timelineChanged(room)
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
    const sending = this.#client.send(room, type, content)
    await this.#refreshPending()
    await sending.catch(() => {}) // failures arrive as send_failed
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

  async startDm(userId: string): Promise<string> {
    const room = await this.#client!.api.createRoom({ kind: 'dm', invite: [userId] })
    await this.refreshRooms()
    this.select(room)
    return room
  }

  async createGroup(name: string, invite: string[]): Promise<string> {
    const room = await this.#client!.api.createRoom({ kind: 'group', name, invite })
    await this.refreshRooms()
    this.select(room)
    return room
  }

  async invite(room: string, userId: string): Promise<void> {
    await this.#client!.api.invite(room, userId)
  }

  async leave(room: string): Promise<void> {
    await this.#client!.api.leave(room)
    if (this.selected === room) this.selected = null
    await this.refreshRooms()
  }

  async kick(room: string, userId: string): Promise<void> {
    await this.#client!.api.kick(room, userId)
  }

  async members(room: string) {
    return this.#client!.api.members(room)
  }

  async join(room: string): Promise<void> {
    await this.#client!.api.join(room)
    await this.refreshRooms()
    this.select(room)
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
        if (events) this.#cacheWrite(this.store.putTimeline(r, $state.snapshot(events).slice(-100)))
      }
      this.cacheSaved = this.#cacheWrites === 0
    }, 1000)
  }

  /** Shows a room's cached events while its history loads (events already in memory win). */
  async #loadCachedTimeline(room: string): Promise<void> {
    const cached = await this.store.getTimeline(room)
    if (!cached || cached.length === 0) return
    const known = new Set((this.timelines[room] ?? []).map((e) => e.event_id))
    const fresh = cached.filter((e) => !known.has(e.event_id))
    if (fresh.length === 0) return
    const next = [...(this.timelines[room] ?? []), ...fresh].sort((a, b) => a.seq - b.seq)
    this.timelines = { ...this.timelines, [room]: next }
  }

  async signOut(): Promise<void> {
    const client = this.#client
    this.#client = null
    // Nothing of this account may reach the cache after it is cleared.
    if (this.#timelineTimer) clearTimeout(this.#timelineTimer)
    this.#timelineTimer = null
    this.#timelinesToCache.clear()
    if (client) await client.logout().catch(() => client.close())
    await this.store.clear()
    this.me = null
    this.rooms = []
    this.timelines = {}
    this.pending = []
    this.selected = null
  }
}
