import { spawnSync } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliBin, nixoci } from '../helpers/cli.js';
import { repoRoot } from '../helpers/env.js';
import { buildExampleClosure } from '../helpers/nix.js';

// bin/nixoci.js compiles the bundle with a V8 code cache kept under $XDG_CACHE_HOME/nixoci/v8.
describe('the entry point', () => {
  const home = mkdtempSync(join(tmpdir(), 'nixoci-entry-'));
  const v8Dir = join(home, 'nixoci', 'v8');
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("prints package.json's version, and refuses an NIXOCI_WORKERS that is no count", async () => {
    const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      version: string;
    };
    const v = await nixoci(['--version']);
    expect(v.stdout).toBe(`nixoci ${version}\n`);
    const { graphFile } = await buildExampleClosure();
    const out = join(home, 'workers-oci');
    const bad = await nixoci(['build', '--graph', graphFile, '--to', `oci:${out}`], {
      env: { NIXOCI_WORKERS: 'abc' },
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /^nixoci: error: NIXOCI_WORKERS=abc: not a number of layer worker threads from 0 to 999\n/,
    );
    const none = await nixoci(['build', '--quiet', '--graph', graphFile, '--to', `oci:${out}`], {
      env: { NIXOCI_WORKERS: '0' },
    });
    expect(none.code, none.stderr).toBe(0);
  });

  it('writes a code cache per command, uses it, and replaces one that V8 rejects', async () => {
    const env = { XDG_CACHE_HOME: home };
    const first = await nixoci(['--help'], { env });
    expect(first.code).toBe(0);
    const files = readdirSync(v8Dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{32}-other\.bin$/);
    const cache = join(v8Dir, files[0]!);
    const written = readFileSync(cache);
    expect(written.length).toBeGreaterThan(10_000);

    // With the cache: the same output, and the cache is left as it is.
    const second = await nixoci(['--help'], { env });
    expect(second).toEqual(first);
    expect(readFileSync(cache).equals(written)).toBe(true);

    // A command of its own gets a cache of its own.
    expect((await nixoci(['completion', 'bash'], { env })).code).toBe(0);
    expect(readdirSync(v8Dir).sort()).toEqual([files[0]!.replace('-other', '-completion'), files[0]!].sort());

    // Garbage in the cache file: V8 rejects it, the run is unaffected, the cache is rewritten.
    writeFileSync(cache, Buffer.alloc(written.length, 0xab));
    const third = await nixoci(['--help'], { env });
    expect(third).toEqual(first);
    const rewritten = readFileSync(cache);
    expect(rewritten.equals(Buffer.alloc(written.length, 0xab))).toBe(false);
    expect(rewritten.length).toBeGreaterThan(10_000);
  });

  it('does not hand V8 a code cache damaged on disk, nor block on a FIFO in its place', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-entry-damaged-'));
    try {
      const env = { XDG_CACHE_HOME: dir };
      const first = await nixoci(['--help'], { env });
      expect(first.code).toBe(0);
      const v8 = join(dir, 'nixoci', 'v8');
      const cache = join(v8, readdirSync(v8)[0]!);
      const good = readFileSync(cache);
      // V8 checks version, flags and source of a cache, not its bytes: a few bytes changed inside
      // one (bit rot, a bad copy) ended every run in a V8 fatal error or a segfault.
      for (const at of [0.1, 0.3, 0.5, 0.7, 0.9]) {
        const damaged = Buffer.from(good);
        damaged.fill(0xfd, Math.floor(damaged.length * at), Math.floor(damaged.length * at) + 8);
        writeFileSync(cache, damaged);
        const r = await nixoci(['--help'], { env });
        expect(r, `damaged at ${at}`).toEqual(first);
        expect(readFileSync(cache).equals(damaged)).toBe(false);
      }
      rmSync(cache);
      spawnSync('mkfifo', [cache]);
      const fifo = spawnSync(cliBin, ['--help'], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
        timeout: 90_000, // a read of the FIFO would never end; a busy machine needs far less
        killSignal: 'SIGKILL',
      });
      expect({ code: fifo.status, stdout: fifo.stdout, stderr: fifo.stderr }).toEqual(first);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps the 16 newest code caches when it writes one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-entry-prune-'));
    try {
      const v8 = join(dir, 'nixoci', 'v8');
      mkdirSync(v8, { recursive: true });
      // Caches of 20 older builds, the oldest first, and a file that is not a cache.
      for (let i = 0; i < 20; i++) {
        const f = join(v8, `${String(i).padStart(32, '0')}-push.bin`);
        writeFileSync(f, 'old');
        utimesSync(f, 1_000_000 + i, 1_000_000 + i);
      }
      writeFileSync(join(v8, 'notes.txt'), 'kept');
      // a temp file of a run killed while writing (no such process), and one of a live run (this one)
      const dead = `${String(0).padStart(32, '0')}-push.bin.999999.tmp`;
      const live = `${String(0).padStart(32, '0')}-push.bin.${process.pid}.tmp`;
      for (const f of [dead, live]) writeFileSync(join(v8, f), 'half');
      expect((await nixoci(['--version'], { env: { XDG_CACHE_HOME: dir } })).code).toBe(0);
      const left = readdirSync(v8).sort();
      expect(left.filter((f) => f.endsWith('.bin'))).toHaveLength(16);
      expect(left.some((f) => f.endsWith('-other.bin'))).toBe(true);
      // The newest 15 old ones stay (4 … 19); the oldest 5 went.
      expect(left).toContain(`${String(19).padStart(32, '0')}-push.bin`);
      expect(left).toContain(`${String(5).padStart(32, '0')}-push.bin`);
      expect(left).not.toContain(`${String(4).padStart(32, '0')}-push.bin`);
      expect(left).toContain('notes.txt');
      expect(left).not.toContain(dead);
      expect(left).toContain(live);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes no cache with NIXOCI_NO_CODE_CACHE, nor when the cache dir is unwritable', async () => {
    const off = mkdtempSync(join(tmpdir(), 'nixoci-entry-off-'));
    try {
      const r = await nixoci(['--version'], { env: { XDG_CACHE_HOME: off, NIXOCI_NO_CODE_CACHE: '1' } });
      expect(r.code).toBe(0);
      expect(readdirSync(off)).toEqual([]);
      // A file where the cache dir would be: the command still works, with one line of output.
      const blocked = join(off, 'blocked');
      writeFileSync(blocked, '');
      const b = await nixoci(['--version'], { env: { XDG_CACHE_HOME: blocked } });
      expect(b).toEqual({ code: 0, stdout: r.stdout, stderr: '' });
    } finally {
      rmSync(off, { recursive: true, force: true });
    }
  });

  it('keeps the exit codes: usage errors exit 2 with one line, not a stack trace', async () => {
    const r = await nixoci(['frobnicate'], { env: { XDG_CACHE_HOME: home } });
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toMatch(/^nixoci: error: unknown command "frobnicate"$/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('stops quietly when the reader of its output is gone, and says in one line when output fails', async () => {
    const graph = (await buildExampleClosure()).graphFile;
    const sh = (script: string) =>
      spawnSync('bash', ['-c', script, 'bash', join(repoRoot, 'bin', 'nixoci.js'), graph], {
        encoding: 'utf8',
        env: { ...process.env, XDG_CACHE_HOME: home },
      });
    // `true` has exited long before Node has started: every write meets a closed pipe (EPIPE).
    for (const cmd of ['inspect --graph "$2"', 'inspect --graph "$2" --json', 'diff --help']) {
      const gone = sh(`"$1" ${cmd} | true; echo "\${PIPESTATUS[0]}"`);
      expect(gone.stdout, cmd).toBe('0\n');
      expect(gone.stderr, cmd).toBe('');
    }
    const full = sh(`"$1" inspect --graph "$2" > /dev/full`);
    expect(full.status).toBe(1);
    expect(full.stderr).toBe(
      'nixoci: error: cannot write to standard output: ENOSPC: no space left on device, write\n',
    );
    // an archive on standard output that is a device, not a pipe: no command to blame
    const archive = sh(`"$1" build --graph "$2" --to docker-archive:- > /dev/full`);
    expect([archive.status, archive.stderr]).toEqual([
      1,
      'nixoci: error: cannot write docker-archive:-: ENOSPC: no space left on device, write\n' +
        'hint: that filesystem is full (or your quota used up): free some space there, or write somewhere else\n',
    ]);
  });

  it('starts Node without NODE_EXTRA_CA_CERTS and gives the variable back to child processes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-entry-ca-'));
    try {
      // Node parses NODE_EXTRA_CA_CERTS at start-up and warns about a bad one there; through
      // bin/nixoci.js it is left for the TLS connections that need it, so --version says nothing.
      const missing = join(dir, 'missing.pem');
      const quiet = await nixoci(['--version'], { env: { NODE_EXTRA_CA_CERTS: missing } });
      expect(quiet.code).toBe(0);
      expect(quiet.stderr).toBe('');
      const direct = spawnSync(process.execPath, [join(repoRoot, 'bin', 'nixoci.js'), '--version'], {
        encoding: 'utf8',
        env: { ...process.env, NODE_EXTRA_CA_CERTS: missing },
      });
      expect(direct.stderr).toMatch(/Ignoring extra certs/);

      // A child (here the nix that resolves --path) sees the variable as the user set it.
      const seen = join(dir, 'seen');
      const nix = join(dir, 'nix');
      writeFileSync(nix, `#!/bin/sh\nprintf '%s' "$NODE_EXTRA_CA_CERTS" > ${seen}\nexec nix "$@"\n`, {
        mode: 0o755,
      });
      const { app } = await buildExampleClosure();
      const r = await nixoci(['inspect', '--path', app, '--json'], {
        env: { NODE_EXTRA_CA_CERTS: missing, NIXOCI_NIX: nix },
      });
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(seen, 'utf8')).toBe(missing);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("caps glibc's malloc arenas at 2 unless MALLOC_ARENA_MAX is set (seen by a child, as by Node)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-entry-arena-'));
    try {
      const seen = join(dir, 'seen');
      const nix = join(dir, 'nix');
      writeFileSync(nix, `#!/bin/sh\nprintf '%s' "$MALLOC_ARENA_MAX" > ${seen}\nexec nix "$@"\n`, {
        mode: 0o755,
      });
      const { app } = await buildExampleClosure();
      for (const [given, want] of [
        [undefined, '2'],
        ['8', '8'],
      ] as const) {
        const env: Record<string, string | undefined> = { ...process.env, NIXOCI_NIX: nix };
        if (given === undefined) delete env.MALLOC_ARENA_MAX;
        else env.MALLOC_ARENA_MAX = given;
        const r = spawnSync(join(repoRoot, 'bin', 'nixoci.js'), ['inspect', '--path', app, '--json'], {
          encoding: 'utf8',
          env,
        });
        expect(r.status, r.stderr).toBe(0);
        expect(readFileSync(seen, 'utf8')).toBe(want);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says how to build nixoci when dist/ is missing, without a stack trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-unbuilt-'));
    try {
      cpSync(join(repoRoot, 'bin'), join(dir, 'bin'), { recursive: true });
      cpSync(join(repoRoot, 'package.json'), join(dir, 'package.json'));
      const r = spawnSync(join(dir, 'bin', 'nixoci.js'), ['--version'], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `nixoci: error: nixoci is not built (no ${join(dir, 'dist', 'nixoci.cjs')})\nhint: run \`npm ci && npm run build\` in ${dir}\n`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
