/**
 * The WebSocket surface the client needs: satisfied by the browser's `WebSocket` and by the `ws`
 * package's `WebSocket` in Node, so neither is imported here.
 */

/**
 * An `on*` handler slot. Declared through a method so that parameters are compared bivariantly: the
 * DOM's handlers take `MessageEvent`/`CloseEvent` and ws's take its own event classes; both carry
 * the fields used here.
 */
export type WebSocketHandler<E> = { bivariant(event: E): void }['bivariant'] | null

/** `readyState` of an open socket (WHATWG WebSockets). */
export const WS_OPEN = 1

/** The part of a WebSocket instance the client uses. */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number
  /** Called once the connection is open. */
  onopen: WebSocketHandler<unknown>
  /** Called per message; text frames carry a string `data`. */
  onmessage: WebSocketHandler<{ readonly data: unknown }>
  /** Called once the connection is closed, with the close code and reason. */
  onclose: WebSocketHandler<{ readonly code: number; readonly reason: string }>
  /** Called on failure; a `close` follows. */
  onerror: WebSocketHandler<unknown>
  /** Sends a text frame. */
  send(data: string): void
  /** Starts the closing handshake (or aborts a connection being established). */
  close(code?: number, reason?: string): void
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, `WebSocket` from the `ws` package in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike

/**
 * The client WebSocket URL of a homeserver: `http(s)://host/prefix` becomes
 * `ws(s)://host/prefix/api/v1/ws`. Throws a TypeError for other schemes (a caller bug).
 */
export function webSocketUrl(baseUrl: string): string {
  const url = new URL(baseUrl)
  if (url.protocol === 'https:') url.protocol = 'wss:'
  else if (url.protocol === 'http:') url.protocol = 'ws:'
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new TypeError(`base URL must be http(s): ${baseUrl}`)
  }
  url.pathname = url.pathname.replace(/\/+$/, '') + '/api/v1/ws'
  url.search = ''
  url.hash = ''
  return url.toString()
}
