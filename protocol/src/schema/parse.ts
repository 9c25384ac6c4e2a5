/** Parsing untrusted text into validated values: parse, don't cast (STYLE.md rule 4). */
import type { z } from 'zod'
import { exceedsJsonDepth } from '../canonical-json.ts'
import { err, ok, type Result } from '../result.ts'

/** Deepest JSON accepted in any frame or body. */
export const MAX_JSON_DEPTH = 16

/** Why parsing failed: not JSON at all, or JSON that violates the schema. */
export interface ParseFailure {
  readonly kind: 'bad_json' | 'bad_request'
  readonly message: string
}

/** Summarises a zod error in one line, naming the offending path. */
export function describeZodError(error: z.ZodError): string {
  const issue = error.issues[0]
  if (!issue) return 'invalid input'
  const path = issue.path.length > 0 ? issue.path.join('.') + ': ' : ''
  return (path + issue.message).slice(0, 200)
}

/** Validates an already-parsed value. */
export function validate<S extends z.ZodType>(schema: S, value: unknown): Result<z.infer<S>, ParseFailure> {
  if (exceedsJsonDepth(value, MAX_JSON_DEPTH))
    return err({ kind: 'bad_request', message: 'JSON nested too deeply' })
  const parsed = schema.safeParse(value)
  return parsed.success
    ? ok(parsed.data)
    : err({ kind: 'bad_request', message: describeZodError(parsed.error) })
}

/** Parses JSON text and validates it. Never throws on hostile input. */
export function parseJson<S extends z.ZodType>(schema: S, text: string): Result<z.infer<S>, ParseFailure> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return err({ kind: 'bad_json', message: 'not valid JSON' })
  }
  return validate(schema, value)
}
