import { describe, expect, it } from 'vitest'
import { formatDay, formatSize, tn } from './i18n.ts'

describe('formatDay', () => {
  const now = new Date(2025, 2, 10, 15, 30).getTime()

  it('says Today and Yesterday by the local calendar, not by 24-hour spans', () => {
    expect(formatDay(new Date(2025, 2, 10, 0, 5).getTime(), now)).toBe('Today')
    expect(formatDay(new Date(2025, 2, 9, 23, 59).getTime(), now)).toBe('Yesterday')
    expect(formatDay(new Date(2025, 2, 9, 0, 0).getTime(), now)).toBe('Yesterday')
  })

  it('writes older days out in the locale, with the weekday', () => {
    expect(formatDay(new Date(2025, 2, 8, 12).getTime(), now)).toBe('Saturday, March 8, 2025')
    expect(formatDay(new Date(2024, 11, 31, 12).getTime(), now)).toBe('Tuesday, December 31, 2024')
  })
})

describe('tn', () => {
  it("picks the locale's plural form and fills in the count", () => {
    expect(tn('timeline.newBelow.one', 'timeline.newBelow.other', 1)).toBe('1 new message below')
    expect(tn('timeline.newBelow.one', 'timeline.newBelow.other', 3)).toBe('3 new messages below')
    expect(tn('timeline.jumpUnread.one', 'timeline.jumpUnread.other', 0)).toBe('0 new messages — jump')
  })
})

describe('formatSize', () => {
  it('writes byte counts in decimal units', () => {
    expect(formatSize(0)).toBe('0 bytes')
    expect(formatSize(512)).toBe('512 bytes')
    expect(formatSize(1536)).toBe('1.5 kB')
    expect(formatSize(10 * 1024 * 1024)).toBe('10.5 MB')
    expect(formatSize(3e12)).toBe('3,000 GB')
  })
})
