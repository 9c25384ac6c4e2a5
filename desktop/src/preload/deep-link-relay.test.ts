/**
 * The preload's deep-link relay (deep-link-relay.ts) and the checks on values from main
 * (shared/bridge-values.ts), with a stand-in for main: an inbox and the announcement event.
 */
import { describe, expect, it, vi } from 'vitest'
import { clip, isCacheKey, toDeepLink } from '../shared/bridge-values.ts'
import { createDeepLinkRelay } from './deep-link-relay.ts'

const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
const OTHER = '!BBBBBBBBBBBBBBBBBBBBBB:globex.example'

/** Main's side: links wait in `inbox`; `announce()` is the main -> renderer event. */
function fakeMain(initial: unknown[] = []) {
  const inbox = [...initial]
  let announced: (() => void) | null = null
  const take = vi.fn(async (): Promise<unknown> => inbox.splice(0))
  const reportError = vi.fn()
  const relay = createDeepLinkRelay({ onAnnounce: (f) => void (announced = f), take, reportError })
  return {
    inbox,
    take,
    reportError,
    onDeepLink: relay,
    announce: () => announced?.(),
    /**
     * Waits until every take() so far settled and the relay handled its answer: the relay attached its
     * handlers to each promise first, so they have run when these settle.
     */
    settle: () => Promise.allSettled(take.mock.results.map((r) => r.value as unknown)).then(() => {}),
  }
}

describe('deep-link relay (preload)', () => {
  it('delivers a link that waited in main since launch when the page subscribes', async () => {
    const main = fakeMain([{ kind: 'room', room: ROOM }])
    const got = vi.fn()
    main.onDeepLink(got)
    await main.settle()
    expect(got).toHaveBeenCalledExactlyOnceWith({ kind: 'room', room: ROOM })
    expect(main.inbox).toEqual([])
  })

  it('does not take links from main before anyone listens', async () => {
    const main = fakeMain()
    main.inbox.push({ kind: 'invite', room: ROOM })
    main.announce()
    await main.settle()
    expect(main.take).not.toHaveBeenCalled()
    expect(main.inbox).toHaveLength(1)
  })

  it('pulls announced links while subscribed, and stops after unsubscribe', async () => {
    const main = fakeMain()
    const got = vi.fn()
    const unsubscribe = main.onDeepLink(got)
    await main.settle()
    main.inbox.push({ kind: 'invite', room: ROOM })
    main.announce()
    await main.settle()
    expect(got).toHaveBeenLastCalledWith({ kind: 'invite', room: ROOM })
    unsubscribe()
    main.inbox.push({ kind: 'room', room: OTHER })
    main.announce()
    await main.settle()
    expect(got).toHaveBeenCalledOnce()
    expect(main.inbox).toHaveLength(1)
  })

  it('holds links taken while the last listener left, for the next one', async () => {
    const main = fakeMain([{ kind: 'room', room: ROOM }])
    const first = vi.fn()
    const unsubscribe = main.onDeepLink(first)
    unsubscribe() // before main answered
    await main.settle()
    expect(first).not.toHaveBeenCalled()
    const second = vi.fn()
    main.onDeepLink(second)
    expect(second).toHaveBeenCalledExactlyOnceWith({ kind: 'room', room: ROOM })
  })

  it('passes only well-formed links on, as fresh plain objects per listener', async () => {
    const main = fakeMain([
      { kind: 'delete', room: ROOM },
      { kind: 'room', room: 42 },
      { kind: 'room', room: '' },
      'parley://room/x',
      null,
      { kind: 'room', room: ROOM, extra: 'dropped' },
    ])
    const a = vi.fn((link: { room: string }) => {
      link.room = 'mutated'
    })
    const b = vi.fn()
    main.onDeepLink(a)
    main.onDeepLink(b)
    await main.settle()
    expect(b).toHaveBeenCalledExactlyOnceWith({ kind: 'room', room: ROOM })
    expect(a).toHaveBeenCalledOnce()
  })

  it('survives a malformed answer, a refused take and a throwing listener', async () => {
    const main = fakeMain()
    main.take.mockResolvedValueOnce({ not: 'an array' }).mockRejectedValueOnce(new Error('refused'))
    const good = vi.fn()
    main.onDeepLink(() => {
      throw new Error('listener bug')
    })
    main.onDeepLink(good)
    await main.settle()
    expect(main.take).toHaveBeenCalledTimes(2)
    main.inbox.push({ kind: 'room', room: ROOM })
    main.announce()
    await main.settle()
    expect(good).toHaveBeenCalledExactlyOnceWith({ kind: 'room', room: ROOM })
    expect(main.reportError).toHaveBeenCalledExactlyOnceWith(new Error('listener bug'))
  })
})

describe('values from main', () => {
  it('checks the deep link shape', () => {
    expect(toDeepLink({ kind: 'invite', room: ROOM })).toEqual({ kind: 'invite', room: ROOM })
    for (const value of [undefined, [], { kind: 'room' }, { kind: 'room', room: 'x'.repeat(300) }])
      expect(toDeepLink(value), JSON.stringify(value)).toBeNull()
  })

  it('accepts only 32-byte base64url cache keys', () => {
    const key = Buffer.alloc(32, 7).toString('base64url')
    expect(isCacheKey(key)).toBe(true)
    for (const value of [
      null,
      key.slice(1),
      key + 'A',
      Buffer.alloc(32, 7).toString('base64'),
      key.slice(0, 42) + 'B', // non-zero padding bits: not the encoding of 32 bytes
    ])
      expect(isCacheKey(value), String(value)).toBe(false)
  })
})

describe('clip', () => {
  it('keeps short text, cuts long text to the limit with an ellipsis, never splitting a surrogate pair', () => {
    expect(clip('hello', 5)).toBe('hello')
    expect(clip('hello world', 6)).toBe('hello…')
    expect(clip('hello world', 6)).toHaveLength(6)
    const emoji = 'ab😀cd' // the emoji is two UTF-16 units at 2..3
    expect(clip(emoji, 4)).toBe('ab…')
    expect(clip('x'.repeat(32_000), 1000)).toHaveLength(1000)
  })
})
