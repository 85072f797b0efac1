// The lock file of src/core/file-lock.ts, on the real filesystem, in a fresh temp dir.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withFileLock } from '../../src/core/file-lock.js';

const work = mkdtempSync(path.join(tmpdir(), 'hx-quirks-lock-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('withFileLock', () => {
  // A dead process with this process's pid (a container's pid 1 of an earlier run, or a shell that
  // exec'd this one) left its lock: the old code took it for this process's own and waited for
  // itself until its 30 s deadline, then failed.
  it.each([
    ['the pid alone (an older nixoci)', `${process.pid}\n`],
    ['the pid and another nonce', `${process.pid} 0123456789abcdef\n`],
  ])(
    'takes over a stale lock carrying this process pid: %s',
    async (_what, content) => {
      const lock = path.join(work, `own-pid-${content.length}.lock`);
      writeFileSync(lock, content);
      await expect(withFileLock(lock, () => existsSync(lock))).resolves.toBe(true);
      expect(existsSync(lock)).toBe(false);
    },
    60_000,
  );
});
