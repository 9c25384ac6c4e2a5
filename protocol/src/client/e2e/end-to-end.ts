/**
 * End-to-end encryption for a {@link ParleyClient} (E2E.md section 2; docs/e2e.md): this device's keys
 * and prekeys, other users' identities and device lists (TOFU, verified by the UIK's signature), room
 * keys shared in to-device envelopes, and group messages encrypted before they reach the outbox and
 * decrypted as they arrive. The servers see `m.encrypted` events and envelopes only.
 *
 * Membership changes of encrypted rooms are signed by this device and other members' are validated
 * before keys are shared (E2E.md section 2.3; `signed-membership.ts`, `membership.ts`). Key backup and
 * a user's further devices (E2E.md sections 2.1 and 2.5) are in `key-backup.ts` and
 * `own-device-list.ts`: {@link EndToEnd.enableBackup}, {@link EndToEnd.restoreFromBackup}.
 *
 * Not yet here (docs/e2e.md, "Not built yet"): adding a device from another own device (QR). A send
 * needs the keys of the room's devices: while they cannot be fetched it fails with
 * {@link KeysUnavailableError}, and the app keeps it queued.
 */
import type { JsonObject } from '../../canonical-json.ts'
import * as e2e from '../../crypto/e2e/index.ts'
import { sodiumReady } from '../../crypto/sodium.ts'
import { fromBase64Url, fromUtf8, toBase64Url } from '../../encoding.ts'
import type { ClientEvent } from '../../schema/events.ts'
import type { KeysQueryResponse, SignedDeviceList, SignedPrekey } from '../../schema/keys.ts'
import type { CreateRoomBody } from '../../schema/rest.ts'
import type { ParleyClient, SendOptions, SendResult, ToDeviceMessage } from '../client.ts'
import { NetworkError } from '../errors.ts'
import { TypedEmitter } from '../emitter.ts'
import { E2eStore, type DeviceRecord, type OutboundRecord, type PeerRecord } from './e2e-store.ts'
import { KeyBackup, type BackupSecret, type PassphraseKdf } from './key-backup.ts'
import { addOwnDevice, newerOwnDeviceList } from './own-device-list.ts'
import { SignedMembership } from './signed-membership.ts'

/** The to-device event type that carries room keys. */
export const ROOM_KEY_EVENT = 'm.room_key'
/** The room event type of encrypted messages. */
export const ENCRYPTED_EVENT = 'm.encrypted'
/**
 * How long a room's validated members and their devices are reused for sending without asking the
 * server again. Changes normally arrive first (an `m.member` event, a `keys_changed` push, a
 * reconnection: each drops the cached view); this bounds a missed push.
 */
const ROOM_VIEW_TTL_MS = 10 * 60_000
/** Users per `POST /keys/query`. */
const QUERY_CHUNK = 100

/** Something the user must be told about (E2E.md section 2.1: key changes are shown). */
export interface E2eWarning {
  readonly kind:
    | 'identity_changed'
    | 'device_list_rollback'
    | 'device_list_invalid'
    | 'room_key_rejected'
    | 'replayed_message'
    | 'no_keys'
    /** The server's key backup does not verify with our identity key: nothing was uploaded (row 16). */
    | 'backup_untrusted'
    /** A backup record failed its AEAD on restore (the server cannot inject sessions): skipped. */
    | 'backup_record_rejected'
    /** The server changed someone's membership without a valid signed statement ("server tried to add X"). */
    | 'membership_unsigned'
  readonly user_id: string
  readonly detail: string
}

/** What {@link EndToEnd.decrypt} made of an event. */
export type Decryption =
  /** Not an encrypted event: show it as it is. */
  | { readonly status: 'plain' }
  /** Decrypted and checked: the inner event type and content, and the sending device. */
  | {
      readonly status: 'decrypted'
      readonly type: string
      readonly content: JsonObject
      readonly senderDevice: string
    }
  /** The room key has not arrived (yet): decrypt again on `room_key`. */
  | { readonly status: 'waiting'; readonly sessionId: string }
  /** Refused for good: tampered, replayed, from the wrong sender, expired. Never shown as text. */
  | { readonly status: 'failed'; readonly reason: string }

/** Sending is refused: a verified contact's identity changed (E2E.md section 2.1, row 13). */
export class IdentityChangedError extends Error {
  constructor(readonly userId: string) {
    super(`${userId}'s identity key changed: verify them again before sending`)
    this.name = 'IdentityChangedError'
  }
}

/**
 * Sending now would leave members out: their homeserver did not answer for their keys, and some of
 * their devices do not have the room key yet. Nothing was sent; try again later (the app keeps the
 * message queued and shows it as pending).
 */
export class KeysUnavailableError extends Error {
  constructor(readonly users: readonly string[]) {
    super(`the keys of ${users.join(', ')} cannot be fetched right now: their server does not answer`)
    this.name = 'KeysUnavailableError'
  }
}

