/** Outcome of parsing untrusted input: untrusted input returns a Result, caller bugs throw (STYLE.md). */
export type Result<T, E = string> = { ok: true; value: T } | { ok: false; error: E }

/** Wraps a success. */
export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value })
/** Wraps a failure. */
export const err = <E>(error: E): Result<never, E> => ({ ok: false, error })
