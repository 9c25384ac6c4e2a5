import type { WebSocket as NodeWebSocket } from 'ws'
import { describe, expect, expectTypeOf, it } from 'vitest'
import { webSocketUrl, type WebSocketConstructor } from './socket.ts'

describe('webSocketUrl', () => {
  it('maps http(s) to ws(s) and appends /api/v1/ws to any path prefix', () => {
    expect(webSocketUrl('http://acme.localhost:8080')).toBe('ws://acme.localhost:8080/api/v1/ws')
    expect(webSocketUrl('https://chat.acme.example/')).toBe('wss://chat.acme.example/api/v1/ws')
    expect(webSocketUrl('https://acme.example/parley/?x=1#y')).toBe('wss://acme.example/parley/api/v1/ws')
  })

  it('rejects other schemes', () => {
    expect(() => webSocketUrl('ftp://acme.example')).toThrow(TypeError)
  })
})

describe('WebSocketConstructor', () => {
  it('is satisfied by the browser WebSocket and by the ws package (checked by tsc)', () => {
    expectTypeOf<typeof globalThis.WebSocket>().toExtend<WebSocketConstructor>()
    expectTypeOf<typeof NodeWebSocket>().toExtend<WebSocketConstructor>()
  })
})
