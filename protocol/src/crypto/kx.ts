/**
 * X25519 key exchange with libsodium's `crypto_kx` (https://doc.libsodium.org/key_exchange):
 * `rx || tx = BLAKE2b-512(X25519(sk, peer_pk) || client_pk || server_pk)`; the client takes the first
 * half as its receive key and the second as its transmit key, the server the other way round, so one
 * side's `tx` is the other side's `rx`.
 *
 * Own keys are the caller's (a wrong length is a bug and throws); the peer's public key is untrusted
 * and a bad one returns a failure: libsodium refuses a shared secret of all zeros (a low-order point,
 * RFC 7748 section 6.1), and so do we.
 */
import { err, ok, type Result } from '../result.ts'
import { sodium } from './sodium.ts'

/** Bytes of an X25519 public key (RFC 7748 section 5). */
export const KX_PUBLIC_KEY_BYTES = 32
/** Bytes of an X25519 secret key. */
export const KX_SECRET_KEY_BYTES = 32
/** Bytes of a `crypto_kx` seed. */
export const KX_SEED_BYTES = 32
/** Bytes of each `crypto_kx` session key. */
export const KX_SESSION_KEY_BYTES = 32

/** An X25519 key pair for `crypto_kx`. */
export interface KxKeyPair {
  readonly publicKey: Uint8Array
  readonly secretKey: Uint8Array
}

/** One side's session keys: `rx` decrypts what the peer sent, `tx` encrypts what we send. */
export interface KxSessionKeys {
  readonly rx: Uint8Array
  readonly tx: Uint8Array
}

/** Why a peer's public key was refused: wrong length, or a low-order point giving an all-zero secret. */
export type KxFailure = 'bad_public_key'

function assertLength(name: string, bytes: Uint8Array, length: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length)
    throw new TypeError(`${name} must be a Uint8Array of ${length} bytes`)
}

/**
 * Derives a key pair from a 32-byte seed (`crypto_kx_seed_keypair`: secret key = BLAKE2b-256(seed),
 * public key = X25519 base-point multiple). Deterministic, so tests can inject the seed. Throws on a
 * wrong seed length (a caller bug).
 */
export function kxKeyPairFromSeed(seed: Uint8Array): KxKeyPair {
  assertLength('kx seed', seed, KX_SEED_BYTES)
  const pair = sodium().crypto_kx_seed_keypair(seed)
  return { publicKey: pair.publicKey, secretKey: pair.privateKey }
}

function sessionKeys(
  role: 'client' | 'server',
  ownPublicKey: Uint8Array,
  ownSecretKey: Uint8Array,
  peerPublicKey: Uint8Array,
): Result<KxSessionKeys, KxFailure> {
  assertLength('own kx public key', ownPublicKey, KX_PUBLIC_KEY_BYTES)
  assertLength('own kx secret key', ownSecretKey, KX_SECRET_KEY_BYTES)
  if (!(peerPublicKey instanceof Uint8Array) || peerPublicKey.length !== KX_PUBLIC_KEY_BYTES)
    return err('bad_public_key')
  const s = sodium()
  try {
    const keys =
      role === 'client'
        ? s.crypto_kx_client_session_keys(ownPublicKey, ownSecretKey, peerPublicKey)
        : s.crypto_kx_server_session_keys(ownPublicKey, ownSecretKey, peerPublicKey)
    return ok({ rx: keys.sharedRx, tx: keys.sharedTx })
  } catch {
    // libsodium throws "invalid usage" when X25519 yields all zeros (RFC 7748 section 6.1).
    return err('bad_public_key')
  }
}

/** Session keys of the `crypto_kx` client (the link initiator). The server's key is untrusted input. */
export function kxClientSessionKeys(
  clientPublicKey: Uint8Array,
  clientSecretKey: Uint8Array,
  serverPublicKey: Uint8Array,
): Result<KxSessionKeys, KxFailure> {
  return sessionKeys('client', clientPublicKey, clientSecretKey, serverPublicKey)
}

/** Session keys of the `crypto_kx` server (the link responder). The client's key is untrusted input. */
export function kxServerSessionKeys(
  serverPublicKey: Uint8Array,
  serverSecretKey: Uint8Array,
  clientPublicKey: Uint8Array,
): Result<KxSessionKeys, KxFailure> {
  return sessionKeys('server', serverPublicKey, serverSecretKey, clientPublicKey)
}

/** Overwrites secret bytes with zeros (best effort: JavaScript may have copied them). */
export function wipe(bytes: Uint8Array): void {
  bytes.fill(0)
}
