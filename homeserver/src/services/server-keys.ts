/**
 * The server's Ed25519 signing key: generated on first start, kept in the data directory with mode
 * 0600, and published in a self-signed key document (DESIGN.md section 6). Rotation and old keys
 * arrive with federation.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import {
  canonicalJson,
  concatBytes,
  fromBase64Url,
  SIGNING_DOMAIN,
  toBase64Url,
  utf8,
} from '@parley/protocol'
import { generateSeed, signerFromSeed, type Signer } from '@parley/protocol/signing'

const KeyFile = z.object({ kid: z.string().regex(/^ed25519:[A-Za-z0-9_]{1,32}$/), seed: z.string() })

/** Loads the server key, creating it on first start. */
export async function loadOrCreateServerKey(dataDir: string): Promise<Signer> {
  const path = join(dataDir, 'server-key.json')
  let text: string | null = null
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (text !== null) {
    const parsed = KeyFile.safeParse(JSON.parse(text))
    const seed = parsed.success ? fromBase64Url(parsed.data.seed) : null
    if (!parsed.success || !seed || seed.length !== 32) throw new Error(`corrupt server key file ${path}`)
    await chmod(path, 0o600)
    return signerFromSeed(parsed.data.kid, seed)
  }
  const seed = generateSeed()
  const kid = `ed25519:${toBase64Url(generateSeed().subarray(0, 6))}`.replace(/-/g, '_')
  await writeFile(path, JSON.stringify({ kid, seed: toBase64Url(seed) }) + '\n', { mode: 0o600, flag: 'wx' })
  return signerFromSeed(kid, seed)
}

/** The self-signed key document served at `/.well-known/parley/server`. */
export function keyDocument(serverName: string, linkUrl: string, signer: Signer, now: number) {
  const doc = {
    server_name: serverName,
    link: linkUrl,
    verify_keys: { [signer.kid]: toBase64Url(signer.publicKey) },
    old_verify_keys: {},
    valid_until_ts: now + 24 * 3600_000,
  }
  const sig = signer.sign(concatBytes(utf8(SIGNING_DOMAIN.keys), utf8(canonicalJson(doc))))
  return { ...doc, signatures: { [serverName]: { [signer.kid]: toBase64Url(sig) } } }
}
