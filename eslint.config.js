// One lint config for the monorepo. The import boundaries of STYLE.md are enforced here.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'

const ourPackages = [
  '@parley/*',
  '../../homeserver/*',
  '../../desktop/*',
  '**/homeserver/**',
  '**/desktop/**',
]

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', 'data/**', 'bench-results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': [
        'error',
        {
          // STYLE.md rule 6: statements are prepared with bound parameters, never string-built.
          selector: "CallExpression[callee.property.name='prepare'] > TemplateLiteral[expressions.length>0]",
          message: 'Build SQL with bound parameters, not template strings.',
        },
        {
          selector: "CallExpression[callee.property.name='prepare'] > BinaryExpression",
          message: 'Build SQL with bound parameters, not string concatenation.',
        },
      ],
    },
  },
  {
    // protocol imports nothing of ours (STYLE.md rule 1).
    files: ['protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ourPackages, message: 'protocol must not import other Parley packages.' }] },
      ],
    },
  },
  {
    // The browser-safe part of protocol must not reach for Node built-ins.
    files: ['protocol/src/client/**/*.ts', 'protocol/src/schema/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ourPackages, message: 'protocol must not import other Parley packages.' },
            { group: ['node:*'], message: 'client and schema code runs in browsers too.' },
          ],
        },
      ],
    },
  },
  {
    // Layering inside the homeserver: services and db never see HTTP or WebSocket.
    files: ['homeserver/src/services/**/*.ts', 'homeserver/src/db/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['hono', 'hono/*', '@hono/*', 'ws'], message: 'services and db are transport-free.' },
            {
              group: ['**/routes/**', '**/ws/**'],
              message: 'dependencies point inward: routes -> services -> db.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['homeserver/src/db/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['hono', 'hono/*', '@hono/*', 'ws'], message: 'db is transport-free.' },
            { group: ['**/routes/**', '**/ws/**', '**/services/**'], message: 'db must not import upward.' },
          ],
        },
      ],
    },
  },
)
