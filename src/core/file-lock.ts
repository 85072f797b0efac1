import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { NixociError } from './errors.js';
import { removeQuietly } from './remove-quietly.js';
import { processAlive } from './stale-files.js';

/** How long to wait for another process's lock, and how old an empty lock file is a dead one. */
const WAIT_MS = 30_000;
const EMPTY_STALE_MS = 5_000;
/**
 * Written after the pid: a lock carrying this process's pid but not this nonce was left by a dead
 * process that had the same pid (a container's pid 1 from an earlier run, a process that exec'd
 * this one), and is stale, not ours to wait for.
 */
const NONCE = randomBytes(8).toString('hex');

/**
 * Runs `fn` while holding `lock`, a file made exclusively (O_EXCL) that holds this process's pid:
 * a read-modify-write of a shared file (an OCI layout's index.json) by two runs at once would
 * otherwise keep only the last one's change. A lock whose process is gone (SIGKILL) is taken over;
 * a live holder is waited for, up to 30 s.
 */
export async function withFileLock<T>(lock: string, fn: () => T, signal?: AbortSignal): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (take(lock)) break;
    const holder = holderOf(lock);
    // Every way round the loop meets the deadline: a stale lock that cannot be removed, or that
    // keeps coming back, must not spin for ever.
    if (holder === 'stale') removeQuietly(lock);
    if (Date.now() > deadline) {
      const by =
        holder === 'stale' ? 'a process that is gone, and cannot be removed' : `process ${holder ?? '?'}`;
      throw new NixociError('TARGET_WRITE', `${lock} is held by ${by}`, {
        hint: 'wait for that run to finish; if no nixoci is running, remove the file',
      });
    }
    await sleep(10 + Math.floor(Math.random() * 20), undefined, signal ? { signal } : {});
  }
  try {
    return fn();
  } finally {
    removeQuietly(lock);
  }
}

/**
 * Makes the lock with this process's pid in it; false when another has it. On a full disk (ENOSPC,
 * EDQUOT) the lock is held empty: made exclusively, it excludes others all the same (they take an
 * empty lock for one being written, for 5 s), and the cleanup after a failed write, which needs the
 * lock, must still run on the disk that failed it. Any other failure to write gives the lock up.
 */
function take(lock: string): boolean {
  let fd: number;
  try {
    fd = openSync(lock, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, `${process.pid} ${NONCE}\n`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') {
      removeQuietly(lock);
      throw e;
    }
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The live pid in the lock, 'stale' when its process is gone, undefined when not yet known. */
function holderOf(lock: string): number | 'stale' | undefined {
  let text: string;
  try {
    text = readFileSync(lock, 'utf8');
  } catch {
    return undefined; // removed meanwhile: try again
  }
  const [first = '', nonce] = text.trim().split(/\s+/);
  const pid = Number(first);
  if (first !== '' && Number.isInteger(pid) && pid > 0) {
    if (pid === process.pid) return nonce === NONCE ? pid : 'stale';
    return processAlive(pid) ? pid : 'stale';
  }
  // Empty: being written now, or its writer died between making it and writing the pid.
  try {
    return Date.now() - statSync(lock).mtimeMs > EMPTY_STALE_MS ? 'stale' : undefined;
  } catch {
    return undefined;
  }
}
