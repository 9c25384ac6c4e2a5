import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { MAX_JSON_DEPTH, describeZodError, parseJson, validate } from './parse.ts'
import { ClientFrame } from './ws.ts'

const ROOM = '!AAAAAAAAAAAAAAAAAAAAAA:acme.example'
const EVENT = '$' + 'A'.repeat(42) + 'Q'

/** `levels` nested objects as JSON text: nestedContent(1) is `{"a":0}`. */
function nestedContent(levels: number): string {
  return '{"a":'.repeat(levels) + '0' + '}'.repeat(levels)
}

/** A send frame whose content is nested so that the whole frame has depth `depth` (>= 2). */
function sendFrameOfDepth(depth: number): string {
  return `{"type":"send","txn_id":"t1","room":"${ROOM}","event_type":"m.message","content":${nestedContent(depth - 1)}}`
}

describe('parseJson with ClientFrame', () => {
  const validFrames: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
    ['auth', { type: 'auth', token: 'secret-token' }],
    ['sync', { type: 'sync', since: 0 }],
    ['sync with a limit', { type: 'sync', since: Number.MAX_SAFE_INTEGER, limit: 1000 }],
    [
      'send',
      {
        type: 'send',
        txn_id: 'abc.DEF_~-1',
        room: ROOM,
        event_type: 'm.message',
        content: { body: 'hi', nested: { list: [1, 'two', null, true] } },
      },
    ],
    ['send with empty content', { type: 'send', txn_id: 't', room: ROOM, event_type: 'x', content: {} }],
    ['typing', { type: 'typing', room: ROOM, typing: true }],
    ['receipt', { type: 'receipt', room: ROOM, event_id: EVENT }],
    ['presence', { type: 'presence', status: 'away' }],
    ['ping', { type: 'ping' }],
    ['ping with an id', { type: 'ping', id: 'p1' }],
  ]

  it.each(validFrames)('parses a valid %s frame', (_name, frame) => {
    expect(parseJson(ClientFrame, JSON.stringify(frame))).toEqual({ ok: true, value: frame })
  })

  it.each([
    ['empty text', ''],
    ['a truncated object', '{"type":"ping"'],
    ['single quotes', "{'type':'ping'}"],
    ['a trailing comma', '{"type":"ping",}'],
    ['a bare word', 'undefined'],
    ['NaN', 'NaN'],
    ['a comment', '{"type":"ping"} // hi'],
    ['two values', '{"type":"ping"}{"type":"ping"}'],
    ['an unescaped control character', '{"type":"ping","id":"a\u0001b"}'],
  ])('reports %s as bad_json', (_name, text) => {
    expect(parseJson(ClientFrame, text)).toEqual({
      ok: false,
      error: { kind: 'bad_json', message: 'not valid JSON' },
    })
  })

  it.each([
    ['null', 'null'],
    ['a number', '1'],
    ['a string', '"ping"'],
    ['an array', '[{"type":"ping"}]'],
    ['an object without a type', '{}'],
  ])('reports valid JSON that is not a frame (%s) as bad_request', (_name, text) => {
    const result = parseJson(ClientFrame, text)
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.error.kind).toBe('bad_request')
  })

  it.each([
    ['an unknown type', { type: 'shout' }, /^type: /],
    ['a negative cursor', { type: 'sync', since: -1 }, /^since: /],
    ['a fractional cursor', { type: 'sync', since: 1.5 }, /^since: /],
    ['a limit over 1000', { type: 'sync', since: 0, limit: 1001 }, /^limit: /],
    [
      'a malformed room id',
      { type: 'typing', room: '!nope:acme.example', typing: true },
      /^room: invalid room id$/,
    ],
    [
      'a malformed event id',
      { type: 'receipt', room: ROOM, event_id: '$short' },
      /^event_id: invalid event id$/,
    ],
    [
      'a bad txn id',
      { type: 'send', txn_id: 'has space', room: ROOM, event_type: 'm', content: {} },
      /^txn_id: /,
    ],
    [
      'content that is not an object',
      { type: 'send', txn_id: 't', room: ROOM, event_type: 'm', content: [] },
      /^content: /,
    ],
    ['an unknown presence', { type: 'presence', status: 'busy' }, /^status: /],
    ['an empty token', { type: 'auth', token: '' }, /^token: /],
    ['a wrong field type', { type: 'typing', room: ROOM, typing: 'yes' }, /^typing: /],
    ['a missing field', { type: 'receipt', room: ROOM }, /^event_id: /],
  ])('reports %s as bad_request naming the path', (_name, frame, message) => {
    const result = parseJson(ClientFrame, JSON.stringify(frame))
    expect(result.ok).toBe(false)
    if (result.ok) return
    expect(result.error.kind).toBe('bad_request')
    expect(result.error.message).toMatch(message)
  })

  it('rejects an unknown key in a strict frame', () => {
    const result = parseJson(ClientFrame, '{"type":"ping","extra":1}')
    expect(result).toMatchObject({ ok: false, error: { kind: 'bad_request' } })
    if (!result.ok) expect(result.error.message).toContain('extra')
  })

  it(`accepts a frame nested exactly MAX_JSON_DEPTH (${MAX_JSON_DEPTH}) deep`, () => {
    expect(MAX_JSON_DEPTH).toBe(16)
    expect(parseJson(ClientFrame, sendFrameOfDepth(MAX_JSON_DEPTH)).ok).toBe(true)
  })

  it('rejects a frame nested one level deeper, before schema validation', () => {
    expect(parseJson(ClientFrame, sendFrameOfDepth(MAX_JSON_DEPTH + 1))).toEqual({
      ok: false,
      error: { kind: 'bad_request', message: 'JSON nested too deeply' },
    })
    expect(parseJson(ClientFrame, '['.repeat(17) + ']'.repeat(17))).toEqual({
      ok: false,
      error: { kind: 'bad_request', message: 'JSON nested too deeply' },
    })
  })

  it('rejects 100k-deep JSON as too deep without overflowing the stack', () => {
    const arrays = '['.repeat(100_000) + ']'.repeat(100_000)
    const objects = `{"type":"send","content":${nestedContent(100_000)}}`
    for (const text of [arrays, objects]) {
      expect(parseJson(ClientFrame, text)).toEqual({
        ok: false,
        error: { kind: 'bad_request', message: 'JSON nested too deeply' },
      })
    }
  })
})

