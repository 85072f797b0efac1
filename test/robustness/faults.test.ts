// Fault injection: many pushes through a proxy that fails ~20 % of requests (seeded) in front of
// the real registry. Every push either succeeds with an image whose every blob verifies and that
// Docker pulls and runs, or fails with a one-line NixociError; no tag ever names a missing blob.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNixociError } from '../../src/core/errors.js';
import { DigestCache } from '../../src/layer/cache.js';
import { parseReference } from '../../src/registry/reference.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
import type { RetryEvent } from '../../src/registry/retry.js';
import { docker, dockerRmi } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { startFaultProxy, type FaultProxy } from '../registry/fault-proxy.js';
import { fixture, imageOf } from '../registry/push-helpers.js';
import {
  auditRepository,
  chaosFault,
  newChaosStats,
  readTar,
  seededRng,
  tarViolations,
  totalFaults,
} from './robust-helpers.js';

const env = testEnv();
const SEED = 20240607;
const PUSHES = Number(process.env.NIXOCI_CHAOS_PUSHES ?? 30);
const RATE = 0.2;

describe('pushes through a faulty registry', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
  });
  afterAll(async () => proxy.close());

  it(`${PUSHES} pushes at a ${RATE * 100}% fault rate: each succeeds verified or fails clearly`, async () => {
    const rng = seededRng(SEED);
    const stats = newChaosStats();
    const retries: RetryEvent[] = [];
    const policy = {
      attempts: 5,
      baseMs: 20,
      maxMs: 200,
      maxRetryAfterMs: 1500,
      onRetry: (e: RetryEvent) => retries.push(e),
    };
    const run = `${SEED}-${Date.now().toString(36)}`;
    const repos = [0, 1, 2].map((k) => `nixoci-test/chaos-${run}-${k}`);
    const failures: string[] = [];
    const problems: string[] = [];
    let ok = 0;
    let pulled = 0;
    let tarEntries = 0;
    for (let i = 0; i < PUSHES; i++) {
      const variant = `c${Math.floor(i / 5)}`;
      const { closure, app } = await fixture(variant);
      // A new gzip level each push makes new blobs (uploads); repeats are skipped or mounted.
      const level = 1 + (i % 9);
      const repo = repos[i % 3]!;
      const tag = `p${i}`;
      const cacheFrom = i % 4 === 3 ? [parseReference(`${proxy.host}/${repos[(i - 1) % 3]}:p${i - 1}`)] : [];
      proxy.fault = chaosFault(env.registry, rng, RATE, stats);
      try {
        const { image: img } = imageOf(closure, app, { cache: new DigestCache(null), level });
        await new RegistryTarget(parseReference(`${proxy.host}/${repo}:${tag}`), {
          retry: policy,
          concurrency: 3,
          cacheFrom,
        }).write([img], {});
        ok++;
        if (process.env.NIXOCI_CHAOS_TRACE) console.log(`push ${i} ok`);
      } catch (e) {
        const line = isNixociError(e) ? `${e.code}: ${e.message}` : `NOT A NixociError: ${String(e)}`;
        failures.push(`push ${i}: ${line}`);
        expect(isNixociError(e), line).toBe(true);
        if (isNixociError(e)) {
          expect(e.code).not.toBe('INTERNAL');
          expect(e.message).not.toContain('\n');
          expect(e.hint ?? '').not.toContain('\n');
        }
      } finally {
        proxy.fault = undefined;
      }
      // Straight from the registry: the tag is absent (failed push) or names only blobs that verify.
      const audit = await auditRepository(env.registry, repo, tag);
      problems.push(...audit.problems);
      const mine = audit.tags.includes(tag);
      if (!failures.some((f) => f.startsWith(`push ${i}:`)))
        expect(mine, `tag ${tag} after success`).toBe(true);
      for (const l of audit.layers) {
        const entries = readTar(l.bytes);
        tarEntries += entries.length;
        expect(tarViolations(entries)).toEqual([]);
      }
      if (mine && i % 10 === 9) {
        const name = `${env.registry}/${repo}:${tag}`;
        await dockerRmi(name);
        await docker(['pull', name]);
        const { stdout } = await docker(['run', '--rm', '--network', 'none', name]);
        expect(stdout).toContain(`fixture app ${variant}`);
        await dockerRmi(name);
        pulled++;
      }
    }
    // And at the end every tag of every repository once more.
    for (const r of repos) problems.push(...(await auditRepository(env.registry, r)).problems);
    expect(problems).toEqual([]);
    const byKind = Object.entries(stats.faults)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
    console.log(
      `[robustness] faults: pushes=${PUSHES} ok=${ok} failed=${failures.length} requests=${stats.requests} ` +
        `faults injected=${totalFaults(stats)} (${byKind}) retries=${retries.length} ` +
        `docker pull+run=${pulled} tar entries checked=${tarEntries} images lost/corrupted=${problems.length}`,
    );
    for (const f of failures) console.log(`[robustness]   ${f}`);
    expect(totalFaults(stats)).toBeGreaterThan(PUSHES);
    expect(retries.length).toBeGreaterThan(0);
    // Failures must stay rare: five attempts per exchange absorb a 20 % fault rate.
    expect(ok).toBeGreaterThanOrEqual(PUSHES * 0.8);
  }, 600_000);
});