/** Events of {@link EndToEnd}. */
export interface EndToEndEvents {
  /** A room key arrived: events of that session may decrypt now. */
  room_key: { readonly room: string; readonly session_id: string }
  /** A key change or refusal the user should see. */
  warning: E2eWarning
  /** Whether this device waits to be added to its user's signed device list changed. */
  verification: { readonly needsVerification: boolean }
  /** This device learned a newer signed list of its own user's devices. */
  own_devices: { readonly device_ids: readonly string[] }
}

/** Options of {@link EndToEnd.start}. */
export interface EndToEndOptions {
  readonly now?: () => number
  /** Runs argon2id off the calling thread; needed for backup passphrases (Node: `@parley/protocol/node`). */
  readonly passphraseKdf?: PassphraseKdf
  /** argon2id cost of new passphrase wraps; defaults to opslimit 3, 128 MiB (backup.ts DEFAULT_PWHASH_MEMLIMIT). Lower only in tests. */
  readonly passphraseCost?: e2e.PassphraseCost
}

/** What {@link EndToEnd.restoreFromBackup} did. */
export interface RestoreReport {
  /** Sessions imported from the backup (history they cover can be read now). */
  readonly imported: number
  /** Records skipped because they failed the AEAD or their checks (also reported as warnings). */
  readonly rejected: number
}

interface DeviceTarget {
  readonly userId: string
  readonly device: e2e.VerifiedDevice
  readonly prekey: SignedPrekey | undefined
}

interface RoomView {
  readonly members: readonly string[]
  readonly devices: ReadonlyMap<string, readonly DeviceTarget[]>
  readonly epoch: string
  readonly fetchedAt: number
}

interface Outbound {
  readonly session: e2e.OutboundGroupSession
  readonly members: readonly string[]
  readonly shared: Set<string>
}

const b64 = toBase64Url
function bytes(text: string): Uint8Array {
  const out = fromBase64Url(text)
  if (out === null) throw new e2e.E2eError('bad_input', 'stored key is not base64url')
  return out
}

export class EndToEnd extends TypedEmitter<EndToEndEvents> {
  readonly #client: ParleyClient
  readonly #store: E2eStore
  readonly #now: () => number
  #device: DeviceRecord
  readonly #dsk: e2e.SigningKeyPair
  readonly #dxk: e2e.DhKeyPair
  readonly #prekeys: e2e.SignedPrekeyStore
  #peers: Record<string, PeerRecord>
  readonly #inbound = new Map<string, e2e.InboundGroupSession>()
  readonly #outbound = new Map<string, Outbound>()
  /** Each room's validated members and their devices, as the last send fetched them (see ROOM_VIEW_TTL_MS). */
  readonly #roomViews = new Map<string, RoomView>()
  /**
   * Bumped whenever a room's view is dropped: a view fetched while a change arrived (a kick during
   * the key query) is not kept, or the removed member would stay in it.
   */
  #viewGeneration = 0
  #seen: Record<string, string>
  readonly #decrypted = new Map<string, Decryption>()
  /** One room's send at a time, in order (sessions are stateful). */
  #sending: Promise<unknown> = Promise.resolve()
  #backup!: KeyBackup
  #needsVerification = false
  readonly #membership: SignedMembership

  private constructor(
    client: ParleyClient,
    store: E2eStore,
    device: DeviceRecord,
    peers: Record<string, PeerRecord>,
    seen: Record<string, string>,
    now: () => number,
  ) {
    super()
    this.#client = client
    this.#store = store
    this.#device = device
    this.#peers = peers
    this.#seen = seen
    this.#now = now
    this.#dsk = e2e.signingKeyPair(bytes(device.dsk.secret).slice(0, 32))
    this.#dxk = e2e.dhKeyPair(bytes(device.dxk.secret))
    this.#prekeys = e2e.SignedPrekeyStore.fromRecords(
      device.prekeys.map((p) => ({
        signed: p.signed as e2e.SignedPrekey,
        secretKey: bytes(p.secret),
        retiredTs: p.retired_ts,
        seenEphemeralHashes: p.seen,
      })),
    )
    this.#membership = new SignedMembership({
      api: client.api,
      store: client.store,
      dsk: this.#dsk,
      userId: device.user_id,
      deviceId: device.device_id,
      devicesOf: async (users) =>
        new Map([...(await this.#devicesOf(users))].map(([u, ts]) => [u, ts.map((t) => t.device)])),
      warn: (p) => this.#warn({ kind: 'membership_unsigned', user_id: p.user_id, detail: p.detail }),
    })
  }

