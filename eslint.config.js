import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // src/*/generated/ is written by hack/gen-types.sh from the protos and never edited by hand.
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'src/*/generated/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
);
