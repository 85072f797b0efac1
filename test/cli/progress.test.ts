// Progress on a terminal: the built CLI run in a pseudo-TTY made by util-linux `script`, which
// copies everything the program writes to the terminal onto its own stdout.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliBin, nixoci } from '../helpers/cli.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-progress-'));
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'progress' });
});

/** Runs nixoci in a pty; the arguments are store paths and temp paths (no shell metacharacters). */
function inPty(args: string[], term = 'xterm'): Promise<{ code: number; output: string }> {
  const command = [cliBin, ...args].join(' ');
  return new Promise((resolve) => {
    const child = execFile(
      'script',
      ['-qec', command, '/dev/null'],
      { encoding: 'utf8', env: { ...process.env, TERM: term, COLUMNS: '120' } },
      (error, stdout) => resolve({ code: error ? Number(error.code ?? 1) : 0, output: stdout }),
    );
    child.stdin?.end();
  });
}

describe('progress', () => {
  it('renders the overall bar on a terminal and exits 0', async () => {
    const dest = `oci:${join(work, 'tty')}`;
    const r = await inPty(['build', '--graph', fx.graphFile, '--to', dest, '--no-cache']);
    expect(r.code).toBe(0);
    const n = fx.paths.length;
    expect(r.output).toMatch(/layers read +\[#+\.*\] \d+ done, [\d.]+ (B|KiB|MiB) read/);
    expect(r.output).toContain(`${n - 1} done`);
    expect(r.output).toContain('\x1b[?25l'); // the cursor hidden while drawing…
    expect(r.output).toContain('\x1b[?25h'); // …and shown again
    expect(r.output).toContain(`${dest}:latest (amd64): sha256:`);
    expect(r.output).toContain(`${n} layers (${n} written)`);
  });

  it('draws nothing with --quiet on a terminal, nor when stderr is not a terminal', async () => {
    const quiet = await inPty([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${join(work, 'q')}`,
      '--quiet',
    ]);
    expect(quiet.code).toBe(0);
    expect(quiet.output).toBe('');
    const piped = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${join(work, 'p')}`,
      '--no-cache',
    ]);
    expect(piped.code).toBe(0);
    expect(piped.stderr).not.toContain('layers read');
    expect(piped.stderr).not.toContain('\x1b[');
  });

  it('counts a layer once when a second destination reads it again', async () => {
    const r = await inPty([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${join(work, 'twice')}`,
      '--to',
      `docker-archive:${join(work, 'twice.tar')}`,
      '--no-cache',
    ]);
    expect(r.code).toBe(0);
    const counts = [...r.output.matchAll(/layers read +\[[#.]+\] (\d+) done/g)].map((m) => Number(m[1]));
    expect(counts.length).toBeGreaterThan(0);
    expect(Math.max(...counts)).toBeLessThanOrEqual(fx.paths.length);
  });

  it('draws no bars on a TERM=dumb terminal, which cannot move the cursor, and still sums up', async () => {
    const dest = `oci:${join(work, 'dumb')}`;
    const r = await inPty(['build', '--graph', fx.graphFile, '--to', dest, '--no-cache'], 'dumb');
    expect(r.code).toBe(0);
    expect(r.output).not.toContain('\x1b[');
    expect(r.output).not.toContain('layers read');
    expect(r.output).toContain(`${dest}:latest (amd64): sha256:`);
  });
});
