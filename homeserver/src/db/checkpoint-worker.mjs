// Runs WAL checkpoints on a second connection in a worker thread, so copying the WAL into the
// database and its fsyncs never stall the event loop (they cost 40-90 ms inline: docs/benchmarks.md).
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'

const db = new Database(workerData.path)
db.pragma('busy_timeout = 1000')
db.pragma('synchronous = FULL')

parentPort.on('message', (message) => {
  if (message === 'checkpoint') {
    try {
      // PASSIVE: copies what it can without waiting on readers or the writer.
      const [result] = db.pragma('wal_checkpoint(PASSIVE)')
      parentPort.postMessage({ ok: true, ...result })
    } catch (err) {
      parentPort.postMessage({ ok: false, error: String(err) })
    }
  } else if (message === 'close') {
    db.close()
    parentPort.close()
  }
})
