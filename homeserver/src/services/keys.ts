/**
 * The E2E key directory and key backup (E2E.md sections 2.1, 2.2 and 2.5; docs/protocol.md, "Keys").
 *
 * - Device lists: each user publishes their own, signed by their identity key (UIK). We check the
 *   signature against the UIK inside the document (self-consistency: we have no better anchor; clients
 *   pin the UIK), refuse rollbacks and broken hash chains under the same UIK, and accept a new UIK
 *   (an identity reset). Co-members hear `keys_changed`, here and on their servers.
 * - Signed prekeys: one per device, replaced by the next.
 * - Query: only users who share a room with the caller (joined or invited), or the caller. Others are
 *   absent, exactly like users without keys: the directory is no oracle about strangers. Users of
 *   other servers are asked of their server over the link ({@link RemoteKeys}); its last answer is
 *   kept and served while it cannot be reached.
 * - Backup: opaque, UIK-signed metadata and records encrypted under a key we never see.
 * - Secret storage: one opaque document per user (their UIK and backup key sealed under a key derived
 *   from their recovery key), bounded by its schema; only its owner reads or replaces it.
 *
 * Why a new UIK is accepted: a user who lost every device and their recovery key must be able to
 * start over, and the server cannot tell that from an attack. Refusing would lock them out for good
 * and protect nobody: a malicious server could serve any list it likes anyway. The protection is on
 * the clients, which pin the first UIK they see and show a blocking warning when it changes (E2E.md
 * section 2.1, section 3 row 13).
 */
import { canonicalJson, fromBase64Url, ParleyError, parseUserId } from '@parley/protocol'
import { e2e } from '@parley/protocol/crypto'
import {
  BackupSessionRecord,
  DevicePrekeys,
  SecretStorage,
  SignedBackupMetadata,
  SignedDeviceList,
  SignedPrekey,
  type KeysQueryResponse,
  type SecretStorage as SecretStorageType,
  type BackupSessionRecord as BackupSessionRecordType,
  type SignedBackupMetadata as SignedBackupMetadataType,
  type SignedDeviceList as SignedDeviceListType,
  type SignedPrekey as SignedPrekeyType,
} from '@parley/protocol/schema'
import type { z } from 'zod'
import type { Clock } from '../clock.ts'
import type { Repos } from '../db/repos/index.ts'
import type { Logger } from '../logger.ts'
import type { Session } from './accounts.ts'
import type { Hub } from './hub.ts'
import type { Sequencer } from './sequencer.ts'

/** Session records one user's backup holds at most. */
export const MAX_BACKUP_SESSIONS = 10_000
/** Characters of record JSON one user's backup holds at most (8 MiB). */
export const MAX_BACKUP_BYTES = 8 * 1024 * 1024

/** What a user's server says about its users' keys (shape-checked). */
export interface RemoteKeysAnswer {
  readonly device_lists: Readonly<Record<string, SignedDeviceListType>>
  readonly prekeys: Readonly<Record<string, Readonly<Record<string, SignedPrekeyType>>>>
}

/** The key directories of other servers (implemented by federation/keys-relay.ts). */
export interface RemoteKeys {
  /**
   * Asks `server` for the keys of its `users`. Resolves with what it may show us (already checked:
   * only asked users, valid shapes, self-consistent signatures); rejects with a {@link ParleyError}
   * when it cannot be reached, refuses or does not answer in time.
   */
  query(server: string, users: readonly string[]): Promise<RemoteKeysAnswer>
  /** Tells `server` (if linked) that `userId`'s device list changed. */
  keysChanged(server: string, userId: string): void
}

/**
 * Why a device list is not self-consistent (its signature does not verify under the UIK it names, or
 * the crypto core refuses its shape), or `null` if it is.
 */
export function deviceListProblem(list: SignedDeviceListType): 'bad_signature' | 'bad_input' | null {
  const uik = fromBase64Url(list.uik)
  if (uik === null) return 'bad_input'
  try {
    e2e.verifyDeviceList(list, { userId: list.user_id, uik })
    return null
  } catch (err) {
    if (e2e.isE2eError(err, 'bad_signature')) return 'bad_signature'
    if (e2e.isE2eError(err)) return 'bad_input'
    throw err
  }
}

