/** Numbered migrations, applied in order; `PRAGMA user_version` records how many have run. */
import type { Database } from 'better-sqlite3'
import * as m0001 from './0001-initial.ts'
import * as m0002 from './0002-server-keys.ts'
import * as m0003 from './0003-replication.ts'
import * as m0004 from './0004-to-device.ts'
import * as m0005 from './0005-federated-media.ts'
import * as m0006 from './0006-e2e-keys.ts'
import * as m0007 from './0007-secret-storage.ts'

export interface Migration {
  readonly version: number
  readonly name: string
  up(db: Database): void
}

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: '0001-initial', up: m0001.up },
  { version: 2, name: '0002-server-keys', up: m0002.up },
  { version: 3, name: '0003-replication', up: m0003.up },
  { version: 4, name: '0004-to-device', up: m0004.up },
  { version: 5, name: '0005-federated-media', up: m0005.up },
  { version: 6, name: '0006-e2e-keys', up: m0006.up },
  { version: 7, name: '0007-secret-storage', up: m0007.up },
]
