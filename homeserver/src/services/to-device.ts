/**
 * To-device messages (DESIGN.md section 5): direct, durable messages from one device to others,
 * outside any room — how E2E keys are shared. Each recipient device has an inbox; a message stays in
 * it until the device acknowledges it (`to_device_ack`), so an offline device gets it when it comes
 * back, once. Messages for users of other servers go through the federation port.
 */
import { canonicalJson, ParleyError, parseUserId, pooledRandomBytes, toBase64Url } from '@parley/protocol'
import type { ToDeviceFrame } from '@parley/protocol/schema'
import type { Clock } from '../clock.ts'
import type { Repos } from '../db/repos/index.ts'
import type { Hub, LiveConnection } from './hub.ts'
import type { Sequencer } from './sequencer.ts'
import type { Session } from './accounts.ts'

/** Messages pushed to a device ahead of its acknowledgement. */
const IN_FLIGHT = 100
/** Messages an inbox holds at most: a sender beyond it is refused (a full inbox is not a memory sink). */
export const MAX_INBOX = 10_000

/** One to-device message as servers relay it. */
export interface ToDeviceMessage {
  readonly messageId: string
  readonly sender: string
  readonly senderDevice: string
  readonly eventType: string
  /** user -> device id (or `*`) -> content. */
  readonly messages: Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, unknown>>>>>>
}

/** Carries messages for users of other servers (implemented by federation). */
export interface ToDeviceRelay {
  /** Whether we may reach that server at all (federation policy). */
  canReach(server: string): boolean
  /** Stores the message for `server` durably; runs inside the sending transaction. */
  queue(server: string, message: ToDeviceMessage): void
  /** Sends what is stored for `server` (after the transaction committed). */
  flush(server: string): void
}

export class ToDeviceService {
  relay: ToDeviceRelay | null = null
  /** Per connection: the highest id pushed and the highest it acknowledged. */
  readonly #windows = new WeakMap<LiveConnection, { pushed: number; acked: number }>()

  constructor(
    private readonly repos: Repos,
    private readonly sequencer: Sequencer,
    private readonly hub: Hub,
    private readonly serverName: string,
    private readonly clock: Clock,
    private readonly maxContentBytes: number,
  ) {}

  /** Stores a device's `to_device` frame for every recipient; resolves once durable. */
  async send(session: Session, frame: ToDeviceFrame): Promise<void> {
    const local: Array<[string, string, string]> = [] // [user, device or *, content]
    const remote = new Map<string, Record<string, Record<string, Record<string, unknown>>>>()
    for (const [user, devices] of Object.entries(frame.messages)) {
      const server = parseUserId(user)!.server
      for (const [device, content] of Object.entries(devices)) {
        const json = canonicalJson(content as never)
        if (Buffer.byteLength(json) > this.maxContentBytes)
          throw new ParleyError('P_TOO_LARGE', `content is over ${this.maxContentBytes} bytes`)
        if (server === this.serverName) {
          local.push([user, device, json])
          continue
        }
        if (!this.relay?.canReach(server))
          throw new ParleyError('P_FORBIDDEN', `this server does not federate with ${server}`)
        let forServer = remote.get(server)
        if (!forServer) remote.set(server, (forServer = {}))
        ;(forServer[user] ??= {})[device] = content
      }
    }
    const now = this.clock.now()
    const delivered = await this.sequencer.run(() => {
      if (!this.repos.toDevice.claimTxn(session.deviceId, frame.txn_id, now)) return [] // a retry
      const touched = this.#store(local, session.userId, session.deviceId, frame.event_type, now)
      for (const [server, messages] of remote) {
        this.relay!.queue(server, {
          messageId: toBase64Url(pooledRandomBytes(16)),
          sender: session.userId,
          senderDevice: session.deviceId,
          eventType: frame.event_type,
          messages,
        })
      }
      return touched
    })
    this.#notify(delivered)
    for (const server of remote.keys()) this.relay!.flush(server)
  }

  /** A message another server relayed for our users; resolves once durable (then it may be acknowledged). */
  async accept(origin: string, message: ToDeviceMessage): Promise<void> {
    const entries: Array<[string, string, string]> = []
    for (const [user, devices] of Object.entries(message.messages)) {
      if (parseUserId(user)?.server !== this.serverName) continue
      for (const [device, content] of Object.entries(devices))
        entries.push([user, device, canonicalJson(content as never)])
    }
    const now = this.clock.now()
    const touched = await this.sequencer.run(() => {
      if (!this.repos.toDevice.markSeen(origin, message.messageId, now)) return [] // a re-send
      return this.#store(entries, message.sender, message.senderDevice, message.eventType, now, false)
    })
    this.#notify(touched)
  }

  /** Inside a transaction: one inbox row per recipient device; returns the devices that got one. */
  #store(
    entries: ReadonlyArray<readonly [string, string, string]>,
    sender: string,
    senderDevice: string,
    eventType: string,
    now: number,
    strict = true,
  ): Array<[string, string]> {
    const touched: Array<[string, string]> = []
    for (const [user, device, content] of entries) {
      const devices = this.repos.toDevice.devicesOf(user)
      // Unknown users and devices are skipped, like a mail to nobody: senders cannot probe which exist.
      for (const d of device === '*' ? devices : devices.filter((x) => x === device)) {
        if (this.repos.toDevice.count(d) >= MAX_INBOX) {
          if (strict)
            throw new ParleyError('P_LIMIT_EXCEEDED', 'a recipient device has too many undelivered messages')
          continue
        }
        this.repos.toDevice.insert(d, sender, senderDevice, eventType, content, now)
        touched.push([user, d])
      }
    }
    return touched
  }

  #notify(touched: ReadonlyArray<readonly [string, string]>): void {
    const seen = new Set<string>()
    for (const [user, device] of touched) {
      if (seen.has(device)) continue
      seen.add(device)
      for (const conn of this.hub.connectionsOf(user))
        if (conn.deviceId === device && conn.live) this.deliver(conn)
    }
  }

  /**
   * Pushes the connection's next batch of messages, if everything pushed before was acknowledged: one
   * batch in flight per connection, so a device that does not acknowledge gets no more than that.
   */
  deliver(conn: LiveConnection): void {
    const state = this.#windows.get(conn) ?? { pushed: 0, acked: 0 }
    this.#windows.set(conn, state)
    if (state.pushed > state.acked) return
    const rows = this.repos.toDevice.pending(conn.deviceId, state.pushed, IN_FLIGHT)
    for (const row of rows) {
      conn.send(
        `{"type":"to_device","id":${row.id},"sender":${JSON.stringify(row.sender)},"sender_device":${JSON.stringify(
          row.sender_device,
        )},"event_type":${JSON.stringify(row.event_type)},"content":${row.content}}`,
      )
    }
    if (rows.length > 0) state.pushed = rows.at(-1)!.id
  }

  /** The device stored everything up to `upto`: delete it and push what follows. */
  ack(session: Session, upto: number): void {
    this.repos.toDevice.ack(session.deviceId, upto)
    for (const conn of this.hub.connectionsOf(session.userId)) {
      if (conn.deviceId !== session.deviceId) continue
      const state = this.#windows.get(conn)
      if (state) state.acked = Math.max(state.acked, Math.min(upto, state.pushed))
      if (conn.live) this.deliver(conn)
    }
  }
}
