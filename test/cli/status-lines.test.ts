// Where no progress bars are drawn (standard error a pipe: a CI log), a long run prints a status
// line every NIXOCI_STATUS_INTERVAL seconds, so that CI services that end silent jobs do not end it.
import { createCipheriv } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_STATUS_INTERVAL, statusInterval } from '../../src/cli/status-lines.js';
import { nixoci } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { startFaultProxy, type FaultProxy } from '../registry/fault-proxy.js';
import { uniqueRepo, verifyPushed } from '../registry/push-helpers.js';
import { forward } from '../robustness/robust-helpers.js';

const env = testEnv();
const HOLD_MS = 1500;

/** A store path of 2 MiB of noise (a layer worker's, and an upload that takes its time here). */
function noisePath(): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'nixoci-status-')), 'noise');
  mkdirSync(dir);
  const noise = createCipheriv('aes-128-ctr', Buffer.alloc(16, 5), Buffer.alloc(16, 1));
  writeFileSync(join(dir, 'noise.bin'), noise.update(Buffer.alloc(2 << 20)));
  return execFileSync('nix-store', ['--add', dir], { encoding: 'utf8' }).trim();
}

describe('status lines when no progress bars are drawn', () => {
  let proxy: FaultProxy;
  let path: string;
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
    // every upload's answer is held: the run waits for the registry with its layer made
    proxy.fault = (req, res) => {
      if (req.method !== 'PATCH' && req.method !== 'PUT') return false;
      forward(env.registry, req, res, { delayMs: HOLD_MS });
      return true;
    };
    path = noisePath();
  });
  afterAll(async () => proxy.close());

  const push = (repo: string, extra: string[], statusEnv: Record<string, string>) =>
    nixoci(['push', '--path', path, '--no-cache', ...extra, `docker://${proxy.host}/${repo}:t`], {
      env: statusEnv,
    });

  it('says how far a long run is, and what it waits for, at every interval; then the summary', async () => {
    const repo = uniqueRepo('status');
    const r = await push(repo, [], { NIXOCI_STATUS_INTERVAL: '0.3' });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    const status = lines.filter((l) => l.startsWith('nixoci: '));
    expect(status.length, r.stderr).toBeGreaterThan(1);
    for (const l of status)
      expect(l).toMatch(
        /^nixoci: [01] of 1 layer made, [\d.]+ (B|KiB|MiB) tarred(, waiting for the destination)? \(\d+ s\)$/,
      );
    // the layer is made long before the held answers come: the later lines say so
    expect(status.at(-2)).toMatch(
      /^nixoci: 1 of 1 layer made, 2\.0 MiB tarred, waiting for the destination \(\d+ s\)$/,
    );
    // and the last, as the run ends, gives the finished count, waiting for nothing
    expect(status.at(-1)).toMatch(/^nixoci: 1 of 1 layer made, 2\.0 MiB tarred \(\d+ s\)$/);
    // the summary comes last, after every status line
    expect(lines.at(-1)).toMatch(new RegExp(`^docker://${proxy.host}/${repo}:t .*sha256:[0-9a-f]{64}`));
    await verifyPushed(env.registry, repo, 't');
  });

  it('prints none with the default interval on a short run, with --quiet, with 0, or with one longer than the run', async () => {
    // The default is checked as a number: a run that is short here may not be on a busy machine.
    // (vitest.config.ts sets 0 for the other tests.)
    expect([DEFAULT_STATUS_INTERVAL, statusInterval('push', '')]).toEqual([30, 30]);
    for (const [extra, statusEnv] of [
      [['--quiet'], { NIXOCI_STATUS_INTERVAL: '0.3' }],
      [[], { NIXOCI_STATUS_INTERVAL: '0' }],
      // over setInterval's 2^31-1 ms, which Node takes as 1 ms (and warns)
      [[], { NIXOCI_STATUS_INTERVAL: '99999999' }],
    ] as const) {
      const r = await push(uniqueRepo('status'), [...extra], { ...statusEnv });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/layers? made|TimeoutOverflowWarning/);
    }
  });

  it('refuses an interval that is not a number of seconds before doing anything', async () => {
    const before = proxy.seen.length;
    const r = await push(uniqueRepo('status'), [], { NIXOCI_STATUS_INTERVAL: '10s' });
    expect([r.code, r.stderr]).toEqual([
      2,
      'nixoci: error: nixoci push: NIXOCI_STATUS_INTERVAL=10s: expected seconds\n' +
        'hint: give a number of seconds between status lines, e.g. NIXOCI_STATUS_INTERVAL=30 (0: none)\n',
    ]);
    expect(proxy.seen.length).toBe(before);
  });
});
