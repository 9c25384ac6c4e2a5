/**
 * Set-up of the desktop scenarios (desktop.ts), in the orchestrator process before anything is
 * measured: a user in N group rooms with a second member and M messages each, through the real server
 * with the headless client (`@parley/protocol/client`: REST for accounts and rooms, its WebSocket and
 * outbox for the messages). Each room's last message carries a marker the bench waits for on screen.
 */
import WebSocket from 'ws'
import { HttpApi, MemoryStore, ParleyClient, type Session } from '@parley/protocol/client'
import { pool } from './client.ts'

export const DESKTOP_PASSWORD = 'bench-desktop-password'

export interface SeededRoom {
  readonly id: string
  /** Unique, and no name is a prefix of another. */
  readonly name: string
  /** Text only the room's newest message contains. */
  readonly marker: string
}

export interface Seeded {
  /** Signs in to the web client with {@link DESKTOP_PASSWORD}. */
  readonly username: string
  readonly rooms: readonly SeededRoom[]
  readonly messages: number
}

/** Message bodies of the usual shapes: plain sentences, some markdown, a link, inline code. */
function body(room: number, i: number): string {
  const words = 'the quick brown fox jumps over the lazy dog while the build runs again'.split(' ')
  const sentence = Array.from(
    { length: 8 + ((room * 7 + i * 13) % 24) },
    (_, k) => words[(i + k) % words.length],
  )
  switch (i % 6) {
    case 0:
      return `**Update ${i}**: ${sentence.join(' ')}.`
    case 1:
      return `${sentence.join(' ')}, see https://example.org/issues/${1000 + i} for details.`
    case 2:
      return `Try \`npm run bench -- --only desktop\` with _${sentence.slice(0, 4).join(' ')}_.`
    case 3:
      return `- ${sentence.slice(0, 5).join(' ')}\n- ${sentence.slice(5).join(' ')}`
    default:
      return `${sentence.join(' ')}.`
  }
}

async function connected(url: string, session: Session): Promise<ParleyClient> {
  const store = new MemoryStore()
  await store.setSession(session)
  const client = new ParleyClient({ baseUrl: url, store, WebSocket: WebSocket as never, maxInFlight: 100 })
  await client.connect()
  return client
}

/**
 * `rooms` group rooms named `<prefix> <n>` (zero-padded) owned by `<tag>-me`, each with `<tag>-peer`
 * joined and `messagesPerRoom` messages from the two in turn, the last one the owner's with the marker.
 */
export async function seedRooms(
  url: string,
  p: { tag: string; prefix: string; rooms: number; messagesPerRoom: number },
): Promise<Seeded> {
  const anonymous = () => new HttpApi({ baseUrl: url, store: new MemoryStore() })
  const me = await anonymous().register(`${p.tag}-me`, DESKTOP_PASSWORD)
  const peer = await anonymous().register(`${p.tag}-peer`, DESKTOP_PASSWORD)
  const api = async (s: Session) => {
    const store = new MemoryStore()
    await store.setSession(s)
    return new HttpApi({ baseUrl: url, store })
  }
  const [meApi, peerApi] = [await api(me), await api(peer)]
  const digits = String(p.rooms).length
  const indexes = Array.from({ length: p.rooms }, (_, i) => i)
  const rooms = await pool(indexes, 8, async (i): Promise<SeededRoom> => {
    const name = `${p.prefix} ${String(i + 1).padStart(digits, '0')}`
    const id = await meApi.createRoom({ kind: 'group', name, invite: [peer.user_id] })
    await peerApi.join(id)
    return { id, name, marker: `newest-of-${p.tag}-${i + 1}-end` }
  })
  const clients = [await connected(url, me), await connected(url, peer)]
  try {
    const sends: Array<Promise<unknown>> = []
    for (let m = 0; m < p.messagesPerRoom - 1; m++)
      for (const [r, room] of rooms.entries())
        sends.push(clients[m % 2]!.send(room.id, 'm.message', { body: body(r, m), format: 'markdown' }))
    await Promise.all(sends)
    await Promise.all(
      rooms.map((room) =>
        clients[0]!.send(room.id, 'm.message', { body: `Last one: ${room.marker}`, format: 'markdown' }),
      ),
    )
  } finally {
    for (const c of clients) c.close()
  }
  return { username: `${p.tag}-me`, rooms, messages: p.rooms * p.messagesPerRoom }
}
