/**
 * Every IPC call is checked before its handler runs: the sender must be our app window's main frame
 * at `app://parley/`, and the arguments must match the channel's schema exactly.
 */
import { IPC_ARGS, type IpcChannel } from '../shared/desktop-api.ts'
import { mayNavigate } from './navigation.ts'

/** What the guard needs to know about a call's sender (a subset of Electron's IpcMainInvokeEvent). */
export interface IpcSender {
  readonly senderFrame: { readonly url: string; readonly parent: unknown } | null
}

export type GuardResult<C extends IpcChannel> =
  { ok: true; args: (typeof IPC_ARGS)[C]['_output'] } | { ok: false; reason: string }

export function checkIpc<C extends IpcChannel>(
  channel: C,
  event: IpcSender,
  args: unknown[],
): GuardResult<C> {
  const frame = event.senderFrame
  if (!frame || frame.parent !== null || !mayNavigate(frame.url))
    return { ok: false, reason: 'sender not allowed' }
  const parsed = IPC_ARGS[channel].safeParse(args)
  if (!parsed.success) return { ok: false, reason: 'invalid arguments' }
  return { ok: true, args: parsed.data as (typeof IPC_ARGS)[C]['_output'] }
}