/** A stored document read back through its schema (a stored row is input too). */
function stored<S extends z.ZodType>(schema: S, json: string): z.infer<S> | null {
  try {
    const parsed = schema.safeParse(JSON.parse(json))
    return parsed.success ? parsed.data : null
  } catch {
    return null
  }
}

export class KeysService {
  /** Set by the federation side; without it, other servers' users have no keys here. */
  remote: RemoteKeys | null = null

  constructor(
    private readonly repos: Repos,
    private readonly sequencer: Sequencer,
    private readonly hub: Hub,
    private readonly serverName: string,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  // ---- device lists ----

  /** Publishes the caller's new device list; resolves once durable, then tells co-members. */
  async publishDeviceList(userId: string, list: SignedDeviceListType): Promise<void> {
    if (list.user_id !== userId)
      throw new ParleyError('P_FORBIDDEN', 'you can only publish your own device list')
    const problem = deviceListProblem(list)
    if (problem === 'bad_signature')
      throw new ParleyError('P_BAD_SIGNATURE', 'the device list is not signed by the identity key it names')
    if (problem !== null) throw new ParleyError('P_BAD_REQUEST', 'malformed device list')
    const document = canonicalJson(list as never)
    const hash = e2e.deviceListHash(list)
    await this.sequencer.run(() => {
      // Read and written in one transaction: two racing publishes cannot both build on one version.
      const current = this.repos.keys.deviceList(userId)
      if (current && current.uik === list.uik) {
        if (list.version <= current.version)
          throw new ParleyError(
            'P_CONFLICT',
            `device list version ${list.version} is not newer than ${current.version}`,
          )
        if (list.version !== current.version + 1 || list.prev_hash !== current.hash)
          throw new ParleyError('P_CONFLICT', 'the device list does not continue the stored one (prev_hash)')
      }
      this.repos.keys.putDeviceList({
        user_id: userId,
        uik: list.uik,
        version: list.version,
        hash,
        document,
        updated_ts: this.clock.now(),
      })
    })
    this.#announce(userId)
  }

  /**
   * The calling device's signed prekey. If the user's device list names this device, the prekey must
   * verify under that device's DSK and be fresh; a device not yet in the list (waiting to be added by
   * another device) is stored on its shape alone: clients verify against the list anyway. Resolves once
   * durable (a lost prekey would leave the device unreachable for envelopes until its next rotation).
   */
  async putPrekey(session: Session, prekey: SignedPrekeyType): Promise<void> {
    const list = this.#localList(session.userId)
    const device = list?.devices.find((d) => d.device_id === session.deviceId)
    if (device) {
      try {
        e2e.verifySignedPrekey(prekey, fromBase64Url(device.dsk)!, this.clock.now())
      } catch (err) {
        if (e2e.isE2eError(err, 'bad_signature'))
          throw new ParleyError('P_BAD_SIGNATURE', "the prekey is not signed by this device's key")
        if (e2e.isE2eError(err)) throw new ParleyError('P_BAD_REQUEST', `prekey refused: ${err.code}`)
        throw err
      }
    }
    const document = canonicalJson(prekey as never)
    await this.sequencer.run(() =>
      this.repos.keys.putPrekey(session.deviceId, session.userId, document, this.clock.now()),
    )
  }

  /** A co-member's device list changed on their server (a `keys_changed` from it). */
  remoteKeysChanged(userId: string): void {
    // The cache is only served while that server is unreachable: a revoked device must not come back.
    this.repos.keys.dropRemote(userId)
    const local = this.repos.keys.coMembers(userId).filter((u) => this.isLocal(u))
    this.hub.sendToUsers(local, keysChangedFrame(userId))
  }

  /** Our user's list changed: their own devices, local co-members and co-members' servers hear it. */
  #announce(userId: string): void {
    const local = new Set([userId])
    const servers = new Set<string>()
    for (const member of this.repos.keys.coMembers(userId)) {
      const server = parseUserId(member)?.server
      if (server === this.serverName) local.add(member)
      else if (server) servers.add(server)
    }
    this.hub.sendToUsers(local, keysChangedFrame(userId))
    for (const server of servers) this.remote?.keysChanged(server, userId)
  }

  // ---- query ----