describe('prototype pollution', () => {
  const probe = (): unknown => (Object.prototype as Record<string, unknown>)['polluted']

  it('rejects a top-level __proto__ key as an unknown key, leaving Object.prototype alone', () => {
    const result = parseJson(ClientFrame, '{"type":"ping","__proto__":{"polluted":true}}')
    expect(result).toMatchObject({ ok: false, error: { kind: 'bad_request' } })
    expect(probe()).toBeUndefined()
  })

  it('never turns a __proto__ key inside content into a prototype', () => {
    const text =
      `{"type":"send","txn_id":"t1","room":"${ROOM}","event_type":"m.message",` +
      `"content":{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"body":"hi"}}`
    const result = parseJson(ClientFrame, text)
    expect(result.ok).toBe(true)
    if (!result.ok || result.value.type !== 'send') return
    const content = result.value.content
    expect(Object.getPrototypeOf(content)).toBe(Object.prototype)
    expect(content['polluted']).toBeUndefined()
    expect(content['body']).toBe('hi')
    expect(probe()).toBeUndefined()
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
  })
})

describe('validate', () => {
  it('validates an already-parsed value', () => {
    expect(validate(ClientFrame, { type: 'ping' })).toEqual({ ok: true, value: { type: 'ping' } })
    expect(validate(ClientFrame, { type: 'ping', id: 7 })).toMatchObject({
      ok: false,
      error: { kind: 'bad_request' },
    })
  })

  it('checks depth before the schema, even for schemas that accept anything', () => {
    let deep: unknown = 0
    for (let i = 0; i < 100_000; i++) deep = [deep]
    expect(validate(z.unknown(), deep)).toEqual({
      ok: false,
      error: { kind: 'bad_request', message: 'JSON nested too deeply' },
    })
  })

  it('returns the parsed (transformed) output of the schema', () => {
    const schema = z.object({ name: z.string().transform((s) => s.toLowerCase()) })
    expect(validate(schema, { name: 'ALICE' })).toEqual({ ok: true, value: { name: 'alice' } })
  })
})

