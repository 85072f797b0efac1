import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Tests share one Nix store, one registry and one Docker engine; files run one at a time
    // so that image tags and store paths made by one file are not pulled from under another.
    fileParallelism: false,
    // No 'nixoci: N of M layers made…' status lines (every 30 s where stderr is not a terminal) in
    // the CLI runs of tests, whose stderr is checked line by line: a run that a busy machine makes
    // last over 30 s would otherwise fail them. test/cli/status-lines.test.ts sets its own.
    env: { NIXOCI_STATUS_INTERVAL: '0' },
    reporters: ['default'],
  },
});
