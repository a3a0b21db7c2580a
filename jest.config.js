// Jest runs the compiled JavaScript in dist/ so that tests exercise exactly what ships.
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testTimeout: 120000,
  maxWorkers: 2,
  verbose: false,
  reporters: ['default', '<rootDir>/hack/jest-summary-reporter.cjs'],
};
