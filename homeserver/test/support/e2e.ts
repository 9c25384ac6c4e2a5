/** E2E key material for homeserver tests, made with the crypto core (the server only ever sees public parts). */
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { toBase64Url } from '@parley/protocol'
import { e2e } from '@parley/protocol/crypto'
import type { Draft, RoomRules } from '../../src/services/sequencer.ts'
import { http, type TestServer, type TestSocket, type TestUser } from '../helpers.ts'

/** A user's identity key and the keys of their devices, and the lists they signed so far. */
export class Identity {
  uik = e2e.generateIdentityKey()
  readonly devices = new Map<string, e2e.DeviceKeyPairs>()
  lists: e2e.SignedDeviceList[] = []

  constructor(readonly userId: string) {}

  /** The next list (version + 1, chained) with these devices (generating keys for new ones). */
  next(deviceIds: readonly string[]): e2e.SignedDeviceList {
    const list = e2e.signDeviceList(
      this.uik,
      this.userId,
      deviceIds.map((id) => {
        let keys = this.devices.get(id)
        if (!keys) this.devices.set(id, (keys = e2e.generateDeviceKeys()))
        return { deviceId: id, dsk: keys.dsk.publicKey, dxk: keys.dxk.publicKey, addedTs: 1_700_000_000_000 }
      }),
      this.lists.at(-1),
    )
    this.lists.push(list)
    return list
  }

  /** Starts over with a new identity key (an identity reset): the next list is version 1 again. */
  reset(): void {
    this.uik = e2e.generateIdentityKey()
    this.lists = []
  }

  /**
   * A membership statement by this user signed with one of their devices' DSK (E2E.md section 2.3);
   * `prev` defaults to the room's root (the server does not check it, clients do).
   */
  statement(
    deviceId: string,
    change: { room: string; target: string; membership: e2e.MembershipState; prev?: string },
  ): e2e.SignedMembershipStatement {
    return e2e.signMembership(this.devices.get(deviceId)!.dsk, {
      room: change.room,
      target: change.target,
      membership: change.membership,
      actor: this.userId,
      actorDevice: deviceId,
      prev: change.prev ?? e2e.membershipRoot(change.room),
    })
  }

  /** A snapshot of `members` signed by one of this user's devices, to turn encryption on (E2E.md section 2.3). */
  snapshot(
    deviceId: string,
    room: string,
    members: readonly e2e.SnapshotMember[],
  ): e2e.SignedMembershipSnapshot {
    return e2e.signMembershipSnapshot(this.devices.get(deviceId)!.dsk, {
      room,
      members,
      actor: this.userId,
      actorDevice: deviceId,
      prev: e2e.membershipRoot(room),
    })
  }

  /** A fresh signed prekey of one of the devices. */
  prekey(deviceId: string, now = Date.now()): e2e.SignedPrekey {
    return e2e.createSignedPrekey(this.devices.get(deviceId)!.dsk, now).signed
  }
}

const b64 = (n: number) => toBase64Url(randomBytes(n))

/** `m.encrypted` content of the right shape (the server cannot and does not decrypt it). */
export function encryptedContent(senderUser: string, senderDev: string): Record<string, unknown> {
  return {
    suite: 'e2e/v1',
    session_id: b64(32),
    sender_user: senderUser,
    sender_dev: senderDev,
    index: 0,
    nonce: b64(24),
    ciphertext: b64(256 + 16),
    signature: b64(64),
  }
}

let txns = 0
/** Sends an event over the socket; resolves with its `sent` or `error` answer. */
export function sendEvent(
  sock: TestSocket,
  room: string,
  eventType: string,
  content: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const txnId = `e2e${++txns}`
  sock.send({ type: 'send', txn_id: txnId, room, event_type: eventType, content })
  return sock.next((f) => (f.type === 'sent' || f.type === 'error') && f.txn_id === txnId, 10_000)
}

/** `POST /keys/query` as `user`. */
export async function queryKeys(server: { url: string }, user: TestUser, users: string[]) {
  const res = await http<{
    device_lists: Record<string, e2e.SignedDeviceList>
    prekeys: Record<string, Record<string, e2e.SignedPrekey>>
    failures: Record<string, string>
  }>(server, 'POST', '/api/v1/keys/query', { users }, user.access_token)
  if (res.status !== 200) throw new Error(`keys query: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

/** `PUT /keys/device-list` as `user`; the raw result. */
export function putList(server: { url: string }, user: TestUser, list: unknown) {
  return http(server, 'PUT', '/api/v1/keys/device-list', { device_list: list }, user.access_token)
}

// ---- "Server can't read" searches (E2E.md section 3 row 10, TESTPLAN E2E-1) ----

/**
 * Every file of a data directory (the database, its WAL, media, keys) and every file *name*,
 * concatenated: what a server operator (or a thief of the disk) can read.
 */
export async function dataBytes(dir: string): Promise<Buffer> {
  const parts: Buffer[] = []
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    parts.push(Buffer.from(join(entry.parentPath, entry.name)))
    if (entry.isFile()) parts.push(await readFile(join(entry.parentPath, entry.name)))
  }
  return Buffer.concat(parts)
}

/**
 * The byte strings that betray `secret` in a haystack: itself, and its base64 and base64url forms at
 * each of the three alignments (a secret inside a longer base64 string is encoded from whichever
 * byte offset it sits at; each alignment drops at most two edge bytes).
 */
export function canaryForms(secret: string | Uint8Array): Buffer[] {
  const raw = typeof secret === 'string' ? Buffer.from(secret) : Buffer.from(secret)
  const forms = [raw]
  for (let k = 0; k < 3; k++) {
    const usable = raw.subarray(k, k + 3 * Math.floor((raw.length - k) / 3))
    if (usable.length < 9) continue
    forms.push(Buffer.from(usable.toString('base64')), Buffer.from(usable.toString('base64url')))
  }
  return forms
}

/**
 * Where any of `secrets` (plain or base64/base64url, see {@link canaryForms}) occurs in any of the
 * named haystacks: `"haystack: secret name"` per hit; empty when the servers saw nothing.
 */
export function findCanaries(
  haystacks: Readonly<Record<string, Buffer | string>>,
  secrets: Readonly<Record<string, string | Uint8Array>>,
): string[] {
  const hits: string[] = []
  for (const [name, secret] of Object.entries(secrets)) {
    const forms = canaryForms(secret)
    for (const [where, hay] of Object.entries(haystacks)) {
      const bytes = typeof hay === 'string' ? Buffer.from(hay) : hay
      if (forms.some((f) => bytes.includes(f))) hits.push(`${where}: ${name}`)
    }
  }
  return hits
}

/**
 * What a compromised homeserver does (E2E.md section 3 rows 11-12): sequences an event into its own
 * log without its room rules (no signature check, no membership check).
 */
export async function inject(server: TestServer, draft: Draft): Promise<void> {
  const rules = (server.services.sequencer as unknown as { rules: RoomRules }).rules
  const check = rules.check.bind(rules)
  rules.check = () => {}
  try {
    await server.services.sequencer.submit(draft)
  } finally {
    rules.check = check
  }
}
