import { lstatSync, readlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * The file a chain of symlinks from `file` ends at, existing or not: where a write must go so that
 * a symlink the user made stays one (a dangling link is written through, its target created).
 * Undefined for a loop (or a chain of over 40 links, as the kernel's limit).
 */
export function linkTarget(file: string): string | undefined {
  let p = resolve(file);
  for (let i = 0; i < 40; i++) {
    try {
      if (!lstatSync(p).isSymbolicLink()) return p;
    } catch {
      return p;
    }
    p = resolve(dirname(p), readlinkSync(p));
  }
  return undefined;
}
