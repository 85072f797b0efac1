// engine-loads.json, the record of what was loaded into containerd-store engines, read from a real
// file system in a child process (a synchronous read of a FIFO would block the test runner too).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/env.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Reads the record for engine `e1`, then records a load there, in a child process. */
function readThenRecord(cacheDir: string): ReturnType<typeof spawnSync> {
  const module = pathToFileURL(join(repoRoot, 'dist', 'registry', 'engine-loads.js')).href;
  const script = `
    const { engineLoads, recordEngineLoad } = await import(${JSON.stringify(module)});
    console.log(JSON.stringify(engineLoads(${JSON.stringify(cacheDir)}, 'e1')));
    await recordEngineLoad(${JSON.stringify(cacheDir)}, 'e1', { id: 'sha256:${'a'.repeat(64)}', blobs: [] });`;
  // SIGKILL: a synchronous read of a FIFO nobody writes to is not ended by SIGTERM
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
    killSignal: 'SIGKILL',
  });
}

describe('engine-loads.json', () => {
  it('takes a FIFO or a link to a device in its place for no record, instead of blocking or reading without end', () => {
    for (const plant of ['fifo', 'device'] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'hx-review-engine-loads-'));
      dirs.push(dir);
      const file = join(dir, 'engine-loads.json');
      if (plant === 'fifo') execFileSync('mkfifo', [file]);
      else symlinkSync('/dev/zero', file);
      const r = readThenRecord(dir);
      expect([plant, r.status, r.stdout, r.stderr]).toEqual([plant, 0, '[]\n', '']);
      // recorded over it
      expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
        version: 1,
        engines: { e1: [{ id: `sha256:${'a'.repeat(64)}`, blobs: [] }] },
      });
    }
  });
});
