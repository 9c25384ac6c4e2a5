// `npm start`: builds the web client, then runs a homeserver on an embedded SQLite file in ./data,
// listening on 127.0.0.1:8008 and serving the client at its address (open it in a browser). The
// Electron shell joins this script with the rest of the desktop issue.
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const built = spawnSync('npm', ['run', 'build', '-w', 'desktop', '--silent'], { cwd: root, stdio: 'inherit' })
if (built.status !== 0) process.exit(built.status ?? 1)
const host = process.env.PARLEY_HOST ?? '127.0.0.1'
const port = process.env.PARLEY_PORT ?? '8008'
console.log(`Parley web client: http://${host.includes(':') ? `[${host}]` : host}:${port}/`)
const args = [
  'homeserver/bin/parley-homeserver.mjs',
  'start',
  '--server-name',
  process.env.PARLEY_SERVER_NAME ?? 'localhost',
  '--host',
  host,
  '--port',
  port,
  '--web-client',
  'desktop/dist/web',
  '--data-dir',
  process.env.PARLEY_DATA_DIR ?? 'data',
  ...process.argv.slice(2),
]
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' })
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
child.on('exit', (code) => process.exit(code ?? 0))