  /** Keys of the users the caller may see (see the module comment); the rest are simply absent. */
  async query(callerId: string, users: readonly string[]): Promise<KeysQueryResponse> {
    const out: KeysQueryResponse = { device_lists: {}, prekeys: {}, failures: {} }
    const remote = new Map<string, string[]>()
    for (const user of new Set(users)) {
      if (user !== callerId && !this.repos.keys.sharesRoom(callerId, user)) continue
      const server = parseUserId(user)?.server
      if (!server) continue
      if (server === this.serverName) {
        this.#addLocal(user, out)
        continue
      }
      let list = remote.get(server)
      if (!list) remote.set(server, (list = []))
      list.push(user)
    }
    await Promise.all([...remote].map(([server, list]) => this.#addRemote(server, list, out)))
    return out
  }

  #addLocal(user: string, out: KeysQueryResponse): void {
    const list = this.#localList(user)
    if (list) out.device_lists[user] = list
    const prekeys = this.localPrekeys(user)
    if (Object.keys(prekeys).length > 0) out.prekeys[user] = prekeys
  }

  /** A local user's published device list, if any (its UIK signature was checked when it was stored). */
  localDeviceList(user: string): SignedDeviceListType | null {
    return this.#localList(user)
  }

  #localList(user: string): SignedDeviceListType | null {
    const row = this.repos.keys.deviceList(user)
    return row ? stored(SignedDeviceList, row.document) : null
  }

  /** Signed prekeys of a local user's devices, by device id. */
  localPrekeys(user: string): Record<string, SignedPrekeyType> {
    const out: Record<string, SignedPrekeyType> = {}
    for (const row of this.repos.keys.prekeysOf(user)) {
      const prekey = stored(SignedPrekey, row.document)
      if (prekey) out[row.device_id] = prekey
    }
    return out
  }

