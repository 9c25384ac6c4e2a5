import { describe, expect, it } from 'vitest'
import { qrDrawing } from './qr.ts'

describe('qrDrawing', () => {
  it('draws binary payloads byte for byte: different bytes above 0x7f give different codes', () => {
    const a = new Uint8Array(180).map((_, i) => (i * 37) & 0xff)
    const b = a.slice()
    b[100] = b[100]! ^ 0x80
    const da = qrDrawing(a)
    expect(da.size).toBeGreaterThan(21 + 8)
    expect(da.path).toMatch(/^(M\d+ \d+h1v1h-1z)+$/)
    expect(qrDrawing(b).path).not.toBe(da.path)
    expect(qrDrawing(a)).toEqual(da)
  })
})
