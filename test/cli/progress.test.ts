// Progress on a terminal: the built CLI run in a pseudo-TTY made by util-linux `script`, which
// copies everything the program writes to the terminal onto its own stdout.
import { execFile, execFileSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliBin, nixoci } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { startFaultProxy } from '../registry/fault-proxy.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-progress-'));
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'progress' });
});

/** A store path of 48 MB of deterministic noise: seconds to read at gzip -9, time to signal. */
function bigStorePath(): string {
  const dir = join(work, 'noise');
  mkdirSync(dir, { recursive: true });
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16, 4));
  writeFileSync(join(dir, 'noise.bin'), c.update(Buffer.alloc(48 << 20)));
  return execFileSync('nix-store', ['--add', dir], { encoding: 'utf8' }).trim();
}

/** Runs nixoci in a pty; the arguments are store paths and temp paths (no shell metacharacters). */
function inPty(args: string[], term = 'xterm'): Promise<{ code: number; output: string }> {
  return inPtyShell([cliBin, ...args].join(' '), term);
}

/** Runs a shell command line in a pty. */
function inPtyShell(command: string, term = 'xterm'): Promise<{ code: number; output: string }> {
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

  it('fits every line to the terminal, keeping the bytes and the rate at its end', async () => {
    // The terminal cuts a longer line (line wrapping is off while drawing): on 80 columns that was
    // the overall rate, on narrower ones every number.
    const big = bigStorePath();
    for (const cols of [80, 40]) {
      const build = [cliBin, 'build', '--path', big, '--to', `oci:${join(work, `cols-${cols}`)}`]
        .concat(['--no-cache', '--compression', 'gzip'])
        .join(' ');
      const r = await inPtyShell(`stty cols ${cols} rows 24; ${build}`);
      expect(r.code).toBe(0);
      // what each redraw writes: from the cursor's move to column 1 to the clearing of the line's rest
      const lines = [...r.output.matchAll(/\x1b\[1G([^\x1b]+)\x1b\[0K/g)].map((m) => m[1]!);
      if (cols >= 80) {
        expect(lines.some((l) => /^layers read +\[#*\.*\] /.test(l))).toBe(true);
        expect(lines.some((l) => /^noise +\[#*\.*\] /.test(l))).toBe(true);
      }
      expect(lines.some((l) => l.endsWith('/s'))).toBe(true);
      for (const l of lines) {
        expect(l.length, l).toBeLessThanOrEqual(cols);
        if (/B read|B\//.test(l)) expect(l, l).toMatch(/ [\d.]+ (B|KiB|MiB|GiB)\/s$/);
      }
    }
  }, 60_000);

  it('leaves the cursor shown and line wrapping on when a second signal ends the run at once', async () => {
    // Ctrl-C pressed twice: the first signal starts the winding down (here held up by a registry
    // that never answers the DELETE of the open upload), the second meets Node's default and ends
    // the process there, so the terminal must be given back by then. A non-interactive shell
    // ignores SIGINT for a background job: SIGTERM, handled the same way, stands in for it.
    const proxy = await startFaultProxy(testEnv().registry);
    // never answered: the upload's closing PUT (the run is still going when the signals come, however
    // fast it made the layer) and the DELETE that cancels it
    proxy.fault = (req) =>
      req.method === 'DELETE' || (req.method === 'PUT' && /[?&]digest=/.test(req.url ?? ''));
    try {
      const push = [
        cliBin,
        'push',
        '--path',
        bigStorePath(),
        `${proxy.host}/hx-progress/twice-${Date.now().toString(36)}:t`,
      ]
        .concat(['--no-cache', '--compression-level', '9'])
        .join(' ');
      const r = await inPtyShell(
        `${push} & p=$!; sleep 1.5; kill -TERM $p; sleep 0.5; kill -TERM $p; wait $p; echo exit=$?`,
      );
      expect(r.output).toContain('layers read'); // the bars were drawn when the signals came
      expect(r.output).toContain('exit=143'); // ended by the second signal
      // the first one was answered at once, on a line of its own after the bars were cleared
      expect(r.output).toMatch(
        /\x1b\[\?7h(\x1b\[\d*[A-Z])*nixoci: stopping: cancelling what was started \(again to end at once\)\r?\n/,
      );
      expect(r.output.lastIndexOf('\x1b[?25h')).toBeGreaterThan(r.output.lastIndexOf('\x1b[?25l'));
      expect(r.output.lastIndexOf('\x1b[?7h')).toBeGreaterThan(r.output.lastIndexOf('\x1b[?7l'));
    } finally {
      await proxy.close();
    }
  }, 60_000);
});
