// Builds the Electron main process and preload (TypeScript) into dist/main and dist/preload as
// CommonJS bundles; `electron` stays external. The renderer is built by vite into dist/web.
// Also draws the tray icons into dist/main/icons (packaged with dist/main/**, loaded from the asar).
import { build } from 'esbuild'
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { crc32, deflateSync } from 'node:zlib'

const root = fileURLToPath(new URL('..', import.meta.url))
const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['electron'],
  absWorkingDir: root,
  logLevel: 'warning',
}
await build({ ...common, entryPoints: ['src/main/main.ts'], outfile: 'dist/main/main.cjs' })
await build({ ...common, entryPoints: ['src/preload/preload.ts'], outfile: 'dist/preload/preload.cjs' })

// Tray icons: a speech bubble with three dots, drawn with 4x4 supersampling. tray.png (Windows, Linux)
// in the app's accent colour with white dots; trayTemplate.png and @2x (macOS) black on transparent with
// the dots cut out, which the menu bar tints for light and dark.
const ACCENT = [0x2c, 0x5f, 0xd9]
const DOTS = [0.31, 0.5, 0.69].map((x) => [x, 0.44])

/** Coverage of the point (x, y) of the unit square: 'bubble', 'dot' or null. */
function shapeAt(x, y) {
  for (const [cx, cy] of DOTS) if ((x - cx) ** 2 + (y - cy) ** 2 <= 0.075 ** 2) return 'dot'
  const [left, top, right, bottom, r] = [0.06, 0.12, 0.94, 0.72, 0.2]
  const nx = Math.min(Math.max(x, left + r), right - r)
  const ny = Math.min(Math.max(y, top + r), bottom - r)
  if ((x - nx) ** 2 + (y - ny) ** 2 <= r * r) return 'bubble'
  // The tail: the triangle (0.22, 0.66), (0.46, 0.66), (0.16, 0.94).
  const side = (ax, ay, bx, by) => (bx - ax) * (y - ay) - (by - ay) * (x - ax)
  const s1 = side(0.22, 0.66, 0.46, 0.66)
  const s2 = side(0.46, 0.66, 0.16, 0.94)
  const s3 = side(0.16, 0.94, 0.22, 0.66)
  return (s1 >= 0 && s2 >= 0 && s3 >= 0) || (s1 <= 0 && s2 <= 0 && s3 <= 0) ? 'bubble' : null
}

/** RGBA pixels of a size x size icon; `template` selects the macOS variant. */
function drawIcon(size, template) {
  const pixels = Buffer.alloc(size * size * 4)
  const n = 4
  for (let py = 0; py < size; py++)
    for (let px = 0; px < size; px++) {
      let bubble = 0
      let dot = 0
      for (let sy = 0; sy < n; sy++)
        for (let sx = 0; sx < n; sx++) {
          const shape = shapeAt((px + (sx + 0.5) / n) / size, (py + (sy + 0.5) / n) / size)
          if (shape === 'bubble') bubble++
          else if (shape === 'dot') dot++
        }
      const i = (py * size + px) * 4
      if (template) {
        pixels.set([0, 0, 0, Math.round((255 * bubble) / (n * n))], i)
      } else {
        const alpha = (bubble + dot) / (n * n)
        const white = bubble + dot === 0 ? 0 : dot / (bubble + dot)
        const rgb = ACCENT.map((c) => Math.round(c + (255 - c) * white))
        pixels.set([...rgb, Math.round(255 * alpha)], i)
      }
    }
  return pixels
}

/** A PNG (RFC 2083): 8-bit RGBA, no interlace, filter 0 on every row. */
function encodePng(size, rgba) {
  const chunk = (type, data) => {
    const head = Buffer.alloc(8)
    head.writeUInt32BE(data.length, 0)
    head.write(type, 4, 'latin1')
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0)
    return Buffer.concat([head, data, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(size, 0)
  ihdr.writeUInt32BE(size, 4)
  ihdr.set([8, 6, 0, 0, 0], 8) // bit depth 8, colour type 6 (RGBA), deflate, filter 0, no interlace
  const rows = Buffer.alloc(size * (size * 4 + 1))
  for (let y = 0; y < size; y++) rgba.copy(rows, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4)
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

const icons = root + 'dist/main/icons/'
await mkdir(icons, { recursive: true })
await writeFile(icons + 'tray.png', encodePng(32, drawIcon(32, false)))
await writeFile(icons + 'trayTemplate.png', encodePng(16, drawIcon(16, true)))
await writeFile(icons + 'trayTemplate@2x.png', encodePng(32, drawIcon(32, true)))
