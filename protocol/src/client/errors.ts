/**
 * Errors the client library throws or reports. Each names one cause, so callers can tell "the server
 * said no" ({@link ApiError}) from "the network failed" ({@link NetworkError}), "the server broke the
 * contract" ({@link ProtocolError}) and "this client stopped" ({@link ClientClosedError}).
 */
import { ERROR_STATUS, isErrorCode, type ErrorCode } from '../errors.ts'

/**
 * The server answered with an error: an HTTP error status with `{errcode, error, retry_after_ms?}`,
 * or a WebSocket `error` frame.
 */
export class ApiError extends Error {
  override name = 'ApiError'
  /**
   * @param errcode - The server's error code (see {@link ErrorCode}; a newer server may send codes this client does not know).
   * @param status - HTTP status; for a WebSocket error frame, the status of a known `errcode`, else 0.
   * @param message - The server's human-readable `error`.
   * @param retryAfterMs - When to retry a rate-limited or unavailable request, if the server said.
   */
  constructor(
    readonly errcode: ErrorCode | (string & Record<never, never>),
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }

  /** Builds an error from a WebSocket error frame, deriving the status from the code. */
  static fromFrame(frame: { errcode: string; error: string; retry_after_ms?: number | undefined }): ApiError {
    const status = isErrorCode(frame.errcode) ? ERROR_STATUS[frame.errcode] : 0
    return new ApiError(frame.errcode, status, frame.error, frame.retry_after_ms)
  }
}

/** The request never got an answer: DNS, TCP, TLS or CORS failure, or an aborted fetch. */
export class NetworkError extends Error {
  override name = 'NetworkError'
  /** @param options - `cause`: the error `fetch` threw. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** The server sent something the wire contract does not allow (a body or frame failing its schema). */
export class ProtocolError extends Error {
  override name = 'ProtocolError'
}

/** An authenticated call was made while the store holds no session (sign in first). */
export class NoSessionError extends Error {
  override name = 'NoSessionError'
  constructor() {
    super('not signed in: the store holds no session')
  }
}

/**
 * The client stopped before a send was acknowledged: `close()` was called or the session ended. The
 * entry is still in the outbox; the next client connected with the same store resends it (the
 * server deduplicates by `txn_id`).
 */
export class ClientClosedError extends Error {
  override name = 'ClientClosedError'
  /**
   * @param reason - Why the client stopped.
   * @param txnId - The transaction that was still waiting, if this error answers a send.
   */
  constructor(
    readonly reason: 'closed' | 'session_ended',
    readonly txnId?: string,
  ) {
    super(
      txnId === undefined
        ? `client ${reason === 'closed' ? 'closed' : 'session ended'}`
        : `client ${reason === 'closed' ? 'closed' : 'session ended'} before ${txnId} was acknowledged; it stays in the outbox`,
    )
  }
}
