import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: [
      'protocol/src/**/*.test.ts',
      'homeserver/**/*.test.ts',
      'scripts/**/*.test.ts',
      'desktop/test/**/*.test.ts',
      'desktop/src/**/*.test.ts',
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
})
