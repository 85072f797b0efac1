import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * `mkdir -p`, without the `recursive` option of Node's mkdirSync: that one spins forever at full
 * CPU, deaf to SIGTERM, when a parent exists but cannot hold the child, as under /proc or /sys
 * (`--to oci:/proc/x`, `XDG_CACHE_HOME=/sys/…`): mkdir of the child says ENOENT, of the parent
 * EEXIST, and it retries the child without end. Here a child that is still not found once its
 * parent exists is an error, ENOENT, as `mkdir -p` reports it.
 */
export function makeDirs(dir: string): void {
  try {
    mkdirSync(dir);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && isDir(dir)) return;
    const parent = dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw e;
    makeDirs(parent);
  }
  try {
    mkdirSync(dir);
  } catch (e) {
    // another process made it meanwhile
    if (!((e as NodeJS.ErrnoException).code === 'EEXIST' && isDir(dir))) throw e;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
