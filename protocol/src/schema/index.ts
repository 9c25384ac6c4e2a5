/** One schema per wire message: client frames, REST bodies (and, later, federation frames). */
export * from './common.ts'
export * from './content.ts'
export * from './events.ts'
export * from './ws.ts'
export * from './rest.ts'
export * from './parse.ts'
export * from './key-document.ts'
export * from './keys.ts'
