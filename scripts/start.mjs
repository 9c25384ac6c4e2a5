// `npm start`: a homeserver on an embedded SQLite file in ./data, listening on 127.0.0.1:8008.
// The desktop client joins this script once the desktop issue lands; until then it prints the URL
// for the headless client and the CLI (scripts/parley-cli.ts).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const args = [
  'homeserver/bin/parley-homeserver.mjs',
  'start',
  '--server-name',
  process.env.PARLEY_SERVER_NAME ?? 'localhost',
  '--host',
  process.env.PARLEY_HOST ?? '127.0.0.1',
  '--port',
  process.env.PARLEY_PORT ?? '8008',
  '--data-dir',
  process.env.PARLEY_DATA_DIR ?? 'data',
  ...process.argv.slice(2),
]
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' })
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
child.on('exit', (code) => process.exit(code ?? 0))
