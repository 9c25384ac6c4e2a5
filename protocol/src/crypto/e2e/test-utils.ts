/** Helpers shared by the E2E core's tests. */
import { E2eError } from './errors.ts'

/** The {@link E2eError} code `fn` fails with; fails the test if it returns or throws anything else. */
export function rejection(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    if (error instanceof E2eError) return error.code
    throw error
  }
  throw new Error('expected an E2eError, got a result')
}
