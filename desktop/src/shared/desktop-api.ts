/**
 * The one typed API between the renderer and the Electron main process (DESIGN.md section 9): the
 * channel names and the schema of every argument. The preload exposes it as `window.parleyDesktop`;
 * the main process validates every call against these schemas and checks its sender. Shared by main
 * and the tests; the preload imports only ipc-channels.ts and bridge-values.ts (no zod in its bundle).
 */
import { z } from 'zod'
import { NOTIFY_BODY_MAX, NOTIFY_TITLE_MAX } from './bridge-values.ts'
import { IPC, IPC_EVENTS } from './ipc-channels.ts'

export { IPC, IPC_EVENTS }

const Text = (max: number) => z.string().max(max)

/** Argument schemas, by channel: nothing else crosses the bridge. */
export const IPC_ARGS = {
  [IPC.notify]: z.tuple([Text(NOTIFY_TITLE_MAX), Text(NOTIFY_BODY_MAX)]),
  [IPC.setBadge]: z.tuple([z.number().int().min(0).max(1_000_000)]),
  [IPC.openExternal]: z.tuple([Text(4096)]),
  [IPC.secretGet]: z.tuple([z.string().regex(/^[a-z0-9_.-]{1,64}$/)]),
  [IPC.secretSet]: z.tuple([z.string().regex(/^[a-z0-9_.-]{1,64}$/), Text(8192)]),
  [IPC.cacheKey]: z.tuple([]),
  [IPC.takeDeepLinks]: z.tuple([]),
} as const

export type IpcChannel = keyof typeof IPC_ARGS
