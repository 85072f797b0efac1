import { randomBytes } from 'node:crypto';

/**
 * The part of a temp file's name that makes it this writer's: `PID.RANDOM`. The PID lets
 * `removeStaleFiles` find a killed writer's files; the 64 random bits make the name unguessable, so
 * that no one can plant a symlink there beforehand (temp files are also opened with O_EXCL, 'wx',
 * which refuses any name that exists, a link included).
 */
export function tempTag(): string {
  return `${process.pid}.${randomBytes(8).toString('hex')}`;
}

/**
 * A regex source matching `tempTag()` with the PID as its group; also the plain `PID` of older
 * nixoci versions, whose temp files a killed run may have left.
 */
export const TEMP_TAG_PATTERN = '(\\d+)(?:\\.[0-9a-f]{16})?';
