// A full disk under every file nixoci writes: a small tmpfs (root may mount one; skipped where
// `mount` is refused), filled with a filler file to just short of what a run needs. Each run must
// fail with one clear line and exit 1, and leave nothing half-made behind.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFileLock } from '../../src/core/file-lock.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { clearErrorProblems } from './robust-helpers.js';

const PAGE = 4096;
const FS_SIZE = 1 << 20;

/** A tmpfs of FS_SIZE bytes at a new directory, or null when this process may not mount one. */
function mountTmpfs(): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-disk-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${FS_SIZE}`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
}

/** Empties the tmpfs but for `keep`, then fills it so that `free` bytes are left. */
function leaveFree(fs: string, free: number, keep: string[] = []): void {
  for (const n of readdirSync(fs))
    if (!keep.includes(n)) rmSync(path.join(fs, n), { recursive: true, force: true });
  const avail = statfsSync(fs).bavail * statfsSync(fs).bsize;
  writeFileSync(path.join(fs, 'filler'), Buffer.alloc(Math.max(0, avail - free)));
}

const fs = mountTmpfs();

describe.skipIf(fs === null)('a full disk', () => {
  const mnt = fs!;
  let storePath: string;
  /** The bytes the layer blob of storePath takes on the tmpfs, whole pages. */
  let layerBytes: number;
  beforeAll(async () => {
    // 100 KiB, always the same: one store path, one layer of ~25 pages
    const src = mkdtempSync(path.join(tmpdir(), 'nixoci-disk-full-src-'));
    const dir = path.join(src, 'disk-full-data');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'data'), Buffer.alloc(100 << 10, 'x'));
    storePath = execFileSync('nix-store', ['--add', dir], { encoding: 'utf8' }).trim();
    rmSync(src, { recursive: true, force: true });
    const out = mkdtempSync(path.join(tmpdir(), 'nixoci-disk-full-out-'));
    const r = await nixociJson<{ layers: { size: number }[] }>([
      'build',
      '--no-cache',
      '--path',
      storePath,
      '--to',
      `oci:${out}`,
    ]);
    rmSync(out, { recursive: true, force: true });
    layerBytes = Math.ceil(r.layers[0]!.size / PAGE) * PAGE;
  });
  afterAll(() => {
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });

  it('withFileLock still takes and gives back a lock when not one byte is free', async () => {
    leaveFree(mnt, 0);
    const lock = path.join(mnt, 'x.lock');
    expect(await withFileLock(lock, () => existsSync(lock))).toBe(true);
    expect(existsSync(lock)).toBe(false);
  });

  // Free space for the layer blob and the oci-layout file, then one and two pages more: the run
  // fails at the config, the manifest, or index.json, each after the layer blob is in place.
  it.each([0, 1, 2])(
    'a new oci: layout with room for the layer blob and %i pages more: removed, no blob or lock left',
    async (pages) => {
      leaveFree(mnt, layerBytes + PAGE + pages * PAGE);
      const r = await nixoci(['build', '--no-cache', '--path', storePath, '--to', `oci:${mnt}/layout`]);
      expect(r.code).toBe(1);
      expect(clearErrorProblems(r.stderr)).toEqual([]);
      expect(r.stderr).toMatch(/no space left on device/);
      expect(r.stderr).toMatch(/^hint: that filesystem is full/m);
      expect(readdirSync(mnt)).toEqual(['filler']);
    },
  );

  it.each(['g.dot', 'g.svg'])(
    '--graph-out %s with no room: fails, and the last graph stays as it was',
    async (name) => {
      leaveFree(mnt, FS_SIZE);
      const out = path.join(mnt, name);
      writeFileSync(out, 'old');
      leaveFree(mnt, 0, [name]);
      const r = await nixoci(['inspect', '--path', storePath, '--graph-out', out]);
      expect(r.code).toBe(1);
      expect(clearErrorProblems(r.stderr)).toEqual([]);
      expect(r.stderr).toContain(`cannot write ${out}: ENOSPC`);
      expect(r.stderr).toMatch(/^hint: that filesystem is full/m);
      expect(readFileSync(out, 'utf8')).toBe('old');
      expect(readdirSync(mnt).sort()).toEqual(['filler', name]);
    },
  );
});
