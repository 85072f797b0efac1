import {
  chmodSync,
  closeSync,
  fchmodSync,
  lstatSync,
  openSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { removeQuietly } from './remove-quietly.js';
import { tempTag } from './temp-name.js';

/**
 * Replaces `file` with `data` at once: written to `FILE.PID.RANDOM.tmp` and renamed over it, so a
 * reader sees the old content or the new, never a part. The temp name cannot be guessed and is
 * created exclusively ('wx'): a symlink planted beside `file` is never followed. The temp file is
 * gone afterwards, whatever happened (a killed writer's is left for `removeStaleFiles`, which knows
 * the name by its PID). A file replaced keeps its permission bits (a file the user made 0600 stays
 * so; one the group could read does not become 0600 under `umask 077`); with `mode`, the file
 * never exists with another one (a secret is never readable by others).
 */
export function atomicWrite(file: string, data: string | Buffer, options: { mode?: number } = {}): void {
  const tmp = `${file}.${tempTag()}.tmp`;
  const kept = statSync(file, { throwIfNoEntry: false })?.mode;
  const mode = options.mode ?? (kept === undefined ? undefined : kept & 0o7777);
  try {
    const fd = openSync(tmp, 'wx', mode ?? 0o666);
    try {
      // the mode given to the open is cut by the umask: set it before the data goes in
      if (mode !== undefined) fchmodSync(fd, mode);
      writeFileSync(fd, data);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } finally {
    removeQuietly(tmp);
  }
}

/**
 * Gives `tmp`, about to be renamed over `file`, the mode `file` has: a new file gets its mode from
 * the umask (0600 under `umask 077`), and a replaced index.json or archive the group could read
 * would silently stop being readable. Nothing to keep when `file` does not exist yet.
 */
export function keepMode(tmp: string, file: string): void {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o7777;
  } catch {
    return;
  }
  if ((lstatSync(tmp).mode & 0o7777) !== mode) chmodSync(tmp, mode);
}

/**
 * Why `file` cannot be renamed over, known before any work: in a sticky directory (/tmp) only the
 * owner of a file, of the directory, or root may replace or remove it. Undefined when it can be
 * (or does not exist).
 */
export function stickyProblem(file: string): string | undefined {
  const uid = process.getuid?.();
  if (uid === undefined || uid === 0) return undefined;
  let st;
  let dir;
  try {
    st = lstatSync(file);
    dir = statSync(dirname(file));
  } catch {
    return undefined;
  }
  if ((dir.mode & 0o1000) === 0 || st.uid === uid || dir.uid === uid) return undefined;
  return `${file} belongs to another user (uid ${st.uid}), and ${dirname(file)} is sticky: only its owner can replace it`;
}
