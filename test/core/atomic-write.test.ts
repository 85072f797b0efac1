import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { atomicWrite } from '../../src/core/atomic-write.js';
import { DigestCache, type LayerDigests } from '../../src/layer/cache.js';
import { sha256Digest } from '../../src/core/digest.js';

describe('atomicWrite', () => {
  const root = mkdtempSync(join(tmpdir(), 'hx-sec-atomic-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('never follows a symlink planted at the temp name nixoci used to pick (FILE.PID.tmp)', () => {
    const dir = mkdtempSync(join(root, 'w-'));
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    const file = join(dir, 'index.json');
    symlinkSync(victim, `${file}.${process.pid}.tmp`);
    atomicWrite(file, 'new');
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readFileSync(file, 'utf8')).toBe('new');
    // no temp file of its own left beside it
    expect(readdirSync(dir).sort()).toEqual(['index.json', `index.json.${process.pid}.tmp`, 'victim']);
  });

  it("keeps the layer cache's entries from following a planted link", () => {
    const dir = mkdtempSync(join(root, 'cache-'));
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    const key = 'ab'.repeat(32);
    const entry = join(dir, 'v1', 'ab', `${key}.json`);
    const d: LayerDigests = { diffId: sha256Digest('a'), digest: sha256Digest('b'), size: 1, tarSize: 2 };
    const cache = new DigestCache(dir);
    cache.put(key, d); // makes v1/ab
    rmSync(entry);
    symlinkSync(victim, `${entry}.${process.pid}.tmp`);
    new DigestCache(dir).put(key, d);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(new DigestCache(dir).get(key)).toEqual(d);
  });
});
