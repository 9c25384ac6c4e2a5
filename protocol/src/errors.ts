/**
 * Error codes of the public contract (DESIGN.md section 5). HTTP answers `{errcode, error}` with the
 * status below; the WebSocket answers `{type: "error", txn_id?, errcode, error}`.
 */
export const ERROR_STATUS = {
  /** Body or frame is not JSON, or not UTF-8. */
  P_BAD_JSON: 400,
  /** JSON that violates the schema of the endpoint or frame. */
  P_BAD_REQUEST: 400,
  /** A user name that is not a valid localpart. */
  P_INVALID_USERNAME: 400,
  /** A password that is too short or too long. */
  P_WEAK_PASSWORD: 400,
  /** A signed document (E2E device list) whose signature does not verify. */
  P_BAD_SIGNATURE: 400,
  /** A plaintext event type (message, edit, reaction) sent to an end-to-end encrypted room. */
  P_ENCRYPTED_ROOM: 400,
  /**
   * A signed membership statement (E2E.md section 2.3) that does not match its request (room, target,
   * membership, actor) or does not verify with a device of the actor's published device list.
   */
  P_BAD_MEMBERSHIP_STATEMENT: 400,
  /** A membership change (or turning encryption on) in an encrypted room without its signed statement. */
  P_UNSIGNED_MEMBERSHIP: 400,
  /** The user name is taken. */
  P_USER_IN_USE: 409,
  /** No credentials were presented, or they were wrong. */
  P_UNAUTHORIZED: 401,
  /** The access or refresh token is unknown, expired or revoked. */
  P_UNKNOWN_TOKEN: 401,
  /** Authenticated, but not allowed. Also used where "not found" would leak existence. */
  P_FORBIDDEN: 403,
  /** The thing does not exist (or the caller may not know it does). */
  P_NOT_FOUND: 404,
  /** The operation conflicts with current state (already joined, already reacted, ...). */
  P_CONFLICT: 409,
  /** Body, frame or message over its size limit. */
  P_TOO_LARGE: 413,
  /** Rate limited; retry after `retry_after_ms`. */
  P_LIMIT_EXCEEDED: 429,
  /** Storage refused the write (disk full, I/O error). Nothing was stored. */
  P_STORAGE: 503,
  /** The server is shutting down or cannot serve right now. */
  P_UNAVAILABLE: 503,
  /** A bug on the server. */
  P_UNKNOWN: 500,
} as const

/** Every error code. */
export type ErrorCode = keyof typeof ERROR_STATUS

/** The JSON body of every error answer. */
export interface ErrorBody {
  readonly errcode: ErrorCode
  readonly error: string
  readonly retry_after_ms?: number
}

/** An error meant for the wire: the one error type services throw. */
export class ParleyError extends Error {
  override name = 'ParleyError'
  constructor(
    readonly errcode: ErrorCode,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }
  /** HTTP status of this error. */
  get status(): number {
    return ERROR_STATUS[this.errcode]
  }
  /** The wire body. */
  toBody(): ErrorBody {
    return this.retryAfterMs === undefined
      ? { errcode: this.errcode, error: this.message }
      : { errcode: this.errcode, error: this.message, retry_after_ms: this.retryAfterMs }
  }
}

/** True if `code` is a known error code. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_STATUS, code)
}

/** WebSocket close codes the homeserver uses (beyond RFC 6455's 1001 going away, 1007 bad UTF-8, 1009 too big). */
export const CLOSE_CODES = {
  /** No valid `auth` frame in time, or the session was revoked or expired. Do not reconnect with the same token. */
  UNAUTHORIZED: 4001,
  /** Policy: flooding, too many connections, or a frame before `auth`. */
  POLICY: 4008,
  /** The client did not read fast enough; reconnect and resume from the cursor. */
  SLOW_CONSUMER: 4009,
} as const
