// Load: many `nixoci push` processes at once into one repository, different tags, shared blobs
// (two closures that differ in the app path only). Every one succeeds, every tag verifies.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure } from '../helpers/nix.js';
import { uniqueRepo } from '../registry/push-helpers.js';
import { auditRepository, spawnCli } from './robust-helpers.js';

const env = testEnv();
const RUNS = 8;

describe('concurrent pushes', () => {
  it(`${RUNS} pushes of one repository at once all succeed with correct images`, async () => {
    const fxs = [await buildFixtureClosure({ tag: 'load-a' }), await buildFixtureClosure({ tag: 'load-b' })];
    const repo = uniqueRepo('load');
    const started = Date.now();
    const runs = await Promise.all(
      Array.from({ length: RUNS }, (_, i) => {
        const fx = fxs[i % 2]!;
        // Separate cache dirs: every process reads and hashes for itself, as separate CI jobs would.
        const cache = mkdtempSync(path.join(tmpdir(), 'nixoci-load-cache-'));
        return spawnCli([
          'push',
          '--graph',
          fx.graphFile,
          '--entrypoint',
          `${fx.app}/bin/app`,
          '--cache-dir',
          cache,
          '--json',
          `${env.registry}/${repo}:t${i}`,
        ]).done;
      }),
    );
    const wall = Date.now() - started;
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const audit = await auditRepository(env.registry, repo);
    expect(audit.problems).toEqual([]);
    expect(audit.tags.sort()).toEqual(Array.from({ length: RUNS }, (_, i) => `t${i}`).sort());
    const actions = runs.flatMap((r) =>
      (JSON.parse(r.stdout) as { layers: { action: string }[] }).layers.map((l) => l.action),
    );
    const count = (a: string): number => actions.filter((x) => x === a).length;
    console.log(
      `[robustness] load: concurrent pushes=${RUNS} succeeded=${runs.filter((r) => r.code === 0).length} wall=${wall} ms ` +
        `layers uploaded=${count('uploaded')} skipped=${count('skipped')} mounted=${count('mounted')} images lost/corrupted=${audit.problems.length}`,
    );
  }, 180_000);
});
