import { defineConfig } from 'vitest/config';

// Two projects: `unit` needs nothing outside the process; `integration` runs against the real
// components that test/env/global-setup.ts starts (Redis, etcd + kube-apiserver, moto).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/env/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // Tests share the started components; each test uses its own names.
          fileParallelism: true,
        },
      },
    ],
  },
});
