import { describe, expect, it } from 'vitest'
import { roomLabel } from './room-label.ts'

const base = { room_id: '!AAAAAAAAAAAAAAAAAAAAAA:acme.example', name: '' }

describe('roomLabel', () => {
  it('names a DM after the other person, whatever name it was given (no impersonation by rename)', () => {
    expect(roomLabel({ ...base, kind: 'dm', dm_peer: '@bob:globex.example' })).toBe('@bob:globex.example')
    expect(
      roomLabel({ ...base, kind: 'dm', name: '@ceo:acme.example', dm_peer: '@mallory:evil.example' }),
    ).toBe('@mallory:evil.example')
    expect(roomLabel({ ...base, kind: 'dm' })).toBe('Direct message')
  })

  it('names other rooms by their name, else their id', () => {
    expect(roomLabel({ ...base, kind: 'group', name: 'Ops' })).toBe('Ops')
    expect(roomLabel({ ...base, kind: 'broadcast' })).toBe(base.room_id)
    expect(roomLabel(undefined, '!x:y')).toBe('!x:y')
  })
})
