import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  MAX_ID_LENGTH,
  isDeviceId,
  isEventId,
  isLocalpart,
  isServerName,
  newDeviceId,
  newRoomId,
  parseRoomId,
  parseUserId,
  serverOf,
  userId,
} from './ids.ts'

const label63 = 'a'.repeat(63)
// 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters, the DNS maximum.
const name253 = [label63, label63, label63, 'b'.repeat(61)].join('.')
const name254 = [label63, label63, label63, 'b'.repeat(62)].join('.')
const ROOM_LOCAL = 'AbCdEfGhIjKlMnOpQr-_09'

describe('isServerName', () => {
  it.each([
    'acme.example',
    'acme.localhost',
    'localhost',
    'a',
    '0',
    'a-b.c',
    'a--b.example',
    'xn--bcher-kva.example',
    'sub.domain.acme.example',
    '123.example',
    label63 + '.example',
    name253,
  ])('accepts %j', (name) => {
    expect(isServerName(name)).toBe(true)
  })

  it.each([
    ['the empty string', ''],
    ['uppercase', 'Acme.example'],
    ['a port', 'acme.example:8448'],
    ['an empty label', 'acme..example'],
    ['a leading dot', '.acme.example'],
    ['a trailing dot', 'acme.example.'],
    ['a lone dot', '.'],
    ['a leading hyphen', '-acme.example'],
    ['a trailing hyphen in a label', 'acme-.example'],
    ['a leading hyphen in a later label', 'acme.-example'],
    ['a 64-character label', 'a'.repeat(64) + '.example'],
    ['254 characters', name254],
    ['an underscore', 'acme_example'],
    ['a space', 'acme example'],
    ['a non-ASCII letter', 'bücher.example'],
    ['an IPv6 literal', '[::1]'],
    ['a slash', 'acme.example/x'],
    ['an at sign', 'alice@acme.example'],
    ['a trailing newline', 'acme.example\n'],
  ])('rejects %s', (_name, name) => {
    expect(isServerName(name)).toBe(false)
  })
})

describe('isLocalpart', () => {
  it.each(['alice', 'a', '0', 'a.b_c=d-e', '_', 'x'.repeat(64)])('accepts %j', (localpart) => {
    expect(isLocalpart(localpart)).toBe(true)
  })

  it.each([
    ['the empty string', ''],
    ['65 characters', 'x'.repeat(65)],
    ['uppercase', 'Alice'],
    ['a space', 'al ice'],
    ['a colon', 'al:ice'],
    ['an at sign', 'al@ice'],
    ['a slash', 'al/ice'],
    ['a plus', 'al+ice'],
    ['a non-ASCII letter', 'zoë'],
    ['a trailing newline', 'alice\n'],
  ])('rejects %s', (_name, localpart) => {
    expect(isLocalpart(localpart)).toBe(false)
  })
})

describe('user ids', () => {
  it.each([
    ['@alice:acme.example', 'alice', 'acme.example'],
    ['@a:b', 'a', 'b'],
    ['@bob.smith_=-:acme.localhost', 'bob.smith_=-', 'acme.localhost'],
    ['@' + 'x'.repeat(64) + ':acme.example', 'x'.repeat(64), 'acme.example'],
  ])('parses %j', (id, localpart, server) => {
    expect(parseUserId(id)).toEqual({ localpart, server })
    expect(userId(localpart, server)).toBe(id)
    expect(serverOf(id)).toBe(server)
  })

  it.each([
    ['no sigil', 'alice:acme.example'],
    ['the room sigil', '!alice:acme.example'],
    ['no server', '@alice'],
    ['an empty localpart', '@:acme.example'],
    ['an empty server', '@alice:'],
    ['an uppercase localpart', '@Alice:acme.example'],
    ['an uppercase server', '@alice:ACME.example'],
    ['a port', '@alice:acme.example:8448'],
    ['a second colon', '@al:ice:acme.example'],
    ['a space', '@alice :acme.example'],
    ['a 65-character localpart', '@' + 'x'.repeat(65) + ':acme.example'],
    ['more than MAX_ID_LENGTH characters', '@' + 'x'.repeat(64) + ':' + name253],
    ['the empty string', ''],
  ])('rejects %s', (_name, id) => {
    expect(parseUserId(id)).toBeNull()
    expect(serverOf(id)).toBeNull()
  })

  it('refuses to build a user id from invalid parts', () => {
    expect(() => userId('Alice', 'acme.example')).toThrow(TypeError)
    expect(() => userId('alice', 'acme.example:8448')).toThrow(TypeError)
    expect(() => userId('', 'acme.example')).toThrow(TypeError)
  })

  it('refuses to build a user id longer than MAX_ID_LENGTH, which the parser would reject', () => {
    const server = [label63, label63, label63].join('.')
    // '@' + 62 + ':' + 191 = 255 characters: the longest id.
    expect(parseUserId(userId('x'.repeat(62), server))).toEqual({ localpart: 'x'.repeat(62), server })
    expect(() => userId('x'.repeat(63), server)).toThrow(TypeError)
    expect(() => userId('x'.repeat(64), name253)).toThrow(TypeError)
  })

  it('parses every id that userId builds', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9._=-]{1,64}$/),
        fc.domain().map((d) => d.toLowerCase()),
        (localpart, server) => {
          fc.pre(isServerName(server))
          let id: string
          try {
            id = userId(localpart, server)
          } catch {
            // Only an id too long to parse may be refused.
            expect(localpart.length + server.length + 2).toBeGreaterThan(MAX_ID_LENGTH)
            return
          }
          expect(parseUserId(id)).toEqual({ localpart, server })
        },
      ),
    )
  })
})

