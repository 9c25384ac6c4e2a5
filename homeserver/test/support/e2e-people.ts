/**
 * People using the headless client with end-to-end encryption against real homeservers: a signed-in
 * {@link ParleyClient} with its {@link EndToEnd}, every `m.encrypted` event it saw and what it made of
 * it, and waits for a message to decrypt (no timers: each new event or room key wakes the waiters).
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

export const PASSWORD = 'correct horse battery'
const BACKOFF = { baseMs: 20, capMs: 200 }

export interface Person {
  readonly client: ParleyClient
  readonly e2e: EndToEnd
  readonly warnings: E2eWarning[]
  /** Decrypted messages per room, in arrival order. */
  readonly seen: Map<string, Array<{ event: ClientEvent; result: Decryption }>>
  /** Resolves once a message with `body` decrypted in `room`. */
  waitFor(room: string, body: string): Promise<void>
  /** Decrypts (and keeps) the room's history as the server serves it (newest 100 events). */
  readHistory(room: string): Promise<void>
}

/** Options of {@link startPerson}. */
export interface PersonOptions {
  /** Sign in to an existing account (a further device) instead of registering. */
  readonly login?: boolean
  readonly e2e?: EndToEndOptions
}

/**
 * Registers (or signs in) `username` at `url`, starts end-to-end encryption and connects. The client
 * is pushed to `clients`, which the test closes.
 */
export async function startPerson(
  url: string,
  username: string,
  clients: ParleyClient[],
  options: PersonOptions = {},
): Promise<Person> {
  const signIn = options.login ? ParleyClient.login : ParleyClient.register
  const client = await signIn(url, username, PASSWORD, {
    store: new MemoryStore(),
    WebSocket: WebSocket as never,
    backoff: BACKOFF,
  })
  clients.push(client)
  const e2e = await EndToEnd.start(client, options.e2e)
  const warnings: E2eWarning[] = []
  e2e.on('warning', (w) => warnings.push(w))
  const seen = new Map<string, Array<{ event: ClientEvent; result: Decryption }>>()
  const waiters: Array<() => void> = []
  const record = (event: ClientEvent) => {
    const list = seen.get(event.room) ?? []
    const at = list.findIndex((x) => x.event.event_id === event.event_id)
    const entry = { event, result: e2e.decrypt(event) }
    if (at >= 0) list[at] = entry
    else list.push(entry)
    seen.set(event.room, list)
    for (const w of waiters.splice(0)) w()
  }
  client.on('event', ({ event }) => {
    if (event.type === 'm.encrypted') record(event)
  })
  // A key that arrives after its message: decrypt what was waiting for it.
  e2e.on('room_key', ({ session_id }) => {
    for (const list of seen.values())
      for (const x of list)
        if (x.result.status === 'waiting' && x.result.sessionId === session_id) record(x.event)
  })
  const waitFor = async (room: string, body: string) => {
    for (;;) {
      if ((seen.get(room) ?? []).some((x) => bodyOf(x) === body)) return
      await new Promise<void>((resolve) => waiters.push(resolve))
    }
  }
  const readHistory = async (room: string) => {
    const page = await client.api.messages(room, { limit: 100 })
    for (const event of [...page.events].reverse()) if (event.type === 'm.encrypted') record(event)
  }
  await client.connect()
  return { client, e2e, warnings, seen, waitFor, readHistory }
}

/** The body of a decrypted message, else undefined. */
export function bodyOf(x: { result: Decryption }): string | undefined {
  return x.result.status === 'decrypted' ? (x.result.content as { body?: string }).body : undefined
}

/** What `p` shows for each message of `room`: its body, or the decryption status. */
export function bodies(p: Person, room: string): Array<string | undefined> {
  return (p.seen.get(room) ?? []).map((x) =>
    x.result.status === 'decrypted' ? (x.result.content as { body?: string }).body : x.result.status,
  )
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
