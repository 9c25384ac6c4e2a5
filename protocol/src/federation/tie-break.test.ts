import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import { simultaneousDialKeeps, survivingDialer } from './tie-break.ts'

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/)
const serverName = fc.array(label, { minLength: 1, maxLength: 3 }).map((labels) => labels.join('.'))

describe('simultaneous dial', () => {
  it('keeps the link dialled by the lexicographically smaller name', () => {
    expect(survivingDialer('beta.example', 'alpha.example')).toBe('alpha.example')
    expect(simultaneousDialKeeps('alpha.example', 'beta.example')).toBe('outbound')
    expect(simultaneousDialKeeps('beta.example', 'alpha.example')).toBe('inbound')
  })

  it('compares by code unit, not by label or length', () => {
    expect(survivingDialer('a.z', 'a-b.z')).toBe('a-b.z') // '-' (0x2d) sorts before '.' (0x2e)
    expect(survivingDialer('b.example', 'aa.example')).toBe('aa.example')
    expect(survivingDialer('acme.example', 'acme.example.org')).toBe('acme.example')
  })

  test.prop([serverName, serverName])('both sides keep the same socket', (a, b) => {
    fc.pre(a !== b)
    const fromA = simultaneousDialKeeps(a, b)
    const fromB = simultaneousDialKeeps(b, a)
    // A's outbound link is B's inbound one: exactly one of them is kept, and both agree which.
    expect(fromA === 'outbound').toBe(fromB === 'inbound')
    expect(survivingDialer(a, b)).toBe(survivingDialer(b, a))
  })

  it('throws on equal or invalid names (caller bugs)', () => {
    expect(() => survivingDialer('a.example', 'a.example')).toThrow(TypeError)
    expect(() => survivingDialer('A.example', 'b.example')).toThrow(TypeError)
    expect(() => simultaneousDialKeeps('a.example', '')).toThrow(TypeError)
  })
})
