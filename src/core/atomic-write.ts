import { renameSync, writeFileSync } from 'node:fs';
import { removeQuietly } from './remove-quietly.js';

/**
 * Replaces `file` with `data` at once: written to `FILE.PID.tmp` and renamed over it, so a reader
 * sees the old content or the new, never a part. The temp file is gone afterwards, whatever
 * happened (a killed writer's is left for `removeStaleFiles`, which knows the name by its PID).
 */
export function atomicWrite(file: string, data: string | Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } finally {
    removeQuietly(tmp);
  }
}
