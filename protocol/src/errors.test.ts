import { describe, expect, it } from 'vitest'
import { canonicalJson } from './canonical-json.ts'
import { ERROR_STATUS, ParleyError, isErrorCode, type ErrorCode } from './errors.ts'

const CODES = Object.keys(ERROR_STATUS) as ErrorCode[]

describe('ERROR_STATUS', () => {
  it.each(CODES)('maps %s to an HTTP error status in 400..599', (code) => {
    const status = ERROR_STATUS[code]
    expect(Number.isInteger(status)).toBe(true)
    expect(status).toBeGreaterThanOrEqual(400)
    expect(status).toBeLessThanOrEqual(599)
  })

  it('pins the status of every code of the public contract', () => {
    expect(ERROR_STATUS).toEqual({
      P_BAD_JSON: 400,
      P_BAD_REQUEST: 400,
      P_BAD_SIGNATURE: 400,
      P_ENCRYPTED_ROOM: 400,
      P_BAD_MEMBERSHIP_STATEMENT: 400,
      P_UNSIGNED_MEMBERSHIP: 400,
      P_INVALID_USERNAME: 400,
      P_WEAK_PASSWORD: 400,
      P_USER_IN_USE: 409,
      P_UNAUTHORIZED: 401,
      P_UNKNOWN_TOKEN: 401,
      P_FORBIDDEN: 403,
      P_NOT_FOUND: 404,
      P_CONFLICT: 409,
      P_TOO_LARGE: 413,
      P_LIMIT_EXCEEDED: 429,
      P_STORAGE: 503,
      P_UNAVAILABLE: 503,
      P_UNKNOWN: 500,
    })
  })

  it('names every code P_ followed by upper-case words', () => {
    for (const code of CODES) expect(code).toMatch(/^P_[A-Z]+(?:_[A-Z]+)*$/)
  })
})

describe('isErrorCode', () => {
  it.each(CODES)('accepts %s', (code) => {
    expect(isErrorCode(code)).toBe(true)
  })

  it.each([
    '',
    'p_bad_json',
    'P_BAD_JSON ',
    'P_NOPE',
    'toString',
    'constructor',
    '__proto__',
    'hasOwnProperty',
  ])('rejects %j', (code) => {
    expect(isErrorCode(code)).toBe(false)
  })
})

describe('ParleyError', () => {
  it.each(CODES)('carries the status of %s', (code) => {
    expect(new ParleyError(code, 'x').status).toBe(ERROR_STATUS[code])
  })

  it('is an Error with its own name, code and message', () => {
    const error = new ParleyError('P_NOT_FOUND', 'no such room')
    expect(error).toBeInstanceOf(Error)
    expect(error).toBeInstanceOf(ParleyError)
    expect(error.name).toBe('ParleyError')
    expect(error.errcode).toBe('P_NOT_FOUND')
    expect(error.message).toBe('no such room')
    expect(error.retryAfterMs).toBeUndefined()
  })

  it('serialises to {errcode, error} without a retry_after_ms key when none is set', () => {
    const body = new ParleyError('P_FORBIDDEN', 'not a member').toBody()
    expect(body).toStrictEqual({ errcode: 'P_FORBIDDEN', error: 'not a member' })
    expect(Object.hasOwn(body, 'retry_after_ms')).toBe(false)
    expect(canonicalJson(body)).toBe('{"errcode":"P_FORBIDDEN","error":"not a member"}')
  })

  it('includes retry_after_ms when set, even when it is 0', () => {
    expect(new ParleyError('P_LIMIT_EXCEEDED', 'slow down', 1500).toBody()).toStrictEqual({
      errcode: 'P_LIMIT_EXCEEDED',
      error: 'slow down',
      retry_after_ms: 1500,
    })
    expect(new ParleyError('P_LIMIT_EXCEEDED', 'now', 0).toBody()).toStrictEqual({
      errcode: 'P_LIMIT_EXCEEDED',
      error: 'now',
      retry_after_ms: 0,
    })
  })

  it('round-trips its body through JSON', () => {
    const body = new ParleyError('P_LIMIT_EXCEEDED', 'slow "down"\n', 10).toBody()
    expect(JSON.parse(JSON.stringify(body))).toStrictEqual(body)
  })
})
