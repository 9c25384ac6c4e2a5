/**
 * Accounts, devices and tokens. Access and refresh tokens are 256-bit random strings; only their
 * SHA-256 is stored. A refresh token is single-use: presenting the previous one again is treated as
 * theft and revokes the device (AUTH-4).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { newDeviceId, ParleyError, randomBytes, toBase64Url, userId as makeUserId } from '@parley/protocol'
import type { AuthResponse } from '@parley/protocol/schema'
import type { Clock } from '../clock.ts'
import type { Config } from '../config.ts'
import type { Repos } from '../db/repos/index.ts'
import type { PasswordHasher } from './passwords.ts'
import { RateLimiter } from './rate-limit.ts'

/** An authenticated device session. */
export interface Session {
  readonly userId: string
  readonly deviceId: string
  readonly accessExpiresTs: number
}

export interface AccountsOptions {
  readonly serverName: string
  readonly registration: 'open' | 'closed'
  readonly accessTokenTtlMs: number
  readonly refreshTokenTtlMs: number
  readonly loginFailuresPerAccount: number
  readonly loginFailureRefillMs: number
  readonly loginAttemptsPerIp: number
  readonly loginIpRefillMs: number
  readonly registrationsPerIp: number
  readonly registrationIpRefillMs: number
}

/** The accounts options of a homeserver configuration. */
export function accountsOptions(config: Config, registration = config.registration): AccountsOptions {
  return {
    serverName: config.serverName,
    registration,
    accessTokenTtlMs: config.accessTokenTtlMs,
    refreshTokenTtlMs: config.refreshTokenTtlMs,
    loginFailuresPerAccount: config.limits.loginFailuresPerAccount,
    loginFailureRefillMs: config.limits.loginFailureRefillMs,
    loginAttemptsPerIp: config.limits.loginAttemptsPerIp,
    loginIpRefillMs: config.limits.loginIpRefillMs,
    registrationsPerIp: config.limits.registrationsPerIp,
    registrationIpRefillMs: config.limits.registrationIpRefillMs,
  }
}

/** Called with revoked device ids so live sockets can be closed at once (AUTH-2). */
export type RevocationListener = (deviceIds: readonly string[]) => void

const ACCESS_PREFIX = 'pat_'
const REFRESH_PREFIX = 'prt_'

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

function newSecret(): string {
  return toBase64Url(randomBytes(32))
}

export class AccountsService {
  readonly #listeners = new Set<RevocationListener>()
  readonly #accountFailures: RateLimiter
  readonly #ipAttempts: RateLimiter
  readonly #ipRegistrations: RateLimiter

