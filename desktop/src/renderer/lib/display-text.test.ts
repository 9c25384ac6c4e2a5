import { describe, expect, it } from 'vitest'
import { cleanText, displayName, safeFileName } from './display-text.ts'

describe('cleanText', () => {
  it('keeps markup as text and turns controls into single spaces', () => {
    expect(cleanText('<img src=x onerror=alert(1)>', 64)).toBe('<img src=x onerror=alert(1)>')
    expect(cleanText('line one\r\nline two\u0000\u2028end', 64)).toBe('line one line two end')
  })

  it('drops bidi overrides, embeddings and isolates', () => {
    expect(cleanText('\u202Egnp.exe', 64)).toBe('gnp.exe')
    expect(cleanText('a\u2066b\u2069c\u200f\u061c', 64)).toBe('abc')
  })

  it('keeps at most two combining marks in a row', () => {
    const zalgo = 'Z' + '\u0300\u0301\u0302\u0303\u0304\u0305'.repeat(10) + 'a\u0301'
    expect(cleanText(zalgo, 64)).toBe('Z\u0300\u0301a\u0301')
  })

  it('cuts at a code point boundary with an ellipsis', () => {
    expect(cleanText('x'.repeat(10_000), 64)).toBe('x'.repeat(63) + '…')
    expect(cleanText('😀'.repeat(5), 3)).toBe('😀😀…')
    expect(cleanText('😀😀', 2)).toBe('😀😀')
  })
})

describe('displayName', () => {
  it('falls back to the user id when the name is empty or only controls', () => {
    expect(displayName(undefined, '@a:acme.example')).toBe('@a:acme.example')
    expect(displayName(' \u202E\r\n', '@a:acme.example')).toBe('@a:acme.example')
    expect(displayName('Ada', '@a:acme.example')).toBe('Ada')
  })
})

describe('safeFileName', () => {
  it('never yields a path, a hidden file or an empty name', () => {
    expect(safeFileName('../../etc/passwd')).toBe('_.._etc_passwd')
    expect(safeFileName('..\\..\\boot.ini')).toBe('_.._boot.ini')
    expect(safeFileName('.bashrc')).toBe('bashrc')
    expect(safeFileName('...')).toBe('download')
    expect(safeFileName('<script>.png')).toBe('_script_.png')
    expect(safeFileName('a\r\nContent-Type: text/html.txt')).toBe('a Content-Type_ text_html.txt')
    expect(safeFileName('\u202Egnp.exe')).toBe('gnp.exe')
  })

  it('shortens long names and keeps the extension', () => {
    const name = safeFileName('a'.repeat(300) + '.pdf')
    expect(Array.from(name)).toHaveLength(120)
    expect(name.endsWith('…' + '.pdf')).toBe(true)
  })
})