  /**
   * Loads this device's keys (or creates them on first use), publishes its device list (on the
   * device that holds the user's identity key) and a fresh signed prekey, and starts handling room
   * keys. Call after sign-in, before {@link ParleyClient.connect}.
   */
  static async start(client: ParleyClient, options: EndToEndOptions = {}): Promise<EndToEnd> {
    await sodiumReady()
    // Known answers first (E2E.md section 3 row 1): a broken crypto build must not make keys.
    e2e.runSelfTest()
    const now = options.now ?? Date.now
    const session = await client.store.getSession()
    if (!session) throw new Error('sign in before starting end-to-end encryption')
    const store = new E2eStore(client.store)
    let device = await store.getDevice()
    if (device?.user_id !== session.user_id || device.device_id !== session.device_id) {
      const dsk = e2e.signingKeyPair()
      const dxk = e2e.dhKeyPair()
      device = {
        user_id: session.user_id,
        device_id: session.device_id,
        uik: null,
        dsk: { public: b64(dsk.publicKey), secret: b64(dsk.secretKey) },
        dxk: { public: b64(dxk.publicKey), secret: b64(dxk.secretKey) },
        added_ts: now(),
        prekeys: [],
        device_list: null,
      }
    }
    const self = new EndToEnd(client, store, device, await store.getPeers(), await store.getSeen(), now)
    for (const state of await store.getInbound()) {
      try {
        const inbound = e2e.InboundGroupSession.fromState(state)
        self.#inbound.set(inbound.sessionId, inbound)
      } catch {
        // A damaged record: that session's messages show as waiting for their key.
      }
    }
    self.#backup = await KeyBackup.load({
      api: client.api,
      store: client.store,
      userId: session.user_id,
      identityKey: () => self.identityKey,
      kdf: options.passphraseKdf,
      passphraseCost: options.passphraseCost,
      onUntrusted: (detail) => self.#warn({ kind: 'backup_untrusted', user_id: self.userId, detail }),
    })
    // Before the first connection: an envelope acknowledged without a handler would be lost.
    client.setToDeviceHandler((message) => self.#onToDevice(message))
    try {
      await self.#publishKeys()
    } catch (error) {
      // Offline (an app resuming without network): the keys are stored; publish once connected.
      if (!(error instanceof NetworkError) || self.#device.device_list === null) throw error
      const retry = () => {
        self.#publishKeys().then(
          () => client.off('ready', retry),
          () => {},
        )
      }
      client.on('ready', retry)
    }
    self.#needsVerification = self.#device.device_list === null
    client.on('keys_changed', ({ user_id }) => {
      if (user_id === self.userId) self.#refreshOwnList().catch(() => {})
      for (const [room, view] of self.#roomViews) if (view.devices.has(user_id)) self.#dropView(room)
      self.#viewGeneration++
      // A verified contact changed keys: check now, so a changed identity blocks before the next send.
      if (user_id !== self.userId && self.#peers[user_id]?.verified)
        self.#devicesOf([user_id]).catch(() => {})
    })
    client.on('event', ({ event }) => {
      if (event.type === 'm.member' || event.type === 'm.room.encryption') self.#dropView(event.room)
    })
    // Pushes missed while disconnected (keys_changed is not replayed): ask again after a reconnection.
    client.on('ready', () => self.#dropView(null))
    // Uploads that failed while offline are retried on every new connection.
    client.on('ready', () => self.#backup.flush().catch(() => {}))
    return self
  }

  get userId(): string {
    return this.#device.user_id
  }
  get deviceId(): string {
    return this.#device.device_id
  }

  /** This user's identity key (base64url), once this device knows it. */
  get identityKey(): string | null {
    return this.#device.device_list?.uik ?? null
  }

  /**
   * True while this device is in no signed device list of its user (a later device before
   * {@link restoreFromBackup}): nobody encrypts to it yet. `verification` fires when it changes.
   */
  get needsVerification(): boolean {
    return this.#needsVerification
  }

  // ---- key backup and own devices (key-backup.ts, own-device-list.ts) ----

  /** The key backup version this device uploads to, or null when it has none (not set up, or not restored). */
  get backupVersion(): string | null {
    return this.#backup.version
  }

  /** Whether this device holds the user's identity key (and so can set up a backup or sign lists). */
  get holdsIdentityKey(): boolean {
    return this.#device.uik !== null
  }

  /**
   * Creates a new key backup (E2E.md section 2.5) on a device holding the user's identity key:
   * returns the recovery key to show once. With `passphrase`, the recovery key is also wrapped under
   * argon2id (E2E.md parameters, computed by the `passphraseKdf` of {@link start}). Uploads every
   * inbound session now and each new one as it is stored.
   */
  async enableBackup(options: { passphrase?: string } = {}): Promise<{ recoveryKey: string }> {
    const uik = this.#device.uik
    if (uik === null) throw new Error('only a device holding the identity key can create a backup')
    const pair = e2e.signingKeyPair(bytes(uik.secret).slice(0, 32))
    try {
      return await this.#backup.enable(pair, this.#inbound.values(), options.passphrase)
    } finally {
      e2e.memzero(pair.secretKey)
    }
  }

  /**
   * Restores this device from the user's key backup (E2E.md sections 2.1 and 2.5): opens it with the
   * recovery key or passphrase (verifying the UIK-signed metadata and `key_check`), recovers the
   * identity key, signs and publishes the next device list with this device added, then imports the
   * backed-up sessions (records failing the AEAD are skipped and reported). A wrong secret or a
   * tampered backup throws {@link BackupError} with nothing changed.
   */
  async restoreFromBackup(secret: BackupSecret): Promise<RestoreReport> {
    const unlocked = await this.#backup.unlock(secret)
    try {
      const list = await addOwnDevice(this.#client.api, unlocked.uik, this.userId, this.#ownDevice())
      this.#device = {
        ...this.#device,
        uik: { public: b64(unlocked.uik.publicKey), secret: b64(unlocked.uik.secretKey) },
        device_list: list,
      }
      this.#peers[this.userId] = { uik: list.uik, verified: true, device_list: list }
      await this.#saveDevice()
      await this.#store.putPeers(this.#peers)
      await this.#backup.adopt(unlocked)
      this.#setNeedsVerification(false)
      const { sessions, rejected } = await this.#backup.download(unlocked)
      let imported = 0
      for (const session of sessions) if (await this.#storeInbound(session, false)) imported++
      for (const r of rejected)
        this.#warn({
          kind: 'backup_record_rejected',
          user_id: this.userId,
          detail: `${r.session_id}: ${r.reason}`,
        })
      return { imported, rejected: rejected.length }
    } finally {
      e2e.memzero(unlocked.bk, unlocked.uik.secretKey)
    }
  }

  /** Uploads backup records still pending (E2E.md section 2.5); rejects like {@link KeyBackup.flush}. */
  flushBackup(): Promise<void> {
    return this.#backup.flush()
  }

  #setNeedsVerification(value: boolean): void {
    if (this.#needsVerification === value) return
    this.#needsVerification = value
    this.emit('verification', { needsVerification: value })
  }

  /** Another own device published a newer list (e.g. it added itself): adopt it, share keys with it. */
  async #refreshOwnList(): Promise<void> {
    const uik = this.identityKey
    if (uik === null) return
    const served = (await this.#client.api.queryKeys([this.userId])).device_lists[this.userId]
    if (served === undefined) return
    let list: e2e.VerifiedDeviceList | null
    try {
      list = newerOwnDeviceList(this.userId, bytes(uik), this.#device.device_list, served)
    } catch (error) {
      this.#warn({ kind: 'device_list_invalid', user_id: this.userId, detail: describe(error) })
      return
    }
    if (list === null) return
    this.#device = { ...this.#device, device_list: served }
    const pin = this.#peers[this.userId]
    this.#peers[this.userId] = { uik: served.uik, verified: pin?.verified ?? true, device_list: served }
    await this.#saveDevice()
    await this.#store.putPeers(this.#peers)
    this.emit('own_devices', { device_ids: list.devices.map((d) => d.deviceId) })
  }

  // ---- verification ----

  /**
   * The safety number of the user and `userId` (60 digits, E2E.md section 2.1), from the pinned
   * identity keys; null until both are known. Compare it out of band, then {@link markVerified}.
   */
  safetyNumber(userId: string): string | null {
    const mine = this.identityKey
    const theirs = this.#peers[userId]?.uik
    if (mine === null || theirs === undefined) return null
    return e2e.formatSafetyNumber(
      e2e.safetyNumber({ userId: this.userId, uik: bytes(mine) }, { userId, uik: bytes(theirs) }),
    )
  }

  /** Fetches `userId`'s keys and pins their identity if none is pinned yet (TOFU), e.g. to verify them. */
  async loadIdentity(userId: string): Promise<void> {
    await this.#devicesOf([userId])
  }

  /**
   * What this device shows as a QR code to `userId` (E2E.md section 2.1): both user ids with the full
   * identity keys, ours and the one pinned for them; null until both are known.
   */
  safetyQr(userId: string): Uint8Array | null {
    const mine = this.identityKey
    const theirs = this.#peers[userId]?.uik
    if (mine === null || theirs === undefined) return null
    return e2e.safetyQrPayload({ userId: this.userId, uik: bytes(mine) }, { userId, uik: bytes(theirs) })
  }

  /**
   * Marks the pinned identity of `userId` as verified (the safety numbers matched): if it ever
   * changes, sending to rooms with them is blocked until they are verified again.
   */
  async markVerified(userId: string, verified = true): Promise<void> {
    const pin = this.#peers[userId]
    if (!pin) throw new Error(`no identity known for ${userId} yet`)
    this.#peers[userId] = { ...pin, verified }
    await this.#store.putPeers(this.#peers)
  }

  /** Whether `userId`'s pinned identity was verified. */
  isVerified(userId: string): boolean {
    return this.#peers[userId]?.verified === true
  }

  /**
   * Accepts `userId`'s current identity key after a change (the user saw the warning); it is pinned
   * unverified. Until then a verified contact's new key blocks sending.
   */
  async acceptIdentity(userId: string): Promise<void> {
    const answer = await this.#client.api.queryKeys([userId])
    const served = answer.device_lists[userId]
    if (!served) throw new Error(`${userId} has no device list`)
    e2e.verifyDeviceList(served, { userId, uik: bytes(served.uik) })
    this.#peers[userId] = { uik: served.uik, verified: false, device_list: served }
    await this.#store.putPeers(this.#peers)
  }

  // ---- signed membership (E2E.md section 2.3) ----

  /** Invites `user` to an encrypted room with this device's signed statement. */
  invite(room: string, user: string, reason?: string): Promise<void> {
    return this.#changed(room, this.#membership.invite(room, user, reason))
  }
  /** Joins (accepts an invite to) an encrypted room with this device's signed statement. */
  join(room: string): Promise<void> {
    return this.#changed(room, this.#membership.join(room))
  }
  /** Leaves an encrypted room with this device's signed statement. */
  leave(room: string): Promise<void> {
    return this.#changed(room, this.#membership.leave(room))
  }
  /** Removes `user` from an encrypted room with this device's signed statement. */
  kick(room: string, user: string, reason?: string): Promise<void> {
    return this.#changed(room, this.#membership.kick(room, user, reason))
  }
  /** Bans `user` from an encrypted room with this device's signed statement. */
  ban(room: string, user: string, reason?: string): Promise<void> {
    return this.#changed(room, this.#membership.ban(room, user, reason))
  }
  /** Creates a room; an encrypted one is created empty, then each person is invited with a signed statement. */
  createRoom(body: CreateRoomBody): Promise<string> {
    return this.#membership.createRoom(body)
  }
  /** Turns encryption on in a room, signing a snapshot of its members as the roots of its membership log. */
  enableEncryption(room: string): Promise<void> {
    return this.#changed(room, this.#membership.enableEncryption(room))
  }

  /**
   * A membership change of ours: the next send asks for the room's members again, even before the
   * server's `m.member` event comes back (a removed member must not get the next message).
   */
  async #changed(room: string, change: Promise<void>): Promise<void> {
    this.#dropView(room)
    try {
      await change
    } finally {
      this.#dropView(room)
    }
  }

  /** Forgets a room's view (or every room's, for null); views being fetched now will not be kept. */
  #dropView(room: string | null): void {
    this.#viewGeneration++
    if (room === null) this.#roomViews.clear()
    else this.#roomViews.delete(room)
  }

  // ---- own keys ----

  async #publishKeys(): Promise<void> {
    const api = this.#client.api
    const me = this.#device.user_id
    if (this.#device.device_list === null) {
      const served = (await api.queryKeys([me])).device_lists[me]
      if (served === undefined) {
        // The user's first device: it creates the identity key and the first device list.
        const uik = e2e.generateIdentityKey()
        this.#device = { ...this.#device, uik: { public: b64(uik.publicKey), secret: b64(uik.secretKey) } }
        const list = wireDeviceList(e2e.signDeviceList(uik, me, [this.#ownDevice()]))
        await api.publishDeviceList(list)
        this.#device = { ...this.#device, device_list: list }
      }
      // Else another device of the user holds the identity key: this one waits to be added (not yet built).
    }
    const now = this.#now()
    if (this.#prekeys.needsRotation(now)) {
      this.#prekeys.rotate(this.#dsk, now)
      this.#prekeys.prune(now)
      await this.#saveDevice()
      await api.publishPrekey(this.#prekeys.current as SignedPrekey)
    } else await this.#saveDevice()
  }

  #ownDevice(): e2e.DeviceListDevice {
    return {
      deviceId: this.#device.device_id,
      dsk: this.#dsk.publicKey,
      dxk: this.#dxk.publicKey,
      addedTs: this.#device.added_ts,
    }
  }

  #saveDevice(): Promise<void> {
    this.#device = {
      ...this.#device,
      prekeys: this.#prekeys.toRecords().map((r) => ({
        signed: r.signed as SignedPrekey,
        secret: b64(r.secretKey),
        retired_ts: r.retiredTs,
        seen: [...r.seenEphemeralHashes],
      })),
    }
    return this.#store.putDevice(this.#device)
  }

  // ---- other users' keys ----

  /**
   * The verified devices of `users`, each with the prekey the server served (checked when an envelope
   * is sealed). A user's list must be signed by their pinned identity key (the first one seen is
   * pinned: TOFU); a changed key is a warning, and for a verified contact it blocks sending.
   */
  async #devicesOf(
    users: readonly string[],
    changes = { identityChanged: false, deviceRemoved: false },
    unreachable = new Set<string>(),
  ): Promise<Map<string, DeviceTarget[]>> {
    const out = new Map<string, DeviceTarget[]>()
    for (let i = 0; i < users.length; i += QUERY_CHUNK) {
      const answer = await this.#client.api.queryKeys(users.slice(i, i + QUERY_CHUNK))
      for (const user of users.slice(i, i + QUERY_CHUNK)) {
        // Their server did not answer: what is pinned still counts, but there are no fresh prekeys.
        if (answer.failures[user.slice(user.indexOf(':') + 1)] !== undefined) unreachable.add(user)
        const list = this.#acceptDeviceList(user, answer, changes)
        if (list === null) continue
        const prekeys = answer.prekeys[user] ?? {}
        out.set(
          user,
          list.devices.map((device) => ({ userId: user, device, prekey: prekeys[device.deviceId] })),
        )
      }
    }
    await this.#store.putPeers(this.#peers)
    return out
  }

  #acceptDeviceList(
    user: string,
    answer: KeysQueryResponse,
    changes: { identityChanged: boolean; deviceRemoved: boolean },
  ): e2e.VerifiedDeviceList | null {
    const served: SignedDeviceList | undefined = answer.device_lists[user]
    const pin = this.#peers[user]
    const pinned = pin ? this.#verifiedPin(user, pin) : null
    if (served === undefined) {
      if (!pinned) this.#warn({ kind: 'no_keys', user_id: user, detail: 'no device list published' })
      return pinned
    }
    const presented = fromBase64Url(served.uik)
    if (presented === null) return pinned
    if (pin && pin.uik !== served.uik) {
      this.#warn({ kind: 'identity_changed', user_id: user, detail: 'their identity key changed' })
      if (pin.verified) throw new IdentityChangedError(user)
      changes.identityChanged = true
    }
    let list: e2e.VerifiedDeviceList
    try {
      list = e2e.verifyDeviceList(served, {
        userId: user,
        uik: pin && pin.uik === served.uik ? bytes(pin.uik) : presented,
      })
    } catch (error) {
      this.#warn({ kind: 'device_list_invalid', user_id: user, detail: describe(error) })
      return pinned
    }
    if (pinned && pin?.uik === served.uik) {
      if (list.version < pinned.version || (list.version === pinned.version && list.hash !== pinned.hash)) {
        this.#warn({
          kind: 'device_list_rollback',
          user_id: user,
          detail: `version ${list.version} after ${pinned.version}`,
        })
        return pinned
      }
      if (pinned.devices.some((d) => !list.devices.some((n) => e2e.constantTimeEqual(n.dsk, d.dsk))))
        changes.deviceRemoved = true
    }
    this.#peers[user] = {
      uik: served.uik,
      verified: pin?.uik === served.uik && pin.verified,
      device_list: served,
    }
    return list
  }

  #verifiedPin(user: string, pin: PeerRecord): e2e.VerifiedDeviceList | null {
    try {
      return e2e.verifyDeviceList(pin.device_list, { userId: user, uik: bytes(pin.uik) })
    } catch {
      return null
    }
  }

  #warn(warning: E2eWarning): void {
    this.emit('warning', warning)
  }

  // ---- sending ----

  /**
   * Encrypts `content` for the room's members' verified devices and sends it as `m.encrypted` through
   * the client's outbox. Shares the room key first with devices that do not have it (rotating the
   * session when a member or device is gone, or after 100 messages or 24 h). Needs a connection.
   */
  send(room: string, type: string, content: JsonObject, options: SendOptions = {}): Promise<SendResult> {
    // Encryptions run one at a time (sessions are stateful); waiting for the server's acknowledgement
    // does not hold the next one up. Handed to the outbox in the order they were encrypted.
    const encrypted = this.#sending.then(() => this.#encrypt(room, type, content))
    this.#sending = encrypted.catch(() => {})
    return encrypted.then((message) =>
      this.#client.send(room, ENCRYPTED_EVENT, message as unknown as Record<string, unknown>, options),
    )
  }

  async #encrypt(room: string, type: string, content: JsonObject): Promise<e2e.GroupMessage> {
    const changes = { identityChanged: false, deviceRemoved: false }
    const unreachable = new Set<string>()
    const { members, devices, epoch } = await this.#roomView(room, changes, unreachable)
    const now = this.#now()
    const targets = members.flatMap((m) => devices.get(m) ?? [])
    const keyOf = (t: DeviceTarget) => `${t.userId}|${t.device.deviceId}|${b64(t.device.dsk)}`
    const current = new Set(targets.map(keyOf))
    let outbound = this.#outbound.get(room) ?? (await this.#loadOutbound(room))
    const reason = outbound?.session.rotationReason(now, {
      memberRemoved: outbound.members.some((m) => !members.includes(m)),
      deviceRemoved: changes.deviceRemoved || [...outbound.shared].some((k) => !current.has(k)),
      identityChanged: changes.identityChanged,
    })
    if (!outbound || reason) {
      // Members whose server is away would miss the new session's key: wait for them (nothing sent).
      if (unreachable.size > 0) throw new KeysUnavailableError([...unreachable])
      outbound?.session.dispose()
      outbound = await this.#newOutbound(room, members, bytes(epoch), now)
    }
    const missing = [...unreachable].filter(
      (user) => !devices.has(user) || devices.get(user)!.some((t) => !outbound.shared.has(keyOf(t))),
    )
    if (missing.length > 0) throw new KeysUnavailableError(missing)
    await this.#shareKey(
      outbound,
      targets.filter((t) => !outbound.shared.has(keyOf(t))),
      keyOf,
    )
    const message = outbound.session.encrypt({ room_id: room, type, content }, now)
    // Stored before it is sent: an index is never used twice, even across a crash.
    await this.#saveOutbound(room, outbound)
    return message
  }

  /**
   * The room's validated members (E2E.md section 2.3: what the server adds without a signature gets
   * nothing) and their verified devices: from the last send while nothing changed, else asked anew.
   * Only a complete view is kept (every member's server answered, nothing changed on the way).
   */
  async #roomView(
    room: string,
    changes: { identityChanged: boolean; deviceRemoved: boolean },
    unreachable: Set<string>,
  ): Promise<RoomView> {
    const now = this.#now()
    const cached = this.#roomViews.get(room)
    if (cached && now - cached.fetchedAt < ROOM_VIEW_TTL_MS) return cached
    this.#roomViews.delete(room)
    const generation = this.#viewGeneration
    const validated = await this.#membership.validate(
      room,
      (users) => this.#devicesOf(users, changes, unreachable),
      (t) => t.device,
    )
    const view = { ...validated, fetchedAt: now }
    if (
      generation === this.#viewGeneration &&
      unreachable.size === 0 &&
      !changes.identityChanged &&
      !changes.deviceRemoved
    )
      this.#roomViews.set(room, view)
    return view
  }

  async #newOutbound(
    room: string,
    members: readonly string[],
    membershipEpoch: Uint8Array,
    now: number,
  ): Promise<Outbound> {
    const session = e2e.OutboundGroupSession.create({
      roomId: room,
      senderUser: this.userId,
      senderDev: this.deviceId,
      membershipEpoch,
      now,
    })
    // Our own messages come back from the server: this device keeps the key to read them.
    const inbound = e2e.InboundGroupSession.fromRoomKey(
      session.exportRoomKey(),
      { userId: this.userId, deviceId: this.deviceId },
      now,
    )
    this.#inbound.set(inbound.sessionId, inbound)
    await this.#store.putInbound(inbound.sessionId, inbound.toState(), true)
    void this.#backup.track(inbound)
    const outbound = { session, members: [...members], shared: new Set<string>() }
    this.#outbound.set(room, outbound)
    return outbound
  }

  async #shareKey(
    outbound: Outbound,
    targets: readonly DeviceTarget[],
    keyOf: (t: DeviceTarget) => string,
  ): Promise<void> {
    const mine = targets.filter((t) => !(t.userId === this.userId && t.device.deviceId === this.deviceId))
    if (mine.length === 0) return
    const payload = e2e.encodeRoomKeyPayload(outbound.session.exportRoomKey())
    const sender = { userId: this.userId, deviceId: this.deviceId, dxk: this.#dxk }
    const messages: Record<string, Record<string, Record<string, unknown>>> = {}
    const shared: string[] = []
    for (const target of mine) {
      if (target.prekey === undefined) continue
      try {
        const envelope = e2e.sealEnvelope(payload, sender, {
          userId: target.userId,
          deviceId: target.device.deviceId,
          dxk: target.device.dxk,
          dsk: target.device.dsk,
          signedPrekey: target.prekey,
        })
        ;(messages[target.userId] ??= {})[target.device.deviceId] = envelope as unknown as Record<
          string,
          unknown
        >
        shared.push(keyOf(target))
      } catch (error) {
        this.#warn({
          kind: 'room_key_rejected',
          user_id: target.userId,
          detail: `prekey refused: ${describe(error)}`,
        })
      }
    }
    e2e.memzero(payload)
    if (shared.length === 0) return
    await this.#client.sendToDevice(ROOM_KEY_EVENT, messages)
    for (const key of shared) outbound.shared.add(key)
  }

  async #loadOutbound(room: string): Promise<Outbound | undefined> {
    const record = await this.#store.getOutbound(room)
    if (!record) return undefined
    try {
      const outbound = {
        session: e2e.OutboundGroupSession.fromState(record.state),
        members: record.members,
        shared: new Set(record.shared),
      }
      this.#outbound.set(room, outbound)
      return outbound
    } catch {
      return undefined
    }
  }

  #saveOutbound(room: string, outbound: Outbound): Promise<void> {
    const record: OutboundRecord = {
      state: outbound.session.toState() as unknown as Record<string, unknown>,
      members: [...outbound.members],
      shared: [...outbound.shared],
    }
    return this.#store.putOutbound(room, record)
  }

  // ---- receiving ----

  async #onToDevice(message: ToDeviceMessage): Promise<void> {
    if (message.event_type !== ROOM_KEY_EVENT) return
    const envelope = message.content
    // The server vouches for who sent it; the envelope must say the same (and the AEAD binds it).
    if (envelope.sender_user !== message.sender || envelope.sender_dev !== message.sender_device) {
      this.#warn({ kind: 'room_key_rejected', user_id: message.sender, detail: 'envelope sender differs' })
      return
    }
    let list = this.#peers[message.sender]
      ? this.#verifiedPin(message.sender, this.#peers[message.sender]!)
      : null
    if (!list?.devices.some((d) => d.deviceId === message.sender_device)) {
      list = (await this.#devicesOf([message.sender])).has(message.sender)
        ? this.#verifiedPin(message.sender, this.#peers[message.sender]!)
        : null
    }
    const self = { userId: this.userId, deviceId: this.deviceId, dxk: this.#dxk, prekeys: this.#prekeys }
    let opened: e2e.OpenedEnvelope
    try {
      opened = e2e.openEnvelope(envelope, self, (user, device) =>
        user === message.sender ? list?.devices.find((d) => d.deviceId === device)?.dxk : undefined,
      )
    } catch (error) {
      this.#warn({ kind: 'room_key_rejected', user_id: message.sender, detail: describe(error) })
      return
    }
    // The envelope's H(EK) is spent: kept, so a replay is refused after a restart too.
    await this.#saveDevice()
    let payload: unknown
    try {
      payload = JSON.parse(fromUtf8(opened.payload))
    } catch {
      this.#warn({ kind: 'room_key_rejected', user_id: message.sender, detail: 'room key is not JSON' })
      return
    } finally {
      e2e.memzero(opened.payload)
    }
    let inbound: e2e.InboundGroupSession
    try {
      // Only the session's creator may hand out its key (E2E.md section 3 row 15).
      inbound = e2e.InboundGroupSession.fromRoomKey(
        payload,
        { userId: opened.senderUser, deviceId: opened.senderDev },
        this.#now(),
      )
    } catch (error) {
      this.#warn({ kind: 'room_key_rejected', user_id: message.sender, detail: describe(error) })
      return
    }
    await this.#storeInbound(inbound, true)
  }

  /**
   * Keeps an inbound session unless a known one reaches further back; events waiting for it may
   * decrypt now. `backUp`: also upload it to the key backup (not for sessions restored from it).
   */
  async #storeInbound(inbound: e2e.InboundGroupSession, backUp: boolean): Promise<boolean> {
    const known = this.#inbound.get(inbound.sessionId)
    if (known && known.firstKnownIndex <= inbound.firstKnownIndex) return false
    this.#inbound.set(inbound.sessionId, inbound)
    await this.#store.putInbound(inbound.sessionId, inbound.toState(), known === undefined)
    if (backUp) void this.#backup.track(inbound)
    for (const [eventId, result] of this.#decrypted)
      if (result.status === 'waiting' && result.sessionId === inbound.sessionId)
        this.#decrypted.delete(eventId)
    this.emit('room_key', { room: inbound.roomId, session_id: inbound.sessionId })
    return true
  }

  /**
   * What an event says once decrypted. Synchronous: room keys are in memory. Results are remembered
   * per event id, so showing an event again costs nothing and is never taken for a replay; a second
   * event carrying an already seen (session, index) is refused as a replay.
   */
  decrypt(event: ClientEvent): Decryption {
    if (event.type !== ENCRYPTED_EVENT) return { status: 'plain' }
    const cached = this.#decrypted.get(event.event_id)
    if (cached) return cached
    const result = this.#decryptNew(event)
    this.#decrypted.set(event.event_id, result)
    return result
  }

  #seenDirty = false

  /** One write for a burst of decryptions (a history page decrypts many at once). */
  #saveSeenSoon(): void {
    if (this.#seenDirty) return
    this.#seenDirty = true
    queueMicrotask(() => {
      this.#seenDirty = false
      // Lost on a failing store: replays are then caught only until the next restart.
      this.#store.putSeen(this.#seen).catch(() => {})
    })
  }

  #decryptNew(event: ClientEvent): Decryption {
    let message: e2e.GroupMessage
    try {
      message = e2e.parseGroupMessage(event.content)
    } catch (error) {
      return { status: 'failed', reason: describe(error) }
    }
    if (message.sender_user !== event.sender) return { status: 'failed', reason: 'sender does not match' }
    const seenKey = `${message.session_id}|${message.index}`
    const seenBy = this.#seen[seenKey]
    if (seenBy !== undefined && seenBy !== event.event_id) {
      this.#warn({ kind: 'replayed_message', user_id: event.sender, detail: `replay of ${seenBy}` })
      return { status: 'failed', reason: 'replayed message' }
    }
    const inbound = this.#inbound.get(message.session_id)
    if (!inbound) return { status: 'waiting', sessionId: message.session_id }
    try {
      const opened = inbound.decrypt(message, {
        roomId: event.room,
        receivedTs: Math.min(event.origin_ts, this.#now()),
      })
      if (opened.plaintext.type === ENCRYPTED_EVENT) return { status: 'failed', reason: 'nested encryption' }
      this.#seen[seenKey] = event.event_id
      this.#saveSeenSoon()
      return {
        status: 'decrypted',
        type: opened.plaintext.type,
        content: opened.plaintext.content,
        senderDevice: opened.senderDev,
      }
    } catch (error) {
      return { status: 'failed', reason: describe(error) }
    }
  }
}

/** The crypto core's device list as the wire schema types it (the same JSON; its arrays are readonly). */
function wireDeviceList(list: e2e.SignedDeviceList): SignedDeviceList {
  return { ...list, devices: list.devices.map((d) => ({ ...d })) }
}

function describe(error: unknown): string {
  if (error instanceof e2e.E2eError) return `${error.code}: ${error.message}`
  return error instanceof Error ? error.message : String(error)
}
