/**
 * A user of the real client library in homeserver tests: a `ParleyClient` with `EndToEnd` started on
 * it, which decrypts every `m.encrypted` event it receives and records the result, and re-decrypts
 * events that were waiting for their room key when it arrives. Tests wait on what the user *sees*.
 */
import WebSocket from 'ws'
import {
  EndToEnd,
  MemoryStore,
  ParleyClient,
  type Decryption,
  type E2eWarning,
  type EndToEndOptions,
} from '@parley/protocol/client'
import type { ClientEvent } from '@parley/protocol/schema'

const BACKOFF = { baseMs: 20, capMs: 200 }
/** Every test person's password. */
export const PASSWORD = 'correct horse battery'

/**
 * A {@link MemoryStore} whose items can be listed: what a desktop would write to disk, for tests that
 * look for secrets in it (or their absence).
 */
export class InspectableStore extends MemoryStore {
  readonly #items = new Map<string, string>()

  override async setItem(key: string, value: string): Promise<void> {
    this.#items.set(key, value)
    await super.setItem(key, value)
  }
  override async removeItem(key: string): Promise<void> {
    this.#items.delete(key)
    await super.removeItem(key)
  }
  override async clear(): Promise<void> {
    this.#items.clear()
    await super.clear()
  }
  /** Every stored item now, by key. */
  items(): ReadonlyMap<string, string> {
    return new Map(this.#items)
  }
}

/**
 * The secret keys an E2E client keeps (device, identity and prekey private keys, group chain and
 * signing keys), base64url as stored: none may ever reach a server (E2E.md section 3 row 10).
 */
export function storedSecrets(store: InspectableStore): string[] {
  const out = new Set<string>()
  const walk = (value: unknown, key: string) => {
    if (typeof value === 'string') {
      if (['secret', 'chain_key', 'signing_key'].includes(key)) out.add(value)
    } else if (Array.isArray(value)) value.forEach((v) => walk(v, key))
    else if (typeof value === 'object' && value !== null)
      for (const [k, v] of Object.entries(value)) walk(v, k === 'skipped' ? 'chain_key' : k)
  }
  for (const [key, raw] of store.items()) if (key.startsWith('e2e:')) walk(JSON.parse(raw), '')
  return [...out]
}

export interface Seen {
  readonly event: ClientEvent
  readonly result: Decryption
}

export interface Person {
  readonly client: ParleyClient
  readonly store: InspectableStore
  readonly e2e: EndToEnd
  readonly warnings: E2eWarning[]
  /** Every encrypted event received per room, in arrival order, with what decrypting it gave. */
  readonly seen: Map<string, Seen[]>
  /** Resolves once a message with `body` decrypted in `room`. */
  waitFor(room: string, body: string): Promise<void>
  /** Resolves once `pred` holds for what the person saw (re-checked on every event and key). */
  waitUntil(pred: () => boolean): Promise<void>
  /** Decrypts (and keeps) the room's history as the server serves it (newest 100 events). */
  readHistory(room: string): Promise<void>
}

export interface PersonOptions {
  /** Options of `EndToEnd.start` (a fake clock for prekey rotation, a passphrase KDF). */
  readonly e2e?: EndToEndOptions
  /** Sign in, start E2E, but do not connect yet. */
  readonly connect?: boolean
  /** Sign in to an existing account (a further device) instead of registering. */
  readonly login?: boolean
}

/** Registers `username` at `baseUrl` (a homeserver or a proxy in front of it) and starts E2E. */
export async function e2ePerson(
  baseUrl: string,
  username: string,
  options: PersonOptions = {},
): Promise<Person> {
  const store = new InspectableStore()
  const signIn = options.login ? ParleyClient.login : ParleyClient.register
  const client = await signIn(baseUrl, username, PASSWORD, {
    store,
    WebSocket: WebSocket as never,
    backoff: BACKOFF,
  })
  const e2e = await EndToEnd.start(client, options.e2e)
  const warnings: E2eWarning[] = []
  const waiters: Array<() => void> = []
  const wake = () => {
    for (const w of waiters.splice(0)) w()
  }
  e2e.on('warning', (w) => {
    warnings.push(w)
    wake()
  })
  const seen = new Map<string, Seen[]>()
  const record = (event: ClientEvent) => {
    const list = seen.get(event.room) ?? []
    const at = list.findIndex((x) => x.event.event_id === event.event_id)
    const entry = { event, result: e2e.decrypt(event) }
    if (at >= 0) list[at] = entry
    else list.push(entry)
    seen.set(event.room, list)
    wake()
  }
  client.on('event', ({ event }) => {
    if (event.type === 'm.encrypted') record(event)
  })
  // A key that arrives after its message: decrypt what was waiting for it.
  e2e.on('room_key', ({ session_id }) => {
    for (const list of seen.values())
      for (const x of list)
        if (x.result.status === 'waiting' && x.result.sessionId === session_id) record(x.event)
    wake()
  })
  const waitUntil = async (pred: () => boolean) => {
    while (!pred()) await new Promise<void>((resolve) => waiters.push(resolve))
  }
  const waitFor = (room: string, body: string) =>
    waitUntil(() => (seen.get(room) ?? []).some((x) => bodyOf(x) === body))
  const readHistory = async (room: string) => {
    const page = await client.api.messages(room, { limit: 100 })
    for (const event of [...page.events].reverse()) if (event.type === 'm.encrypted') record(event)
  }
  if (options.connect !== false) await client.connect()
  return { client, store, e2e, warnings, seen, waitFor, waitUntil, readHistory }
}

/** The body of a decrypted message, if it decrypted. */
export function bodyOf(x: { result: Decryption }): string | undefined {
  return x.result.status === 'decrypted' ? (x.result.content as { body?: string }).body : undefined
}

/** What `p` shows for each encrypted event of `room`: the body, or the decryption status. */
export function bodies(p: Person, room: string): Array<string | undefined> {
  return (p.seen.get(room) ?? []).map((x) => bodyOf(x) ?? x.result.status)
}

/** Resolves once `room` is in the user's room list (its invitation arrived, over federation too). */
export async function waitForRoom(client: ParleyClient, room: string): Promise<void> {
  // Listening before asking: the invitation's event cannot slip between the two.
  let off = () => {}
  const invited = new Promise<void>((resolve) => {
    off = client.on('event', ({ event }) => {
      if (event.room === room) resolve()
    })
  })
  try {
    if ((await client.api.listRooms()).some((r) => r.room_id === room)) return
    await invited
  } finally {
    off()
  }
}

/** Creates an encrypted room of `owner` with `others` invited and joined (signed membership, E2E.md 2.3). */
export async function encryptedRoom(
  owner: Pick<Person, 'client' | 'e2e'>,
  others: ReadonlyArray<Pick<Person, 'client' | 'e2e'>>,
  kind: 'dm' | 'group' = 'group',
): Promise<string> {
  const invite = others.map((p) => p.e2e.userId)
  const room = await owner.e2e.createRoom(
    kind === 'dm'
      ? { kind: 'dm', invite, encrypted: true }
      : { kind: 'group', name: 'e2e test', invite, encrypted: true },
  )
  for (const p of others) {
    await waitForRoom(p.client, room)
    await p.e2e.join(room)
  }
  return room
}

/** The session id of the message with `body` as `p` received it. */
export function sessionOf(p: Person, room: string, body: string): string {
  const entry = (p.seen.get(room) ?? []).find((x) => bodyOf(x) === body)!
  return (entry.event.content as { session_id: string }).session_id
}
