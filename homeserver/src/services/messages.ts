/** Client sends: validate content for its type and size, rate-limit per device, sequence. */
import { canonicalJson, ParleyError, parseRoomId, type JsonObject } from '@parley/protocol'
import {
  CONTENT_SCHEMAS,
  ENCRYPTED_ROOM_TYPES,
  SENDABLE_TYPES,
  describeZodError,
  type SendFrame,
} from '@parley/protocol/schema'
import type { Clock } from '../clock.ts'
import type { Session } from './accounts.ts'
import { RateLimiter } from './rate-limit.ts'
import type { RemoteRooms } from './remote-rooms.ts'
import { encryptedRoom } from './room-rules.ts'
import type { CommittedEvent, Sequencer } from './sequencer.ts'

const SENDABLE: ReadonlySet<string> = new Set(SENDABLE_TYPES)

/** What a `sent` tells the client. */
export interface SendResult {
  readonly event_id: string
  readonly seq: number
}

export interface MessagesOptions {
  readonly maxContentBytes: number
  readonly messagesPerSecond: number
  readonly messageBurst: number
}

export class MessagesService {
  readonly #limiter: RateLimiter

  constructor(
    private readonly sequencer: Sequencer,
    private readonly remote: RemoteRooms,
    private readonly serverName: string,
    clock: Clock,
    private readonly options: MessagesOptions,
    /** Whether the room is end-to-end encrypted here and the user a joined member (else: unknown). */
    private readonly encryptedFor: (room: string, userId: string) => boolean = () => false,
  ) {
    this.#limiter = new RateLimiter(clock, options.messageBurst, options.messagesPerSecond)
  }

  /** Throws P_LIMIT_EXCEEDED when the device is over its message rate. */
  checkRate(deviceId: string): void {
    const wait = this.#limiter.take(deviceId)
    if (wait > 0) throw new ParleyError('P_LIMIT_EXCEEDED', 'sending too fast', wait)
  }

  /** Validates and sequences a client `send` to a room we own; resolves after commit. */
  send(session: Session, frame: SendFrame): Promise<CommittedEvent> {
    return new Promise((resolve, reject) =>
      this.sendWith(session, frame, resolve as (r: SendResult) => void, reject, () =>
        reject(new ParleyError('P_BAD_REQUEST', 'a remote room: use the WebSocket')),
      ),
    )
  }

  /**
   * Validates and sequences a client `send`. Validation errors throw; the callbacks run right after
   * the commit, inside the delivery bracket (see Sequencer.submitWith). A send to a room another
   * server owns is queued for it instead: `pending` once it is durably queued here, and `sent` reaches
   * the device when the owner has sequenced it.
   */
  sendWith(
    session: Session,
    frame: SendFrame,
    resolve: (result: SendResult) => void,
    reject: (err: unknown) => void,
    pending: (eventId: string) => void,
  ): void {
    if (!SENDABLE.has(frame.event_type)) {
      throw new ParleyError('P_BAD_REQUEST', `event_type must be one of ${SENDABLE_TYPES.join(', ')}`)
    }
    const schema = CONTENT_SCHEMAS[frame.event_type as (typeof SENDABLE_TYPES)[number]]
    // The frame was depth-checked when it was parsed; only the per-type content schema is left.
    const parsed = schema.safeParse(frame.content)
    if (!parsed.success) throw new ParleyError('P_BAD_REQUEST', `content: ${describeZodError(parsed.error)}`)
    const content = parsed.data as JsonObject
    // The server cannot read an encrypted event, but it can hold its sender to their own name.
    if (
      frame.event_type === 'm.encrypted' &&
      (content.sender_user !== session.userId || content.sender_dev !== session.deviceId)
    )
      throw new ParleyError('P_BAD_REQUEST', 'sender_user and sender_dev must name you and this device')
    // Answered here for rooms others own too (the owner checks again, authoritatively, when it
    // sequences); only for members, so the answer says nothing about rooms one is not in.
    if (!ENCRYPTED_ROOM_TYPES.has(frame.event_type) && this.encryptedFor(frame.room, session.userId))
      throw encryptedRoom(frame.event_type)
    let contentJson: string
    try {
      contentJson = canonicalJson(content)
    } catch {
      throw new ParleyError('P_BAD_REQUEST', 'content has no canonical JSON form (lone surrogate?)')
    }
    // Canonical JSON of ASCII-heavy text: UTF-16 length is a cheap bound; measure bytes only near the limit.
    if (
      contentJson.length * 3 > this.options.maxContentBytes &&
      new TextEncoder().encode(contentJson).length > this.options.maxContentBytes
    ) {
      throw new ParleyError('P_TOO_LARGE', `content is over ${this.options.maxContentBytes} bytes`)
    }
    const draft = {
      room: frame.room,
      type: frame.event_type,
      sender: session.userId,
      content,
      contentJson,
      txn: { deviceId: session.deviceId, txnId: frame.txn_id },
    }
    if (parseRoomId(frame.room)?.server !== this.serverName) {
      return this.remote.send(draft, { pending, sent: resolve, reject })
    }
    this.sequencer.submitWith(draft, resolve, reject)
  }
}
