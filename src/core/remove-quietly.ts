import { rmSync } from 'node:fs';

/**
 * Removes what a failed write left (a temp file, a directory it made), never throwing: the cleanup
 * after a failure must not replace that failure's error with its own (`force` ignores only ENOENT,
 * while a directory one cannot enter, a name too long or a read-only filesystem fail the removal
 * too, and the user would see an "internal error" about an unlink instead of the real cause).
 */
export function removeQuietly(path: string, options: { recursive?: boolean } = {}): void {
  try {
    rmSync(path, { force: true, recursive: options.recursive ?? false });
  } catch {
    // nothing more can be done; the error being reported says why
  }
}
