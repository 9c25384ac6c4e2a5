import { afterEach, describe, expect, it, vi } from 'vitest'
import { TypedEmitter } from './emitter.ts'

interface Events {
  count: number
  name: string
}

class Counter extends TypedEmitter<Events> {
  fire<K extends keyof Events>(type: K, payload: Events[K]): void {
    this.emit(type, payload)
  }
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('TypedEmitter', () => {
  it('calls listeners in order, removes them with off() or the returned function, and once() fires once', () => {
    const emitter = new Counter()
    const seen: string[] = []
    const first = (n: number) => seen.push(`first ${n}`)
    emitter.on('count', first)
    const stop = emitter.on('count', (n) => seen.push(`second ${n}`))
    emitter.once('name', (s) => seen.push(`once ${s}`))
    emitter.fire('count', 1)
    emitter.fire('name', 'a')
    emitter.fire('name', 'b')
    emitter.off('count', first)
    emitter.fire('count', 2)
    stop()
    emitter.fire('count', 3)
    expect(seen).toEqual(['first 1', 'second 1', 'once a', 'second 2'])
    expect(emitter.listenerCount('count')).toBe(0)
  })

  it('keeps dispatching when a listener throws and re-throws the error in a microtask', () => {
    const scheduled: (() => void)[] = []
    vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((fn) => scheduled.push(fn))
    const emitter = new Counter()
    const seen: number[] = []
    emitter.on('count', () => {
      throw new Error('listener bug')
    })
    emitter.on('count', (n) => seen.push(n))
    emitter.fire('count', 7)
    expect(seen).toEqual([7])
    expect(scheduled).toHaveLength(1)
    expect(() => scheduled[0]!()).toThrow('listener bug')
  })
})
