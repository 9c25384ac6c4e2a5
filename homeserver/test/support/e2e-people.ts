/**
 * People of E2E tests: a registered user with a real client library (`ParleyClient` + `EndToEnd`)
 * against a running homeserver, recording what each encrypted event decrypted to and every warning.
 */
import WebSocket from 'ws'
import {
  EndToEnd,
  MemoryStore,
  ParleyClient,
  type Decryption,
  type E2eWarning,
} from '@parley/protocol/client'
import type { ClientEvent } from '@parley/protocol/schema'

const BACKOFF = { baseMs: 20, capMs: 200 }

export interface Person {
  readonly client: ParleyClient
  readonly e2e: EndToEnd
  readonly warnings: E2eWarning[]
  /** Decrypted messages per room, in arrival order. */
  readonly seen: Map<string, Array<{ event: ClientEvent; result: Decryption }>>
  waitFor(room: string, body: string): Promise<void>
}

/**
 * Registers `username` on the server at `url`, starts end-to-end encryption and (unless `connect` is
 * false) connects. The client is pushed to `clients` so the test closes it.
 */
export async function person(
  url: string,
  username: string,
  clients: ParleyClient[],
  options: { connect?: boolean } = {},
): Promise<Person> {
  const client = await ParleyClient.register(url, username, 'correct horse battery', {
    store: new MemoryStore(),
    WebSocket: WebSocket as never,
    backoff: BACKOFF,
  })
  clients.push(client)
  const e2e = await EndToEnd.start(client)
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
  if (options.connect !== false) await client.connect()
  return { client, e2e, warnings, seen, waitFor }
}

/** The decrypted body of a recorded event, if it decrypted to one. */
export function bodyOf(x: { result: Decryption }): string | undefined {
  return x.result.status === 'decrypted' ? (x.result.content as { body?: string }).body : undefined
}

/** What `p` made of each encrypted event of `room`: the body, or the decryption status. */
export function bodies(p: Person, room: string): Array<string | undefined> {
  return (p.seen.get(room) ?? []).map((x) => bodyOf(x) ?? x.result.status)
}

/** The session id of the message with `body` as `p` received it. */
export function sessionOf(p: Person, room: string, body: string): string {
  const entry = (p.seen.get(room) ?? []).find((x) => bodyOf(x) === body)!
  return (entry.event.content as { session_id: string }).session_id
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
