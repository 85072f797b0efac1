// Hostile OCI layouts for `nixoci inspect oci:DIR`: a manifest blob or index.json that is a FIFO, a
// link to /dev/zero, a directory or far larger than any real one. Each must fail at once with one
// clear line and exit 1: not block forever (deaf to SIGTERM) nor read without end.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clearErrorProblems, spawnCli } from '../robustness/robust-helpers.js';

const hex = createHash('sha256').update('x').digest('hex');

function layout(
  root: string,
  name: string,
  blob: (file: string) => void,
  index?: (f: string) => void,
): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const indexFile = path.join(dir, 'index.json');
  if (index) index(indexFile);
  else
    writeFileSync(
      indexFile,
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${hex}`, size: 1 },
        ],
      }),
    );
  blob(path.join(dir, 'blobs', 'sha256', hex));
  return dir;
}

const fifo = (f: string): void => void execFileSync('mkfifo', [f]);
const sparse = (f: string): void => {
  writeFileSync(f, '');
  truncateSync(f, 200 << 20);
};

describe('inspect of a hostile OCI layout', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'nixoci-hx-g-layout-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const cases: [string, (r: string) => string, RegExp][] = [
    [
      'a manifest blob that is a FIFO',
      (r) => layout(r, 'fifo', fifo),
      /manifest sha256:\w+: not a regular file/,
    ],
    [
      'a manifest blob linked to /dev/zero',
      (r) => layout(r, 'zero', (f) => symlinkSync('/dev/zero', f)),
      /manifest sha256:\w+: not a regular file/,
    ],
    [
      'a manifest blob that is a directory',
      (r) => layout(r, 'dir', (f) => mkdirSync(f)),
      /manifest sha256:\w+: it is a directory/,
    ],
    ['a manifest blob of 200 MB', (r) => layout(r, 'big', sparse), /manifest sha256:\w+: larger than 8 MiB/],
    [
      'an index.json that is a FIFO',
      (r) => layout(r, 'index-fifo', () => undefined, fifo),
      /index\.json: not a regular file/,
    ],
    [
      'an index.json of 200 MB',
      (r) => layout(r, 'index-big', () => undefined, sparse),
      /index\.json: larger than 64 MiB/,
    ],
  ];
  it.each(cases)(
    '%s: one clear line, exit 1, at once',
    async (_name, make, says) => {
      const dir = make(root);
      const run = spawnCli(['inspect', `oci:${dir}`]);
      // a bound for a run that hangs (as a FIFO read did), far above what a busy machine needs
      const timer = setTimeout(() => run.child.kill('SIGKILL'), 90_000);
      const r = await run.done;
      clearTimeout(timer);
      expect(r.signal, r.stderr).toBeNull();
      expect(r.code, r.stderr).toBe(1);
      expect(clearErrorProblems(r.stderr)).toEqual([]);
      expect(r.stderr.split('\n')[0]).toMatch(says);
    },
    120_000,
  );
});
