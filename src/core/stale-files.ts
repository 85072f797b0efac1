import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Removes the temp files of writers that were killed (SIGKILL leaves them behind): names in `dir`
 * matching `pattern`, whose first matching group is the writer's pid, when that process is gone. A live
 * writer's files are left alone, so two runs writing to one place do not break each other.
 */
export function removeStaleFiles(dir: string, pattern: RegExp): void {
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
    if (pid && !processAlive(Number(pid))) rmSync(join(dir, n), { force: true });
  }
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
