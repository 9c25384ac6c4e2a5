/**
 * The handshake transcript and the bytes each side signs (DESIGN.md section 6):
 *
 * ```
 * th_S   = BLAKE2b-256(canonical(C.HELLO) || canonical(S.HELLO without sig))
 * S.sig  = Ed25519_S("parley/link/S\0" || th_S)
 * th_C   = BLAKE2b-256(canonical(C.HELLO) || canonical(S.HELLO with sig))
 * C.sig  = Ed25519_C("parley/link/C\0" || th_C)
 * ```
 * `canonical` is canonical JSON (DESIGN.md section 2) as UTF-8; a JSON object text is self-delimiting,
 * so the concatenation is unambiguous. BLAKE2b-256 is RFC 7693 with a 32-byte digest; Ed25519 is
 * RFC 8032 section 5.1. th_C is also the session's identifier (`EstablishedLink.transcriptHash`).
 */
import { canonicalJson } from '../canonical-json.ts'
import { blake2b256 } from '../crypto/hash.ts'
import { concatBytes, utf8 } from '../encoding.ts'
import { LINK_DOMAIN_CLIENT, LINK_DOMAIN_SERVER } from './constants.ts'
import type { ClientHello, ServerHello } from './frames.ts'

/** S.HELLO before (or regardless of) its signature. */
export type UnsignedServerHello = Omit<ServerHello, 'sig'> & { sig?: string }

function withoutSig(hello: UnsignedServerHello): Omit<ServerHello, 'sig'> {
  const { sig: _sig, ...rest } = hello
  return rest
}

/** th_S: the hash S signs, over C.HELLO and S.HELLO without `sig` (any `sig` given is dropped). */
export function serverTranscriptHash(clientHello: ClientHello, serverHello: UnsignedServerHello): Uint8Array {
  return blake2b256(utf8(canonicalJson(clientHello) + canonicalJson(withoutSig(serverHello))))
}

/** th_C: the hash C signs, over C.HELLO and the complete, signed S.HELLO. */
export function clientTranscriptHash(clientHello: ClientHello, serverHello: ServerHello): Uint8Array {
  if (typeof serverHello.sig !== 'string') throw new TypeError('S.HELLO must carry its signature here')
  return blake2b256(utf8(canonicalJson(clientHello) + canonicalJson(serverHello)))
}

/** The exact bytes S signs: `"parley/link/S\0" || th_S`. */
export function serverSigningBytes(clientHello: ClientHello, serverHello: UnsignedServerHello): Uint8Array {
  return concatBytes(utf8(LINK_DOMAIN_SERVER), serverTranscriptHash(clientHello, serverHello))
}

/** The exact bytes C signs: `"parley/link/C\0" || th_C`. */
export function clientSigningBytes(clientHello: ClientHello, serverHello: ServerHello): Uint8Array {
  return concatBytes(utf8(LINK_DOMAIN_CLIENT), clientTranscriptHash(clientHello, serverHello))
}
