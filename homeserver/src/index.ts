/** @parley/homeserver: start a homeserver in-process (tests, scripts) or through the CLI. */
export { startServer, type RunningServer, type StartOptions } from './server.ts'
export { parseConfig, type Config, type ConfigInput } from './config.ts'
export { ManualClock, systemClock, type Clock } from './clock.ts'
export { VERSION } from './app.ts'
