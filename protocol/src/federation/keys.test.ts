import { describe, expect, it } from 'vitest'
import { toBase64Url } from '../encoding.ts'
import { MAX_FRAME_BYTES } from './constants.ts'
import { KeysAnswerFrame, KeysChangedRelayFrame, KeysQueryFrame, MAX_KEYS_PER_FRAME } from './keys.ts'
import { MAX_LIST_DEVICES } from '../schema/keys.ts'

const b64 = (n: number, fill = 1) => toBase64Url(new Uint8Array(n).fill(fill))
const REQ = 'AAAAAAAAAAAAAAAAAAAAAA'
const user = (i: number) => `@user${i}:acme.example`
const device = (i: number) => `DEVICE${String(i).padStart(6, '0')}`

function fullAnswer(users: number) {
  const device_lists: Record<string, unknown> = {}
  const prekeys: Record<string, Record<string, unknown>> = {}
  for (let u = 0; u < users; u++) {
    const devices = Array.from({ length: MAX_LIST_DEVICES }, (_, d) => ({
      device_id: device(d),
      dsk: b64(32, d % 256),
      dxk: b64(32, (d + 1) % 256),
      added_ts: Number.MAX_SAFE_INTEGER,
    }))
    device_lists[user(u)] = {
      suite: 'e2e/v1',
      user_id: user(u),
      uik: b64(32),
      version: Number.MAX_SAFE_INTEGER,
      prev_hash: b64(32),
      devices,
      signature: b64(64),
    }
    prekeys[user(u)] = Object.fromEntries(
      devices.map((d) => [
        d.device_id,
        {
          suite: 'e2e/v1',
          spk_id: b64(16),
          public_key: b64(32),
          created_ts: Number.MAX_SAFE_INTEGER,
          signature: b64(64),
        },
      ]),
    )
  }
  return { type: 'keys_answer', req_id: REQ, device_lists, prekeys }
}

describe('key directory frames', () => {
  it('bounds a query to MAX_KEYS_PER_FRAME users', () => {
    const users = Array.from({ length: MAX_KEYS_PER_FRAME + 1 }, (_, i) => user(i))
    expect(KeysQueryFrame.safeParse({ type: 'keys_query', req_id: REQ, users }).success).toBe(false)
    expect(KeysQueryFrame.safeParse({ type: 'keys_query', req_id: REQ, users: users.slice(1) }).success).toBe(
      true,
    )
    expect(KeysQueryFrame.safeParse({ type: 'keys_query', req_id: 'short', users: [user(1)] }).success).toBe(
      false,
    )
  })

  it('fits the largest possible answer in one frame', () => {
    const frame = fullAnswer(MAX_KEYS_PER_FRAME)
    expect(KeysAnswerFrame.safeParse(frame).success).toBe(true)
    const bytes = new TextEncoder().encode(JSON.stringify(frame)).length
    expect(bytes).toBeLessThan(MAX_FRAME_BYTES)
    expect(KeysAnswerFrame.safeParse(fullAnswer(MAX_KEYS_PER_FRAME + 1)).success).toBe(false)
  })

  it('takes an error answer and a keys_changed, strictly', () => {
    const error = { type: 'keys_answer', req_id: REQ, errcode: 'P_LIMIT_EXCEEDED', error: 'slow down' }
    expect(KeysAnswerFrame.safeParse(error).success).toBe(true)
    expect(KeysAnswerFrame.safeParse({ ...error, device_lists: {} }).success).toBe(false)
    expect(KeysChangedRelayFrame.safeParse({ type: 'keys_changed', user_id: user(1) }).success).toBe(true)
    expect(KeysChangedRelayFrame.safeParse({ type: 'keys_changed', user_id: 'nope' }).success).toBe(false)
  })
})
