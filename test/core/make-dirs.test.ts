import { mkdtempSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeDirs } from '../../src/core/make-dirs.js';

describe('makeDirs', () => {
  const root = mkdtempSync(join(tmpdir(), 'nixoci-make-dirs-'));

  it('makes every missing level, and is content with a directory that exists', () => {
    const d = join(root, 'a', 'b', 'c');
    makeDirs(d);
    makeDirs(d);
    expect(statSync(d).isDirectory()).toBe(true);
  });

  it('fails where mkdir -p fails: a file in the way, a dangling link, a parent under /proc', () => {
    writeFileSync(join(root, 'file'), '');
    expect(() => makeDirs(join(root, 'file'))).toThrow(/EEXIST/);
    expect(() => makeDirs(join(root, 'file', 'x'))).toThrow(/ENOTDIR/);
    symlinkSync(join(root, 'gone'), join(root, 'dangling'));
    expect(() => makeDirs(join(root, 'dangling', 'x'))).toThrow(/ENOENT|EEXIST/);
    // Node's mkdirSync(…, { recursive: true }) never returns here.
    expect(() => makeDirs('/proc/nixoci-test/x')).toThrow(/ENOENT/);
  });
});
