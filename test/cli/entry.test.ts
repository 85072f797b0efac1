import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';

// bin/nixoci.js compiles the bundle with a V8 code cache kept under $XDG_CACHE_HOME/nixoci/v8.
describe('the entry point', () => {
  const home = mkdtempSync(join(tmpdir(), 'nixoci-entry-'));
  const v8Dir = join(home, 'nixoci', 'v8');
  afterAll(() => rmSync(home, { recursive: true, force: true }));

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
});
