import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Removes the temp files of writers that were killed (SIGKILL leaves them behind): names in `dir`
 * matching `pattern`, whose first matching group is the writer's pid, when that process is gone. A live
 * writer's files are left alone, so two runs writing to one place do not break each other.
 * With `olderThanMs`, a file last written longer ago than that goes too, whatever its pid says: for
 * files written in one go (a few hundred bytes), whose pid may be another process's by now (pids
 * repeat, a container's nixoci is often pid 1 on every run).
 */
export function removeStaleFiles(dir: string, pattern: RegExp, o: { olderThanMs?: number } = {}): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const pid = pattern
      .exec(n)
      ?.slice(1)
      .find((g) => g !== undefined);
    if (pid && (!processAlive(Number(pid)) || olderThan(join(dir, n), o.olderThanMs)))
      rmSync(join(dir, n), { force: true });
  }
}

function olderThan(file: string, ms: number | undefined): boolean {
  if (ms === undefined) return false;
  const st = statSync(file, { throwIfNoEntry: false });
  return st !== undefined && st.mtimeMs < Date.now() - ms;
}

export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
