/**
 * To-device messages across servers (docs/federation.md, "To-device"): stored in `to_device_outbox`
 * in the sender's transaction, sent as `to_device` frames (all of them again on every new link),
 * deleted when the recipients' server answers `to_device_ack` (after its commit). The receiver takes
 * messages only from the sender's own server and only for its own users, once per message id.
 */
import type { JsonObject } from '@parley/protocol'
import { parseUserId } from '@parley/protocol'
import { ToDeviceRelayFrame, type ToDeviceAckRelayFrame } from '@parley/protocol/federation'
import type { Clock } from '../clock.ts'
import type { Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'
import type { ToDeviceMessage, ToDeviceRelay, ToDeviceService } from '../services/to-device.ts'
import type { LinkManager } from './link-manager.ts'

/** Messages sent and not acknowledged per peer. */
const WINDOW = 200

export interface ToDeviceRelayOptions {
  readonly serverName: string
  readonly repos: Repos
  readonly links: LinkManager
  readonly toDevice: ToDeviceService
  readonly clock: Clock
  readonly log: Logger
  readonly fault: (peer: string, code: string, detail: string) => void
}

export class FederatedToDevice implements ToDeviceRelay {
  readonly #o: ToDeviceRelayOptions
  /** Per peer with a link: highest outbox id sent on it, and how many are unanswered. */
  readonly #flights = new Map<string, { afterId: number; count: number }>()

  constructor(options: ToDeviceRelayOptions) {
    this.#o = options
    options.toDevice.relay = this
  }

  canReach(server: string): boolean {
    return this.#o.links.isAllowed(server)
  }

  queue(server: string, message: ToDeviceMessage): void {
    const frame = {
      type: 'to_device',
      message_id: message.messageId,
      sender: message.sender,
      sender_device: message.senderDevice,
      event_type: message.eventType,
      messages: message.messages,
    }
    this.#o.repos.toDevice.outboxInsert(server, message.messageId, JSON.stringify(frame), this.#o.clock.now())
  }

  /** Peers we owe messages (dialled at start-up). */
  peersOwed(): string[] {
    return this.#o.repos.toDevice.outboxPeers()
  }

  flush(server: string): void {
    const { links, repos } = this.#o
    if (!links.linkTo(server)) {
      links.ensureLink(server).catch(() => {}) // its `link up` flushes
      return
    }
    const flight = this.#flights.get(server)
    if (!flight) return
    while (flight.count < WINDOW) {
      const rows = repos.toDevice.outboxFor(server, flight.afterId, WINDOW - flight.count)
      if (rows.length === 0) return
      for (const row of rows) {
        const frame = storedFrame(row.frame)
        if (!frame) {
          // Unreadable (a damaged row): it can never be sent; drop it rather than retry forever.
          this.#o.log.error(
            { server, message_id: row.message_id },
            'to-device outbox row unreadable: dropped',
          )
          repos.toDevice.outboxDelete(server, row.message_id)
          continue
        }
        if (!links.send(server, frame as unknown as JsonObject)) return
        flight.afterId = row.id
        flight.count++
      }
    }
  }

  linkUp(peer: string): void {
    this.#flights.set(peer, { afterId: 0, count: 0 })
    this.flush(peer)
  }

  linkDown(peer: string): void {
    this.#flights.delete(peer)
  }

  onMessage(peer: string, frame: ToDeviceRelayFrame): void {
    // A server speaks for its own users only, and to ours only (FED-2).
    if (parseUserId(frame.sender)?.server !== peer)
      return this.#o.fault(peer, 'spoofed_sender', `to-device from ${frame.sender}`)
    if (Object.keys(frame.messages).some((u) => parseUserId(u)?.server !== this.#o.serverName))
      return this.#o.fault(peer, 'not_our_user', `to-device ${frame.message_id}`)
    this.#o.toDevice
      .accept(peer, {
        messageId: frame.message_id,
        sender: frame.sender,
        senderDevice: frame.sender_device,
        eventType: frame.event_type,
        messages: frame.messages,
      })
      .then(
        () => this.#o.links.send(peer, { type: 'to_device_ack', message_id: frame.message_id }),
        (err: unknown) =>
          this.#o.log.error({ peer, err: String(err) }, 'storing a relayed to-device message failed'),
      )
  }

  onAck(peer: string, frame: ToDeviceAckRelayFrame): void {
    if (!this.#o.repos.toDevice.outboxDelete(peer, frame.message_id)) return // a repeated answer
    const flight = this.#flights.get(peer)
    if (flight && flight.count > 0) flight.count--
    this.flush(peer)
  }
}

/** A stored to-device frame, read back through its schema (a stored row is input too). */
function storedFrame(text: string): ToDeviceRelayFrame | null {
  try {
    const parsed = ToDeviceRelayFrame.safeParse(JSON.parse(text))
    return parsed.success ? parsed.data : null
  } catch {
    return null
  }
}
