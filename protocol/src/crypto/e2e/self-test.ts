/**
 * Known-answer self-test of the primitives (E2E.md section 3 row 1), run by every client before it
 * creates or uses keys: a broken or substituted libsodium build (a bad bundle, a WASM fallback gone
 * wrong in some renderer) must stop encryption, not produce keys and ciphertext nobody can check.
 * The vectors are the published ones: RFC 8032 section 7.1 TEST 1, RFC 7748 section 6.1,
 * draft-irtf-cfrg-xchacha A.3.1, RFC 7693 appendix A. Costs well under a millisecond.
 */
import { utf8 } from '../../encoding.ts'
import { sodium } from '../sodium.ts'
import { E2eError } from './errors.ts'
import {
  aeadDecrypt,
  aeadEncryptWithNonce,
  dhKeyPair,
  generichash,
  sign,
  signingKeyPair,
  x25519,
} from './primitives.ts'

/** The published vectors, as hex (what the test plan names by their first and last bytes). */
export const KNOWN_ANSWERS = {
  ed25519: {
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    signature:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  x25519: {
    aliceSecret: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
    alicePublic: '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    bobPublic: 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
    shared: '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
  },
  xchacha: {
    plaintext:
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
    ad: '50515253c0c1c2c3c4c5c6c7',
    key: '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f',
    nonce: '404142434445464748494a4b4c4d4e4f5051525354555657',
    tag: 'c0875924c1c7987947deafd8780acf49',
  },
  blake2b512abc:
    'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923',
} as const

const hex = (text: string): Uint8Array => sodium().from_hex(text)
const toHex = (bytes: Uint8Array): string => sodium().to_hex(bytes)

function expect(what: string, got: Uint8Array, want: string): void {
  if (toHex(got) !== want) throw new E2eError('self_test_failed', `${what} gave a wrong known answer`)
}

/**
 * Runs the known-answer tests; throws `self_test_failed` naming the primitive that failed. Await
 * `sodiumReady()` first.
 */
export function runSelfTest(): void {
  const ed = KNOWN_ANSWERS.ed25519
  const pair = signingKeyPair(hex(ed.seed))
  expect('Ed25519 public key', pair.publicKey, ed.publicKey)
  expect('Ed25519 signature', sign(pair.secretKey, new Uint8Array(0)), ed.signature)

  const dh = KNOWN_ANSWERS.x25519
  const alice = dhKeyPair(hex(dh.aliceSecret))
  expect('X25519 public key', alice.publicKey, dh.alicePublic)
  expect('X25519 shared secret', x25519(alice.secretKey, hex(dh.bobPublic)), dh.shared)

  const ae = KNOWN_ANSWERS.xchacha
  const [key, nonce, ad] = [hex(ae.key), hex(ae.nonce), hex(ae.ad)]
  const sealed = aeadEncryptWithNonce(key, nonce, utf8(ae.plaintext), ad)
  expect('XChaCha20-Poly1305 tag', sealed.subarray(sealed.length - 16), ae.tag)
  expect('XChaCha20-Poly1305 open', aeadDecrypt(key, nonce, sealed, ad), toHex(utf8(ae.plaintext)))

  expect('BLAKE2b-512', generichash(64, utf8('abc')), KNOWN_ANSWERS.blake2b512abc)
}