  constructor(
    private readonly repos: Repos,
    private readonly hasher: PasswordHasher,
    private readonly clock: Clock,
    private readonly options: AccountsOptions,
  ) {
    this.#accountFailures = new RateLimiter(
      clock,
      options.loginFailuresPerAccount,
      1000 / options.loginFailureRefillMs,
    )
    this.#ipAttempts = new RateLimiter(clock, options.loginAttemptsPerIp, 1000 / options.loginIpRefillMs)
    this.#ipRegistrations = new RateLimiter(
      clock,
      options.registrationsPerIp,
      1000 / options.registrationIpRefillMs,
    )
  }

  onRevoke(listener: RevocationListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #revoked(deviceIds: readonly string[]): void {
    if (deviceIds.length === 0) return
    for (const l of this.#listeners) l(deviceIds)
  }

  /** Creates an account (admin CLI and open registration). */
  async createUser(localpart: string, password: string): Promise<string> {
    const id = makeUserId(localpart, this.options.serverName)
    if (this.repos.users.get(id)) throw new ParleyError('P_USER_IN_USE', 'that user name is taken')
    const hash = await this.hasher.hash(password)
    try {
      this.repos.users.insert(id, localpart, hash, localpart, this.clock.now())
    } catch (err) {
      // Two registrations raced past the check above.
      if (String(err).includes('UNIQUE')) throw new ParleyError('P_USER_IN_USE', 'that user name is taken')
      throw err
    }
    return id
  }

  async register(
    localpart: string,
    password: string,
    deviceName: string,
    address: string,
  ): Promise<AuthResponse> {
    if (this.options.registration !== 'open') throw new ParleyError('P_FORBIDDEN', 'registration is closed')
    const wait = this.#ipRegistrations.take(address)
    if (wait > 0) throw new ParleyError('P_LIMIT_EXCEEDED', 'too many sign-ups from this address', wait)
    const id = await this.createUser(localpart, password)
    return this.#newDevice(id, deviceName)
  }

  /**
   * Logs in. Unknown user and wrong password give the same answer after the same work (AUTH-6).
   * Failures are limited per account and attempts per address, with Retry-After and no hard lockout (AUTH-5).
   */
  async login(
    username: string,
    password: string,
    deviceName: string,
    address: string,
  ): Promise<AuthResponse> {
    const ipWait = this.#ipAttempts.take(address)
    if (ipWait > 0) throw new ParleyError('P_LIMIT_EXCEEDED', 'too many login attempts', ipWait)
    // `alice`, `Alice` and `@alice:our.server` name the same account; another server's id names none here.
    const name = username.toLowerCase()
    const [localpart, server] = name.startsWith('@')
      ? name.slice(1).split(':')
      : [name, this.options.serverName]
    // `id` keys the failure limit even for names that cannot exist, so they cost a guesser the same.
    const id = server === this.options.serverName ? `@${localpart}:${server}` : name
    // Reserve a failure before the (slow, async) verify and give it back on success: a peek here would
    // let any number of concurrent guesses through before the first failure is counted (AUTH-5).
    const accountWait = this.#accountFailures.take(id)
    if (accountWait > 0)
      throw new ParleyError('P_LIMIT_EXCEEDED', 'too many failed logins for this account', accountWait)
    const user = this.repos.users.get(id)
    let good: boolean
    try {
      good = await this.hasher.verify(user?.password_hash, password)
    } catch (err) {
      this.#accountFailures.refund(id) // not checked (server busy): not a failure
      throw err
    }
    if (!good || !user) throw new ParleyError('P_UNAUTHORIZED', 'wrong user name or password')
    this.#accountFailures.refund(id)
    if (user.deactivated) throw new ParleyError('P_FORBIDDEN', 'this account is deactivated')
    return this.#newDevice(user.user_id, deviceName)
  }

  #newDevice(userId: string, deviceName: string): AuthResponse {
    const now = this.clock.now()
    const access = ACCESS_PREFIX + newSecret()
    const refreshSecret = newSecret()
    for (;;) {
      const deviceId = newDeviceId()
      if (this.repos.devices.get(deviceId)) continue
      this.repos.devices.insert({
        deviceId,
        userId,
        displayName: deviceName,
        accessHash: sha256(access),
        accessExpiresTs: now + this.options.accessTokenTtlMs,
        refreshHash: sha256(refreshSecret),
        refreshExpiresTs: now + this.options.refreshTokenTtlMs,
        now,
      })
      return {
        user_id: userId,
        device_id: deviceId,
        access_token: access,
        refresh_token: `${REFRESH_PREFIX}${deviceId}_${refreshSecret}`,
        expires_in: Math.floor(this.options.accessTokenTtlMs / 1000),
      }
    }
  }

  /** Resolves an access token to its session, or throws P_UNKNOWN_TOKEN. */
  authenticate(token: string): Session {
    const session = this.check(token)
    if (!session) throw new ParleyError('P_UNKNOWN_TOKEN', 'unknown, expired or revoked access token')
    return session
  }

  /** Like {@link authenticate} but returns null. */
  check(token: string): Session | null {
    if (!token.startsWith(ACCESS_PREFIX) || token.length > 128) return null
    // Lookup is by SHA-256 of the token: an attacker cannot steer the hash, so the index probe leaks nothing useful.
    const device = this.repos.devices.byAccessHash(sha256(token))
    if (!device || device.access_expires_ts <= this.clock.now()) return null
    const user = this.repos.users.get(device.user_id)
    if (!user || user.deactivated) return null
    return { userId: device.user_id, deviceId: device.device_id, accessExpiresTs: device.access_expires_ts }
  }

  /** True while the device's session is still valid (for re-validating long-lived sockets). */
  stillValid(session: Session): boolean {
    if (session.accessExpiresTs <= this.clock.now()) return false
    const device = this.repos.devices.get(session.deviceId)
    if (!device || device.access_expires_ts !== session.accessExpiresTs) return false
    return !this.repos.users.get(session.userId)?.deactivated
  }

  /** Exchanges a refresh token for new tokens. Reuse of an old refresh token revokes the device. */
  refresh(refreshToken: string): AuthResponse {
    const fail = () => new ParleyError('P_UNKNOWN_TOKEN', 'unknown, expired or revoked refresh token')
    const match = /^prt_([A-Z0-9]{12})_([A-Za-z0-9_-]{43})$/.exec(refreshToken)
    if (!match) throw fail()
    const [, deviceId, secret] = match as unknown as [string, string, string]
    const device = this.repos.devices.get(deviceId)
    if (!device) throw fail()
    const presented = sha256(secret)
    const now = this.clock.now()
    if (!timingSafeEqual(presented, device.refresh_hash)) {
      if (this.repos.devices.spentBy(presented) === deviceId) {
        // Replay of a spent token: someone else holds a copy. End the whole device session.
        this.repos.devices.delete(deviceId)
        this.#revoked([deviceId])
      }
      throw fail()
    }
    if (device.refresh_expires_ts <= now) throw fail()
    const user = this.repos.users.get(device.user_id)
    if (!user || user.deactivated) throw fail()
    const access = ACCESS_PREFIX + newSecret()
    const refreshSecret = newSecret()
    const accessExp = now + this.options.accessTokenTtlMs
    this.repos.devices.rotate(
      deviceId,
      sha256(access),
      accessExp,
      sha256(refreshSecret),
      now + this.options.refreshTokenTtlMs,
      now,
    )
    // The old access token is gone: sockets authenticated with it re-authenticate.
    this.#revoked([deviceId])
    return {
      user_id: device.user_id,
      device_id: deviceId,
      access_token: access,
      refresh_token: `${REFRESH_PREFIX}${deviceId}_${refreshSecret}`,
      expires_in: Math.floor(this.options.accessTokenTtlMs / 1000),
    }
  }

  logout(session: Session): void {
    this.repos.devices.delete(session.deviceId)
    this.#revoked([session.deviceId])
  }

  logoutAll(userId: string): void {
    this.#revoked(this.repos.devices.deleteForUser(userId))
  }

  /** Sets a new password and ends every session of the user. */
  async resetPassword(userId: string, password: string): Promise<void> {
    const hash = await this.hasher.hash(password)
    if (!this.repos.users.setPassword(userId, hash)) throw new ParleyError('P_NOT_FOUND', 'no such user')
    this.logoutAll(userId)
  }

  /** Deletes devices whose sessions expired for good (and their spent refresh tokens). Returns how many. */
  purgeExpired(): number {
    const ids = this.repos.devices.expired(this.clock.now())
    for (const id of ids) this.repos.devices.delete(id)
    this.#revoked(ids)
    return ids.length
  }

  /** Disables an account and ends every session; its name stays taken. */
  deactivate(userId: string): void {
    if (!this.repos.users.deactivate(userId)) throw new ParleyError('P_NOT_FOUND', 'no such user')
    this.logoutAll(userId)
  }
}
