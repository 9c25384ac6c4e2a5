import { describe, expect, it } from 'vitest'
import { mentionsIn, mentionsUser } from './mentions.ts'

describe('mentions', () => {
  it('finds valid user ids in order, once each, without trailing punctuation', () => {
    expect(mentionsIn('hi @bob:globex.example, and @ann:acme.example. @bob:globex.example again')).toEqual([
      '@bob:globex.example',
      '@ann:acme.example',
    ])
    expect(mentionsIn('(@carol:acme.example) and @dave:acme.example-')).toEqual([
      '@carol:acme.example',
      '@dave:acme.example',
    ])
  })

  it('ignores what is not a user id: e-mail addresses, bare names, invalid hosts', () => {
    expect(mentionsIn('mail bob@globex.example or @bob or @:x or @Bob:globex.example')).toEqual([])
    expect(mentionsIn('@bob:-bad-.example')).toEqual([])
  })

  it('caps the list at 50', () => {
    const body = Array.from({ length: 60 }, (_, i) => `@u${i}:acme.example`).join(' ')
    expect(mentionsIn(body)).toHaveLength(50)
  })

  it('a message mentions me only when its content lists me', () => {
    expect(mentionsUser({ body: 'x', mentions: ['@me:a.example'] }, '@me:a.example')).toBe(true)
    expect(mentionsUser({ body: '@me:a.example' }, '@me:a.example')).toBe(false)
    expect(mentionsUser({ body: 'x', mentions: '@me:a.example' }, '@me:a.example')).toBe(false)
    expect(mentionsUser({ body: 'x', mentions: ['@me:a.example'] }, null)).toBe(false)
  })
})
