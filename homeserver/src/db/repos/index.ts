/** All repositories over one database connection. */
import type { Database } from 'better-sqlite3'
import { DevicesRepo } from './devices.ts'
import { EventsRepo } from './events.ts'
import { KeysRepo } from './keys.ts'
import { MediaRepo } from './media.ts'
import { MembershipsRepo } from './memberships.ts'
import { PeersRepo } from './peers.ts'
import { ReceiptsRepo } from './receipts.ts'
import { ReplicationRepo } from './replication.ts'
import { RoomsRepo } from './rooms.ts'
import { ServerKeysRepo } from './server-keys.ts'
import { ToDeviceRepo } from './to-device.ts'
import { UsersRepo } from './users.ts'

export type { DeviceRow } from './devices.ts'
export type { EventRow, ClientEventRow } from './events.ts'
export type { BackupRow, BackupSessionRow, DeviceListRow, RemoteKeysRow } from './keys.ts'
export type { MediaRow, RemoteMediaRow } from './media.ts'
export type { MembershipRow } from './memberships.ts'
export type { PeerKeyRow, PeerRow, PeerState } from './peers.ts'
export type { CursorRow, NewOutboxRow, OutboxRow } from './replication.ts'
export type { RoomRow } from './rooms.ts'
export type { ServerKeyRow } from './server-keys.ts'
export type { ToDeviceOutboxRow, ToDeviceRow } from './to-device.ts'
export type { UserRow } from './users.ts'

export class Repos {
  readonly users: UsersRepo
  readonly devices: DevicesRepo
  readonly rooms: RoomsRepo
  readonly memberships: MembershipsRepo
  readonly events: EventsRepo
  readonly receipts: ReceiptsRepo
  readonly media: MediaRepo
  readonly serverKeys: ServerKeysRepo
  readonly peers: PeersRepo
  readonly replication: ReplicationRepo
  readonly toDevice: ToDeviceRepo
  readonly keys: KeysRepo

  constructor(readonly db: Database) {
    this.users = new UsersRepo(db)
    this.devices = new DevicesRepo(db)
    this.rooms = new RoomsRepo(db)
    this.memberships = new MembershipsRepo(db)
    this.events = new EventsRepo(db)
    this.receipts = new ReceiptsRepo(db)
    this.media = new MediaRepo(db)
    this.serverKeys = new ServerKeysRepo(db)
    this.peers = new PeersRepo(db)
    this.replication = new ReplicationRepo(db)
    this.toDevice = new ToDeviceRepo(db)
    this.keys = new KeysRepo(db)
  }
}
