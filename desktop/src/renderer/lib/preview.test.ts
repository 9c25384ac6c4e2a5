import { describe, expect, it } from 'vitest'
import type { ClientEvent } from '@parley/protocol/schema'
import { previewLine, previewOf } from './preview.ts'

const ME = '@me:acme.example'
const BOB = '@bob:globex.example'
const ev = (sender: string, content: Record<string, unknown>): ClientEvent =>
  ({ sender, content, type: 'm.message' }) as unknown as ClientEvent
const names = (u: string) => (u === BOB ? 'Bob' : u)
const line = (sender: string, content: Record<string, unknown>) =>
  previewLine(previewOf(ev(sender, content)), ME, names)

describe('room list previews', () => {
  it('say an event is encrypted until it decrypts, and what a decrypted reaction was', () => {
    const encrypted = { ...ev(BOB, { ciphertext: 'x' }), type: 'm.encrypted' } as ClientEvent
    expect(previewLine(previewOf(encrypted), ME, names)).toBe('Bob: 🔒 Encrypted message')
    const reaction = { ...ev(ME, { target: '$e', key: '👍' }), type: 'm.reaction' } as ClientEvent
    expect(previewLine(previewOf(reaction), ME, names)).toBe('You: reacted 👍')
  })

  it('say who and the start of what, as plain text', () => {
    expect(line(BOB, { body: '**hello** _there_\nsecond line' })).toBe('Bob: hello there')
    expect(line(ME, { body: '\n\n> quoted [link](https://x.example)' })).toBe('You: quoted link')
  })

  it('keep no names: the sender is resolved when shown', () => {
    const preview = previewOf(ev(BOB, { body: 'hi' }))
    expect(preview).toEqual({ sender: BOB, kind: 'text', text: 'hi' })
    expect(previewLine(preview, ME, (u) => (u === BOB ? 'Robert' : u))).toBe('Robert: hi')
  })

  it('name attachments and deleted messages, and stay short', () => {
    expect(line(BOB, { body: 'x.png', attachment: { name: 'x.png' } })).toBe('Bob: 📎 x.png')
    expect(line(BOB, {})).toBe('Bob: Message deleted')
    const long = line(BOB, { body: 'y'.repeat(500) })
    expect(long).toHaveLength(80)
    expect(long.endsWith('…')).toBe(true)
    expect(previewOf(ev(BOB, { body: 'z'.repeat(500) })).text).toHaveLength(80)
  })

  it('keep markup as text (the list renders it as text, never HTML)', () => {
    expect(line(BOB, { body: '<img src=x onerror=alert(1)>' })).toBe('Bob: <img src=x onerror=alert(1)>')
  })
})
