import { defineConfig } from 'vitest/config';

// One project per suite, so `npm run test:<suite>` runs exactly one and
// `npm test` runs them all (test/run-all). Suites that start real servers or
// QEMU guests run their files one at a time: the machines have 2 cores.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', '{agent,operator,proto}/src/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'cluster',
          include: ['test/cluster/**/*.test.ts', 'test/nats/**/*.test.ts', 'operator/test/**/*.test.ts', 'charts/test/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/vm/**/*.test.ts', 'kmod/test/**/*.test.ts', 'agent/test/**/*.test.ts'],
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'images',
          include: ['images/test/**/*.test.ts'],
          testTimeout: 1_200_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/node/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          testTimeout: 900_000,
          hookTimeout: 900_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