  async #addRemote(server: string, users: readonly string[], out: KeysQueryResponse): Promise<void> {
    let answer: RemoteKeysAnswer
    try {
      if (!this.remote) throw new ParleyError('P_UNAVAILABLE', 'this server does not federate')
      answer = await this.remote.query(server, users)
    } catch (err) {
      if (!(err instanceof ParleyError)) throw err
      // Unreachable: serve the last answer; a user we have nothing for makes the answer incomplete.
      let complete = true
      for (const user of users) {
        const row = this.repos.keys.remote(user)
        if (!row) {
          complete = false
          continue
        }
        const list = row.device_list === null ? null : stored(SignedDeviceList, row.device_list)
        if (list) out.device_lists[user] = list
        const prekeys = stored(DevicePrekeys, row.prekeys)
        if (prekeys && Object.keys(prekeys).length > 0) out.prekeys[user] = prekeys
      }
      if (!complete) out.failures[server] = err.errcode
      this.log.info({ peer: server, err: err.message, cached: complete }, 'keys query: server unavailable')
      return
    }
    const now = this.clock.now()
    for (const user of users) {
      const list = answer.device_lists[user]
      const prekeys = answer.prekeys[user] ?? {}
      if (!list && Object.keys(prekeys).length === 0) {
        this.repos.keys.dropRemote(user)
        continue
      }
      if (list) out.device_lists[user] = list
      if (Object.keys(prekeys).length > 0) out.prekeys[user] = { ...prekeys }
      this.repos.keys.putRemote({
        user_id: user,
        device_list: list ? canonicalJson(list as never) : null,
        prekeys: canonicalJson(prekeys as never),
        fetched_ts: now,
      })
    }
  }

  /**
   * What we may show `peer` about our `users`: each must share a room (joined or invited) with some
   * user of that server, in our own view of membership. Others are absent.
   */
  forPeer(peer: string, users: readonly string[]): RemoteKeysAnswer {
    const device_lists: Record<string, SignedDeviceListType> = {}
    const prekeys: Record<string, Record<string, SignedPrekeyType>> = {}
    for (const user of new Set(users)) {
      if (!this.isLocal(user) || !this.repos.keys.sharesRoomWithServer(user, peer)) continue
      const list = this.#localList(user)
      if (list) device_lists[user] = list
      const mine = this.localPrekeys(user)
      if (Object.keys(mine).length > 0) prekeys[user] = mine
    }
    return { device_lists, prekeys }
  }

  // ---- backup ----

  /**
   * A new backup version replaces the current one (and its records, which were encrypted for it). The
   * metadata must be the caller's; if they published a device list, it must verify under its UIK.
   */
  async putBackup(userId: string, metadata: SignedBackupMetadataType): Promise<void> {
    if (metadata.user_id !== userId)
      throw new ParleyError('P_FORBIDDEN', 'you can only store your own backup metadata')
    const list = this.#localList(userId)
    if (list) {
      try {
        e2e.verifyBackupMetadata(metadata, { userId, uik: fromBase64Url(list.uik)! })
      } catch (err) {
        if (e2e.isE2eError(err, 'bad_signature'))
          throw new ParleyError('P_BAD_SIGNATURE', 'the backup metadata is not signed by your identity key')
        if (e2e.isE2eError(err))
          throw new ParleyError('P_BAD_REQUEST', `backup metadata refused: ${err.code}`)
        throw err
      }
    }
    const json = canonicalJson(metadata as never)
    await this.sequencer.run(() => {
      const current = this.repos.keys.backup(userId)
      if (current?.version === metadata.version) {
        if (current.metadata === json) return // a retry
        throw new ParleyError('P_CONFLICT', 'a backup with this version exists: choose a new version')
      }
      this.repos.keys.replaceBackup({
        user_id: userId,
        version: metadata.version,
        metadata: json,
        updated_ts: this.clock.now(),
      })
    })
  }

  getBackup(userId: string): { metadata: SignedBackupMetadataType } {
    const row = this.repos.keys.backup(userId)
    const metadata = row ? stored(SignedBackupMetadata, row.metadata) : null
    if (!metadata) throw new ParleyError('P_NOT_FOUND', 'no key backup')
    return { metadata }
  }

  /** Inserts or replaces records of the current version; refused for any other version, or past the quota. */
  async putBackupSessions(
    userId: string,
    version: string,
    records: readonly BackupSessionRecordType[],
  ): Promise<void> {
    await this.sequencer.run(() => {
      const current = this.repos.keys.backup(userId)
      if (!current) throw new ParleyError('P_NOT_FOUND', 'no key backup')
      if (current.version !== version)
        throw new ParleyError('P_CONFLICT', `backup version ${version} is not the current one`)
      const now = this.clock.now()
      for (const record of records) {
        const row = { room_id: record.room_id, session_id: record.session_id, record: canonicalJson(record) }
        this.repos.keys.putSession(userId, row, now)
      }
      // Checked after the writes, inside the transaction: a refusal undoes all of them.
      const stats = this.repos.keys.sessionStats(userId)
      if (stats.n > MAX_BACKUP_SESSIONS || stats.bytes > MAX_BACKUP_BYTES)
        throw new ParleyError('P_TOO_LARGE', 'the key backup is full')
    })
  }

  getBackupSessions(
    userId: string,
    version: string,
  ): { version: string; records: BackupSessionRecordType[] } {
    const current = this.repos.keys.backup(userId)
    if (!current || current.version !== version)
      throw new ParleyError('P_NOT_FOUND', 'no key backup with this version')
    const records: BackupSessionRecordType[] = []
    for (const row of this.repos.keys.sessions(userId)) {
      const record = stored(BackupSessionRecord, row.record)
      if (record) records.push(record)
    }
    return { version, records }
  }

  // ---- secret storage ----

  /** Replaces the caller's secret storage; resolves once durable (it may be the only copy of their UIK). */
  async putSecretStorage(userId: string, document: SecretStorageType): Promise<void> {
    const json = canonicalJson(document as never)
    const now = this.clock.now()
    await this.sequencer.run(() => this.repos.keys.putSecretStorage(userId, json, now))
  }

  getSecretStorage(userId: string): { secret_storage: SecretStorageType } {
    const row = this.repos.keys.secretStorage(userId)
    const document = row === undefined ? null : stored(SecretStorage, row)
    if (!document) throw new ParleyError('P_NOT_FOUND', 'no secret storage')
    return { secret_storage: document }
  }

  /** Whether the user is one of ours. */
  isLocal(userId: string): boolean {
    return parseUserId(userId)?.server === this.serverName
  }
}

function keysChangedFrame(userId: string): string {
  return JSON.stringify({ type: 'keys_changed', user_id: userId })
}
