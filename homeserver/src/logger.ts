/** Structured JSON logs (pino). Never log tokens, passwords or message content. */
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger(level: string, name: string): Logger {
  return pino({
    level,
    base: { server: name },
    // Belt and braces: these keys never reach the log even if someone passes them by mistake.
    redact: {
      paths: [
        'token',
        'access_token',
        'refresh_token',
        'password',
        'content',
        'body',
        '*.token',
        '*.password',
        '*.content',
      ],
      censor: '[redacted]',
    },
  })
}