describe('describeZodError', () => {
  it('names the path of the first issue', () => {
    const schema = z.object({ a: z.object({ b: z.array(z.number()) }) })
    const result = schema.safeParse({ a: { b: [1, 'x'] } })
    expect(result.success).toBe(false)
    if (!result.success) expect(describeZodError(result.error)).toMatch(/^a\.b\.1: /)
  })

  it('omits the path prefix for a root issue', () => {
    const result = z.number().safeParse('x')
    expect(result.success).toBe(false)
    if (!result.success) expect(describeZodError(result.error)).toBe(result.error.issues[0]!.message)
  })

  it('caps the message at 200 characters', () => {
    const long = 'k'.repeat(500)
    const result = z.strictObject({}).safeParse({ [long]: 1 })
    expect(result.success).toBe(false)
    if (!result.success) expect(describeZodError(result.error).length).toBeLessThanOrEqual(200)
  })

  it('falls back to a generic message when there is no issue', () => {
    expect(describeZodError(new z.ZodError([]))).toBe('invalid input')
  })
})

describe('parseJson never throws', () => {
  const frameText = fc
    .record(
      {
        type: fc.constantFrom(
          'auth',
          'sync',
          'send',
          'typing',
          'receipt',
          'presence',
          'ping',
          'pong',
          '__proto__',
        ),
        token: fc.string(),
        since: fc.oneof(fc.integer(), fc.double()),
        room: fc.oneof(fc.constant(ROOM), fc.string()),
        content: fc.jsonValue({ maxDepth: 20 }),
      },
      { requiredKeys: ['type'] },
    )
    .map((frame) => JSON.stringify(frame))

  it('on arbitrary text, returning a Result of a known kind', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json({ maxDepth: 20 }), frameText), (text) => {
        const result = parseJson(ClientFrame, text)
        if (result.ok) expect(ClientFrame.safeParse(result.value).success).toBe(true)
        else expect(['bad_json', 'bad_request']).toContain(result.error.kind)
      }),
      { numRuns: 1000 },
    )
  })

  const validFrame = fc.oneof(
    fc.record({ type: fc.constant('auth'), token: fc.string({ minLength: 1, maxLength: 512 }) }),
    fc.record(
      { type: fc.constant('sync'), since: fc.maxSafeNat(), limit: fc.integer({ min: 1, max: 1000 }) },
      { requiredKeys: ['type', 'since'] },
    ),
    fc.record({
      type: fc.constant('send'),
      txn_id: fc.stringMatching(/^[A-Za-z0-9._~-]{1,64}$/),
      room: fc.constant(ROOM),
      event_type: fc.string({ minLength: 1, maxLength: 128 }),
      content: fc.dictionary(
        fc.string().filter((k) => k !== '__proto__'),
        fc.jsonValue({ maxDepth: 3 }),
        { maxKeys: 4 },
      ),
    }),
    fc.record({ type: fc.constant('typing'), room: fc.constant(ROOM), typing: fc.boolean() }),
    fc.record({ type: fc.constant('receipt'), room: fc.constant(ROOM), event_id: fc.constant(EVENT) }),
    fc.record({ type: fc.constant('presence'), status: fc.constantFrom('online', 'away', 'offline') }),
    fc.record({ type: fc.constant('ping'), id: fc.string({ maxLength: 64 }) }, { requiredKeys: ['type'] }),
  )

  it('parses every valid frame to the value that was sent', () => {
    fc.assert(
      fc.property(validFrame, (frame) => {
        const text = JSON.stringify(frame)
        expect(parseJson(ClientFrame, text)).toEqual({ ok: true, value: JSON.parse(text) })
      }),
      { numRuns: 300 },
    )
  })
})
