/** Password hashing with argon2id on libuv's thread pool, bounded so a login storm cannot exhaust memory. */
import argon2 from 'argon2'
import { ParleyError } from '@parley/protocol'
import { Semaphore } from './rate-limit.ts'

export interface PasswordHasherOptions {
  readonly memoryKiB: number
  readonly iterations: number
  readonly maxConcurrent: number
}

export class PasswordHasher {
  readonly #slots: Semaphore
  #dummy: Promise<string> | null = null

  constructor(private readonly options: PasswordHasherOptions) {
    this.#slots = new Semaphore(options.maxConcurrent)
  }

  async hash(password: string): Promise<string> {
    const out = await this.#slots.run(() =>
      argon2.hash(password, {
        type: argon2.argon2id,
        memoryCost: this.options.memoryKiB,
        timeCost: this.options.iterations,
        parallelism: 1,
      }),
    )
    if (out === null) throw new ParleyError('P_LIMIT_EXCEEDED', 'server busy, try again', 1000)
    return out
  }

  /** Verifies `password`; with no stored hash it verifies against a dummy so timing does not reveal unknown users. */
  async verify(stored: string | undefined, password: string): Promise<boolean> {
    const hash = stored ?? (await (this.#dummy ??= this.hash('dummy password for timing equalisation')))
    const out = await this.#slots.run(async () => {
      try {
        return await argon2.verify(hash, password)
      } catch {
        return false
      }
    })
    if (out === null) throw new ParleyError('P_LIMIT_EXCEEDED', 'server busy, try again', 1000)
    return stored !== undefined && out
  }
}
