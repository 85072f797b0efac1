import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Tests share one Nix store, one registry and one Docker engine; files run one at a time
    // so that image tags and store paths made by one file are not pulled from under another.
    fileParallelism: false,
    reporters: ['default'],
  },
});
