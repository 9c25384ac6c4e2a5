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
    private readonly store: ClientStore,
    private readonly desktop: DesktopApi,
  ) {}

  /** Picks up a stored session, if any. */
  async resume(): Promise<boolean> {
    const session = await this.store.getSession()
    if (!session) return false
    await this.#start(new ParleyClient({ baseUrl: session.base_url, store: this.store, WebSocket }))
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
  }

  #onEvent(event: ClientEvent, live: boolean): void {
    const list = this.timelines[event.room] ?? []
    if (!list.some((e) => e.event_id === event.event_id)) {
      const next = [...list, event].sort((a, b) => a.seq - b.seq)
      this.timelines = { ...this.timelines, [event.room]: next }
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
    } catch {
      // Offline: the list stays as it was and refreshes with the next event.
    }
  }

  async #refreshPending(): Promise<void> {
    this.pending = await this.store.listOutbox()
  }

  select(room: string): void {
    this.selected = room
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

  async signOut(): Promise<void> {
    const client = this.#client
    this.#client = null
    if (client) await client.logout().catch(() => client.close())
    await this.store.clear()
    this.me = null
    this.rooms = []
    this.timelines = {}
    this.pending = []
    this.selected = null
  }
}
