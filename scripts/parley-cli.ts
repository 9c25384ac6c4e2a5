/**
 * A small command-line Parley client on the headless client library.
 *
 *   npm run cli -- register http://127.0.0.1:8008 alice      (password from PARLEY_PASSWORD or stdin)
 *   npm run cli -- login URL alice | rooms | create NAME [@bob:server ...] | dm @bob:server
 *   npm run cli -- join ROOM | send ROOM TEXT... | tail
 * State (session, cursor, outbox) lives in --state FILE (default ~/.parley-cli.json).
 */
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { ParleyClient, type ParleyClientOptions } from '@parley/protocol/client'
import { FileStore } from './cli/file-store.ts'

async function password(): Promise<string> {
  if (process.env.PARLEY_PASSWORD) return process.env.PARLEY_PASSWORD
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8').trim()
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { state: { type: 'string', default: join(homedir(), '.parley-cli.json') } },
  })
  const [command, ...args] = positionals
  const store = new FileStore(values.state!)
  const base: Omit<ParleyClientOptions, 'baseUrl'> = { store, WebSocket: WebSocket as never }
  if (command === 'register' || command === 'login') {
    const [url, user] = args
    if (!url || !user) throw new Error(`usage: ${command} URL USERNAME`)
    const client = await (command === 'register' ? ParleyClient.register : ParleyClient.login)(
      url,
      user,
      await password(),
      base,
    )
    const session = await client.store.getSession()
    console.log(`signed in as ${session!.user_id} (device ${session!.device_id})`)
    return
  }
  const client = await ParleyClient.restore(base)
  if (!client) throw new Error('not signed in: run register or login first')
  switch (command) {
    case 'rooms':
      for (const r of await client.api.listRooms()) {
        console.log(
          `${r.room_id}  ${r.kind.padEnd(9)} ${r.membership.padEnd(6)} unread ${String(r.unread).padStart(3)}  ${r.name}`,
        )
      }
      return
    case 'create':
      console.log(await client.api.createRoom({ kind: 'group', name: args[0] ?? '', invite: args.slice(1) }))
      return
    case 'dm':
      console.log(await client.api.createRoom({ kind: 'dm', invite: args.slice(0, 1) }))
      return
    case 'join':
      await client.api.join(args[0]!)
      return
    case 'send': {
      await client.connect()
      const sent = await client.send(args[0]!, 'm.message', {
        body: args.slice(1).join(' '),
        format: 'markdown',
      })
      console.log(`sent ${sent.event_id} at seq ${sent.seq}`)
      client.close()
      return
    }
    case 'tail':
      client.on('event', ({ event }) => {
        const body = (event.content as { body?: unknown }).body
        console.log(
          `${new Date(event.origin_ts).toISOString()} ${event.room} ${event.sender} ${event.type} ${typeof body === 'string' ? body : ''}`,
        )
      })
      client.on('status', (s) => console.error(`[${s}]`))
      await client.connect()
      await new Promise(() => {})
      return
    default:
      throw new Error('commands: register, login, rooms, create, dm, join, send, tail')
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err)
  process.exit(1)
})
