import { fc, test } from '@fast-check/vitest'
import { describe, expect, it } from 'vitest'
import { safeFilename } from '../services/media.ts'
import { asciiFallback, extValue, mediaHeaders } from './media-headers.ts'

/** RFC 6266 / RFC 8187 as we emit them: a token fallback and an ext-value, nothing else. */
const DISPOSITION =
  /^(inline|attachment); filename=[A-Za-z0-9!#$&+\-.^_`|~]{1,128}; filename\*=UTF-8''[A-Za-z0-9!#$&+\-.^_`|~%]*$/

/** What a well-formed copy of `s` is (lone surrogates as U+FFFD), as TextEncoder sees it. */
const wellFormed = (s: string) => new TextDecoder().decode(new TextEncoder().encode(s))

describe('media headers', () => {
  it('shows only png, jpeg, gif and webp inline; everything else is an opaque attachment', () => {
    for (const type of ['image/png', 'image/jpeg', 'image/gif', 'image/webp']) {
      expect(mediaHeaders({ content_type: type, filename: 'a', size: 1 })).toMatchObject({
        'Content-Type': type,
        'Content-Disposition': "inline; filename=a; filename*=UTF-8''a",
      })
    }
    for (const type of [
      'image/svg+xml',
      'text/html',
      'application/pdf',
      'application/xhtml+xml',
      'image/bmp',
    ]) {
      const h = mediaHeaders({ content_type: type, filename: 'a', size: 1 })
      expect(h['Content-Type']).toBe('application/octet-stream')
      expect(h['Content-Disposition']).toMatch(/^attachment;/)
    }
    expect(mediaHeaders({ content_type: 'image/png', filename: 'a', size: 7 })).toMatchObject({
      'Content-Length': '7',
      'X-Content-Type-Options': 'nosniff',
      'Content-Security-Policy': "sandbox; default-src 'none'",
    })
  })

  it.each([
    [
      'evil\r\nSet-Cookie: x=1',
      "filename=evil__Set-Cookie__x_1; filename*=UTF-8''evil%0D%0ASet-Cookie%3A%20x%3D1",
    ],
    ['"; filename=x.html', "filename=___filename_x.html; filename*=UTF-8''%22%3B%20filename%3Dx.html"],
    ['../../etc/passwd', "filename=.._.._etc_passwd; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd"],
    ["it's (1)*.png", "filename=it_s__1__.png; filename*=UTF-8''it%27s%20%281%29%2A.png"],
    ['Ω.png', "filename=_.png; filename*=UTF-8''%CE%A9.png"],
    ['\ud800', "filename=_; filename*=UTF-8''%EF%BF%BD"],
    ['', "filename=file; filename*=UTF-8''"],
  ])('encodes %j safely', (name, expected) => {
    expect(`${asciiFallback(name)}`).toMatch(/^[A-Za-z0-9!#$&+\-.^_`|~]+$/)
    expect(`filename=${asciiFallback(name)}; filename*=${extValue(name)}`).toBe(expected)
  })

  test.prop([fc.string({ unit: 'binary', maxLength: 300 })], { numRuns: 500 })(
    'any name gives a header of printable ASCII in the grammar that decodes back to the name',
    (name) => {
      const value = mediaHeaders({ content_type: 'text/plain', filename: name, size: 0 })[
        'Content-Disposition'
      ]
      expect(value).toMatch(DISPOSITION)
      expect(decodeURIComponent(value.split("filename*=UTF-8''")[1]!)).toBe(wellFormed(name))
    },
  )

  test.prop([fc.string({ unit: 'binary', maxLength: 400 })], { numRuns: 500 })(
    'stored names hold no control characters, separators, bidi overrides or lone surrogates',
    (name) => {
      const safe = safeFilename(name)
      expect(safe.length).toBeGreaterThan(0)
      expect(safe.length).toBeLessThanOrEqual(255)
      // eslint-disable-next-line no-control-regex
      expect(safe).not.toMatch(/[\x00-\x1f\x7f-\x9f/\\\u202a-\u202e\u2066-\u2069]/)
      expect(wellFormed(safe)).toBe(safe)
    },
  )
})
