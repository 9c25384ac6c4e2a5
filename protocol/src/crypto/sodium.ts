/**
 * The one ready-once libsodium module (STYLE.md rule 7). Everything that needs libsodium awaits
 * {@link sodiumReady} once at start-up and then calls {@link sodium} synchronously.
 */
import sodiumModule from 'libsodium-wrappers-sumo'

let ready = false
const readyPromise = sodiumModule.ready.then(() => {
  ready = true
})

/** Resolves once libsodium's WASM is initialised. Safe to await many times. */
export function sodiumReady(): Promise<void> {
  return readyPromise
}

/** The initialised libsodium API. Throws if {@link sodiumReady} has not resolved yet (a caller bug). */
export function sodium(): typeof sodiumModule {
  if (!ready) throw new Error('libsodium is not ready: await sodiumReady() first')
  return sodiumModule
}
