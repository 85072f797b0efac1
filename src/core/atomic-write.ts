import { chmodSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { removeQuietly } from './remove-quietly.js';

/**
 * Replaces `file` with `data` at once: written to `FILE.PID.tmp` and renamed over it, so a reader
 * sees the old content or the new, never a part. The temp file is gone afterwards, whatever
 * happened (a killed writer's is left for `removeStaleFiles`, which knows the name by its PID).
 * With `mode`, the file never exists with another one (a secret is never readable by others); with
 * `keepMode`, a file replaced keeps its permission bits (a file the user made 0600 stays so).
 */
export function atomicWrite(
  file: string,
  data: string | Buffer,
  options: { mode?: number; keepMode?: boolean } = {},
): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const kept = options.keepMode ? statSync(file, { throwIfNoEntry: false })?.mode : undefined;
  const mode = options.mode ?? (kept === undefined ? undefined : kept & 0o7777);
  try {
    if (mode === undefined) writeFileSync(tmp, data);
    else {
      writeFileSync(tmp, '', { mode });
      // a stale temp file of the same name keeps its mode: set it before the secret goes in
      chmodSync(tmp, mode);
      writeFileSync(tmp, data);
    }
    renameSync(tmp, file);
  } finally {
    removeQuietly(tmp);
  }
}
