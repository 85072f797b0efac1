import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/env.js';

/** A digest of its own for process `p`, blob `i` (the script below makes the same). */
const digest = (p: number, i: number): string =>
  `sha256:${p.toString(16).padStart(4, '0')}${i.toString(16).padStart(60, '0')}`;

describe('the mount holders file', () => {
  it('keeps what every one of several pushes saving at once learned', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-holders-'));
    const module = pathToFileURL(join(repoRoot, 'dist', 'registry', 'holders.js')).href;
    const processes = 6;
    const blobs = 40;
    // Each process learns its own blobs, then all save at the same moment, over and over: a save
    // that reads, merges and writes without a lock drops what another wrote in between.
    const start = Date.now() + 1500;
    const script = `
      const { BlobHolders } = await import(${JSON.stringify(module)});
      const [p, start] = process.argv.slice(1).map(Number);
      const h = BlobHolders.for('registry.test', ${JSON.stringify(dir)});
      while (Date.now() < start);
      for (let i = 0; i < ${blobs}; i++) {
        h.add('sha256:' + p.toString(16).padStart(4, '0') + i.toString(16).padStart(60, '0'), 'repo-' + p);
        await h.save();
      }`;
    const codes = await Promise.all(
      Array.from(
        { length: processes },
        (_, p) =>
          new Promise<number | null>((resolve) =>
            spawn(process.execPath, ['--input-type=module', '-e', script, String(p), String(start)], {
              stdio: 'inherit',
            }).on('exit', resolve),
          ),
      ),
    );
    expect(codes).toEqual(Array(processes).fill(0));
    const { BlobHolders } = (await import(module)) as typeof import('../../src/registry/holders.js');
    const all = BlobHolders.for('registry.test', dir);
    const lost: string[] = [];
    for (let p = 0; p < processes; p++)
      for (let i = 0; i < blobs; i++)
        if (!all.get(digest(p, i) as never).includes(`repo-${p}`)) lost.push(`${p}/${i}`);
    expect(lost).toEqual([]);
  }, 60_000);

  it('takes a FIFO in place of the file for no holders, instead of blocking on it for ever', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-holders-fifo-'));
    const module = pathToFileURL(join(repoRoot, 'dist', 'registry', 'holders.js')).href;
    const file = join(
      dir,
      'holders',
      'v1',
      `${createHash('sha256').update('registry.test').digest('hex').slice(0, 32)}.json`,
    );
    mkdirSync(join(dir, 'holders', 'v1'), { recursive: true });
    execFileSync('mkfifo', [file]);
    const script = `
      const { BlobHolders } = await import(${JSON.stringify(module)});
      const h = BlobHolders.for('registry.test', ${JSON.stringify(dir)});
      const d = 'sha256:' + 'a'.repeat(64);
      console.log(JSON.stringify(h.get(d)));
      h.add(d, 'repo');
      await h.save();`;
    // A synchronous read of a FIFO nobody writes to cannot be interrupted, not even by SIGTERM.
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 90_000, // the read would never end; a busy machine needs far less
      killSignal: 'SIGKILL',
    });
    expect([r.status, r.stdout, r.stderr]).toEqual([0, '[]\n', '']);
    // saved over it
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({
      blobs: { [`sha256:${'a'.repeat(64)}`]: ['repo'] },
    });
  });
});
