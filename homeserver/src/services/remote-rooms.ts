/**
 * Writes to rooms another server owns (DESIGN.md section 4): the services hand them to this port; the
 * federation layer implements it (origin signature, durable outbox, SUBMIT to the owner).
 */
import type { Draft } from './sequencer.ts'

/** The owner's answer to one of our submissions. */
export interface RemoteResult {
  readonly event_id: string
  readonly seq: number
}

/** How a client send to a remote room is answered (the `pending` then `sent` of DESIGN.md section 5). */
export interface RemoteSendCallbacks {
  /** Durably queued here; the owner has not answered yet. */
  pending(eventId: string): void
  /** Already sequenced by the owner (a repeated txn). */
  sent(result: RemoteResult): void
  reject(err: unknown): void
}

export interface RemoteRooms {
  /** A client send with a txn id: answered `pending` once queued; `sent` reaches the device later. */
  send(draft: Draft & { readonly txn: NonNullable<Draft['txn']> }, callbacks: RemoteSendCallbacks): void
  /** A membership or settings change: resolves once the owner sequenced it, rejects with its refusal. */
  submit(draft: Draft): Promise<RemoteResult>
}
