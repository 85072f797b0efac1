// Progress of a load that leaves out the layers the engine holds (the real Podman of
// scripts/services): those layers are never read, and are counted as done as soon as they are
// known to be left out, in the terminal's bars (a pty made by util-linux `script`) and in the
// status lines of a CI log. Before, the bar and the lines counted only the layers read.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBin, nixoci } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { podmanRmi } from '../helpers/podman.js';
import { tempDir } from '../registry/daemon-helpers.js';

const id = randomBytes(4).toString('hex');
const repo = `hx-progress-${id}`;
const host = testEnv().podmanHost;
const cacheDir = tempDir('hx-progress-cache-');

/** Runs nixoci in a pty; the arguments are store paths and temp paths (no shell metacharacters). */
function inPty(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      'script',
      // wide enough for the bar beside the longer overall line
      ['-qec', `stty cols 160 rows 24; ${[cliBin, ...args].join(' ')}`, '/dev/null'],
      { encoding: 'utf8', env: { ...process.env, TERM: 'xterm' } },
      (error, stdout) => resolve({ code: error ? Number(error.code ?? 1) : 0, output: stdout }),
    );
    child.stdin?.end();
  });
}

describe('progress of a load that omits the layers Podman holds', () => {
  let v1: FixtureClosure;
  let v2: FixtureClosure;
  let v3: FixtureClosure;
  const loadArgs = (c: FixtureClosure, tag: string): string[] => [
    'load',
    '--graph',
    c.graphFile,
    `podman:${repo}:${tag}`,
    '--host',
    host,
    '--cache-dir',
    cacheDir,
  ];

  beforeAll(async () => {
    const build = (t: string): Promise<FixtureClosure> => buildFixtureClosure({ tag: `${repo}-${t}` });
    [v1, v2, v3] = await Promise.all([build('a'), build('b'), build('c')]);
    // Podman then holds every layer but the app's of v2 and v3 (the closures differ in it only)
    const first = await nixoci([...loadArgs(v1, 'one'), '--quiet']);
    expect(first.code, first.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await podmanRmi(`${repo}:one`, `${repo}:two`, `${repo}:three`);
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it('fills the bar on a terminal: the held layers are done, the changed one read', async () => {
    const n = v2.paths.length;
    const changed = await inPty(loadArgs(v2, 'two'));
    expect(changed.code, changed.output).toBe(0);
    expect(changed.output).toMatch(
      new RegExp(`layers read +\\[#+\\] ${n} done, ${n - 1} \\([\\d.]+ (B|KiB|MiB)\\) already there, `),
    );
    expect(changed.output).toContain(`${n} layers (${n - 1} omitted, 1 sent)`);
    // the old count, of the layers read only, shows no more than the one read
    expect(changed.output).not.toMatch(/layers read .*\b[2-9] done, [\d.]+ (B|KiB|MiB) read/);

    // unchanged: nothing is read, every layer is done
    const again = await inPty(loadArgs(v2, 'two'));
    expect(again.code, again.output).toBe(0);
    expect(again.output).toMatch(
      new RegExp(`layers read +\\[#+\\] ${n} done, ${n} \\([\\d.]+ (B|KiB|MiB)\\) already there, 0 B read`),
    );
  }, 120_000);

  it('counts the held layers in the status lines of a CI log, the last one with every layer', async () => {
    const n = v3.paths.length;
    const r = await nixoci(loadArgs(v3, 'three'), { env: { NIXOCI_STATUS_INTERVAL: '0.001' } });
    expect(r.code, r.stderr).toBe(0);
    const status = r.stderr.split('\n').filter((l) => l.startsWith('nixoci: '));
    expect(status.length, r.stderr).toBeGreaterThan(0);
    expect(status.at(-1)).toMatch(
      new RegExp(
        `^nixoci: ${n} of ${n} layers made \\(${n - 1} already there, [\\d.]+ (B|KiB|MiB)\\), [\\d.]+ (B|KiB|MiB) tarred \\(\\d+ s\\)$`,
      ),
    );
  }, 120_000);
});
