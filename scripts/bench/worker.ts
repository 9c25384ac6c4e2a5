/**
 * Load worker process entry (`node --import tsx scripts/bench/worker.ts`, started by the bench
 * orchestrator, pinned to the load core). Serves the methods of load.ts over IPC; when the
 * orchestrator goes away, for whatever reason, every socket is closed and the process exits.
 */
import { terminateAll } from './client.ts'
import { methods } from './load.ts'
import { serve } from './rpc.ts'

process.on('unhandledRejection', (err) => {
  console.error('load worker: unhandled rejection:', err)
  terminateAll()
  process.exit(1)
})

serve(methods, terminateAll)
