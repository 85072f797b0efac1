import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';

/**
 * The text of `file` when it is a regular file of at most `maxBytes`, else undefined (missing,
 * unreadable, a directory, too big). For the files nixoci keeps for itself (digest cache entries,
 * mount holders), which anyone with access to the directory can replace: opened non-blocking, so
 * that a FIFO there is not waited on for ever (a synchronous read cannot be interrupted, not even
 * by SIGTERM), and a device (a symlink to /dev/zero) is not read without end.
 */
export function readSmallFile(file: string, maxBytes: number): string | undefined {
  try {
    return readRegularFile(file, maxBytes);
  } catch {
    return undefined;
  }
}

/**
 * The text of `file`, a file the user named (a config file, a CA file, a graph, devbox.json).
 * Opened non-blocking and checked on the open descriptor, so a FIFO is refused instead of waited on
 * for ever and a device is not read without end. Throws the fs error (ENOENT, EACCES) or an Error
 * saying what the file is instead; callers put it after `cannot read FILE: `.
 */
export function readRegularFile(file: string, maxBytes: number): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`not a regular file (${kindOf(st)})`);
    if (st.size > maxBytes) throw new Error(`${st.size} bytes, more than the ${maxBytes} nixoci reads`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}
