/**
 * Imported first by main.ts: zod compiles validators with `new Function` unless `jitless`, and its
 * probe for that already trips the CSP (no `unsafe-eval`) when the first schema is defined.
 */
import { config } from 'zod'

config({ jitless: true })
