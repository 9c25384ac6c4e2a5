/**
 * A QR code as one SVG path (E2E.md section 2.1: the verification code another device scans). Bytes go
 * in byte mode unchanged: the payload is binary (full identity keys), never text.
 */
import qrcode from 'qrcode-generator'

export interface QrDrawing {
  /** Modules per side, the quiet zone included (the SVG's viewBox is size x size). */
  readonly size: number
  /** One unit square per dark module. */
  readonly path: string
}

const QUIET = 4

export function qrDrawing(payload: Uint8Array): QrDrawing {
  const qr = qrcode(0, 'M')
  // qrcode-generator's byte mode takes each char code & 0xff: a binary string is the bytes as they are.
  qr.addData(String.fromCharCode(...payload), 'Byte')
  qr.make()
  const n = qr.getModuleCount()
  const parts: string[] = []
  for (let row = 0; row < n; row++)
    for (let col = 0; col < n; col++)
      if (qr.isDark(row, col)) parts.push(`M${col + QUIET} ${row + QUIET}h1v1h-1z`)
  return { size: n + 2 * QUIET, path: parts.join('') }
}
