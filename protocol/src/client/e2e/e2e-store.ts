/**
 * What end-to-end encryption keeps on the device, as JSON items of the client's {@link ClientStore}
 * (the desktop app's store seals every item; a headless client's MemoryStore keeps them in memory).
 * Every item read back is validated with its schema: a damaged item counts as absent.
 *
 * Items: `e2e:device` (this device's keys and prekeys), `e2e:peers` (trusted identities and device
 * lists, TOFU), `e2e:out:<room>` (the outbound group session of a room), `e2e:in:<session>` (each
 * inbound group session) with the index `e2e:in-index`, and `e2e:seen` (which event carried each
 * (session, index): replays under a new event id are flagged).
 */
import { z } from 'zod'
import { SignedDeviceList, SignedPrekey } from '../../schema/keys.ts'
import type { ClientStore } from '../store.ts'

const B64 = z.string().regex(/^[A-Za-z0-9_-]*$/)

/** This device's key material. Secret keys are base64url. */
export const DeviceRecord = z.object({
  user_id: z.string(),
  device_id: z.string(),
  /** The user identity key pair: only on the device that created it (E2E.md section 2.1). */
  uik: z.object({ public: B64, secret: B64 }).nullable(),
  dsk: z.object({ public: B64, secret: B64 }),
  dxk: z.object({ public: B64, secret: B64 }),
  added_ts: z.number().int(),
  prekeys: z.array(
    z.object({
      signed: SignedPrekey,
      secret: B64,
      retired_ts: z.number().int().nullable(),
      seen: z.array(z.string()),
    }),
  ),
  /** The newest device list this device published or accepted for its own user. */
  device_list: SignedDeviceList.nullable(),
})
export type DeviceRecord = z.infer<typeof DeviceRecord>

/** What is trusted about another user (or the user's own other devices): TOFU pin and device list. */
export const PeerRecord = z.object({
  /** The pinned user identity key, base64url. */
  uik: B64,
  /** Compared by safety number or QR: an identity change then blocks sending (E2E.md section 2.1). */
  verified: z.boolean(),
  /** The newest device list accepted under the pinned identity. */
  device_list: SignedDeviceList,
})
export type PeerRecord = z.infer<typeof PeerRecord>
const Peers = z.record(z.string(), PeerRecord)

/** A room's outbound group session and whom it was shared with. */
export const OutboundRecord = z.object({
  state: z.record(z.string(), z.unknown()),
  /** Members (user ids) when the session was created: anyone gone since forces a rotation. */
  members: z.array(z.string()),
  /** `user|device|dsk` of every device that received the key. */
  shared: z.array(z.string()),
})
export type OutboundRecord = z.infer<typeof OutboundRecord>

const InboundIndex = z.array(z.string())
/** `session|index` -> event id. */
const Seen = z.record(z.string(), z.string())

export class E2eStore {
  constructor(private readonly store: ClientStore) {}

  getDevice(): Promise<DeviceRecord | null> {
    return this.#get('e2e:device', DeviceRecord)
  }
  putDevice(record: DeviceRecord): Promise<void> {
    return this.#put('e2e:device', record)
  }

  async getPeers(): Promise<Record<string, PeerRecord>> {
    return (await this.#get('e2e:peers', Peers)) ?? {}
  }
  putPeers(peers: Record<string, PeerRecord>): Promise<void> {
    return this.#put('e2e:peers', peers)
  }

  getOutbound(room: string): Promise<OutboundRecord | null> {
    return this.#get(`e2e:out:${room}`, OutboundRecord)
  }
  putOutbound(room: string, record: OutboundRecord | null): Promise<void> {
    return record === null ? this.store.removeItem(`e2e:out:${room}`) : this.#put(`e2e:out:${room}`, record)
  }

  /** Every stored inbound session state, as the ratchet's `toState()` wrote it. */
  async getInbound(): Promise<unknown[]> {
    const ids = (await this.#get('e2e:in-index', InboundIndex)) ?? []
    const states: unknown[] = []
    for (const id of ids) {
      const raw = await this.store.getItem(`e2e:in:${id}`)
      if (raw !== null) states.push(parse(raw))
    }
    return states
  }
  async putInbound(sessionId: string, state: unknown, isNew: boolean): Promise<void> {
    await this.#put(`e2e:in:${sessionId}`, state)
    if (!isNew) return
    const ids = (await this.#get('e2e:in-index', InboundIndex)) ?? []
    if (!ids.includes(sessionId)) await this.#put('e2e:in-index', [...ids, sessionId])
  }

  async getSeen(): Promise<Record<string, string>> {
    return (await this.#get('e2e:seen', Seen)) ?? {}
  }
  putSeen(seen: Record<string, string>): Promise<void> {
    return this.#put('e2e:seen', seen)
  }

  async #get<S extends z.ZodType>(key: string, schema: S): Promise<z.infer<S> | null> {
    const raw = await this.store.getItem(key)
    if (raw === null) return null
    const checked = schema.safeParse(parse(raw))
    return checked.success ? checked.data : null
  }
  #put(key: string, value: unknown): Promise<void> {
    return this.store.setItem(key, JSON.stringify(value))
  }
}

function parse(raw: string): unknown {
  try {
    return JSON.parse(raw)
  } catch {
    return null
  }
}
