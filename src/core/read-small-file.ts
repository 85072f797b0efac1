import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';

/**
 * The text of `file` when it is a regular file of at most `maxBytes`, else undefined (missing,
 * unreadable, a directory, too big). For the files nixoci keeps for itself (digest cache entries,
 * mount holders), which anyone with access to the directory can replace: opened non-blocking, so
 * that a FIFO there is not waited on for ever (a synchronous read cannot be interrupted, not even
 * by SIGTERM), and a device (a symlink to /dev/zero) is not read without end.
 */
export function readSmallFile(file: string, maxBytes: number): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > maxBytes) return undefined;
    return readFileSync(fd, 'utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