describe('room ids', () => {
  it.each([
    ['!' + ROOM_LOCAL + ':acme.example', ROOM_LOCAL, 'acme.example'],
    ['!AAAAAAAAAAAAAAAAAAAAAA:localhost', 'A'.repeat(22), 'localhost'],
  ])('parses %j', (id, local, server) => {
    expect(parseRoomId(id)).toEqual({ local, server })
    expect(serverOf(id)).toBe(server)
  })

  it.each([
    ['no sigil', ROOM_LOCAL + ':acme.example'],
    ['the user sigil', '@' + ROOM_LOCAL + ':acme.example'],
    ['no server', '!' + ROOM_LOCAL],
    ['an empty server', '!' + ROOM_LOCAL + ':'],
    ['a 21-character local part', '!' + ROOM_LOCAL.slice(1) + ':acme.example'],
    ['a 23-character local part', '!' + ROOM_LOCAL + 'A:acme.example'],
    ['a standard-alphabet "+"', '!' + ROOM_LOCAL.slice(1) + '+:acme.example'],
    ['a standard-alphabet "/"', '!' + ROOM_LOCAL.slice(1) + '/:acme.example'],
    ['an uppercase server', '!' + ROOM_LOCAL + ':Acme.example'],
    ['a port', '!' + ROOM_LOCAL + ':acme.example:8448'],
    ['more than MAX_ID_LENGTH characters', '!' + ROOM_LOCAL + ':' + name253],
  ])('rejects %s', (_name, id) => {
    expect(parseRoomId(id)).toBeNull()
    expect(serverOf(id)).toBeNull()
  })

  it('draws 1000 distinct parseable room ids', () => {
    const ids = new Set<string>()
    for (let i = 0; i < 1000; i++) {
      const id = newRoomId('acme.example')
      expect(parseRoomId(id)?.server).toBe('acme.example')
      ids.add(id)
    }
    expect(ids.size).toBe(1000)
  })

  it('refuses an invalid server name', () => {
    expect(() => newRoomId('Acme.example')).toThrow(TypeError)
    expect(() => newRoomId('acme.example:8448')).toThrow(TypeError)
    expect(() => newRoomId('')).toThrow(TypeError)
  })

  it('refuses a server name too long for a parseable room id', () => {
    expect(() => newRoomId(name253)).toThrow(TypeError)
    const longest = [label63, label63, label63, 'b'.repeat(MAX_ID_LENGTH - 24 - 3 * 64)].join('.')
    expect(parseRoomId(newRoomId(longest))?.server).toBe(longest)
  })
})

describe('event ids', () => {
  const valid = '$' + 'A'.repeat(42) + 'Q'
  it.each([valid, '$' + 'a-_9'.repeat(10) + 'xyz'])('accepts %j', (id) => {
    expect(isEventId(id)).toBe(true)
  })

  it.each([
    ['no sigil', 'A'.repeat(43)],
    ['the wrong sigil', '!' + 'A'.repeat(43)],
    ['42 characters', '$' + 'A'.repeat(42)],
    ['44 characters', '$' + 'A'.repeat(44)],
    ['padding', '$' + 'A'.repeat(42) + '='],
    ['a standard-alphabet "+"', '$' + 'A'.repeat(42) + '+'],
    ['a standard-alphabet "/"', '$' + 'A'.repeat(42) + '/'],
    ['a trailing newline', valid + '\n'],
    ['the empty string', ''],
  ])('rejects %s', (_name, id) => {
    expect(isEventId(id)).toBe(false)
  })
})

describe('device ids', () => {
  it.each(['ABCDEFGHIJKL', '0123456789AB', 'Z'.repeat(12)])('accepts %j', (id) => {
    expect(isDeviceId(id)).toBe(true)
  })

  it.each([
    ['lowercase', 'abcdefghijkl'],
    ['11 characters', 'ABCDEFGHIJK'],
    ['13 characters', 'ABCDEFGHIJKLM'],
    ['a hyphen', 'ABCDEF-HIJKL'],
    ['an underscore', 'ABCDEF_HIJKL'],
    ['a trailing newline', 'ABCDEFGHIJKL\n'],
    ['the empty string', ''],
  ])('rejects %s', (_name, id) => {
    expect(isDeviceId(id)).toBe(false)
  })

  it('draws 1000 distinct valid device ids over the whole alphabet', () => {
    const ids = new Set<string>()
    const seen = new Set<string>()
    for (let i = 0; i < 1000; i++) {
      const id = newDeviceId()
      expect(isDeviceId(id)).toBe(true)
      ids.add(id)
      for (const c of id) seen.add(c)
    }
    expect(ids.size).toBe(1000)
    // 12000 draws: each of the 36 characters is expected ~333 times, so a missing one is a bug.
    expect([...seen].sort().join('')).toBe('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ')
  })
})

describe('parsers on hostile input', () => {
  const idLike = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc
      .tuple(fc.constantFrom('@', '!', '$', ''), fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }))
      .map(([sigil, a, b]) => `${sigil}${a}:${b}`),
  )

  it('never throw, and agree with each other', () => {
    fc.assert(
      fc.property(idLike, (text) => {
        const user = parseUserId(text)
        const room = parseRoomId(text)
        expect(() => isServerName(text)).not.toThrow()
        expect(() => isLocalpart(text)).not.toThrow()
        expect(() => isEventId(text)).not.toThrow()
        expect(() => isDeviceId(text)).not.toThrow()
        expect(user === null || room === null).toBe(true)
        expect(serverOf(text)).toBe(user?.server ?? room?.server ?? null)
        if (user) expect(userId(user.localpart, user.server)).toBe(text)
        if (room) expect(`!${room.local}:${room.server}`).toBe(text)
      }),
      { numRuns: 500 },
    )
  })
})
