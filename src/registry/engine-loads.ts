import { join } from 'node:path';
import { z } from 'zod';
import { atomicWrite } from '../core/atomic-write.js';
import { isDigest, type Digest } from '../core/digest.js';
import { withFileLock } from '../core/file-lock.js';
import { makeDirs } from '../core/make-dirs.js';
import { readSmallFile } from '../core/read-small-file.js';

/**
 * What nixoci loaded into engines with the containerd image store, in `engine-loads.json` of the
 * cache directory: per engine ID, the images (manifest or index digest = the engine's image ID)
 * and the layer blobs each brought. Such an engine keeps a loaded image's blobs in its content
 * store as long as the image exists, and its API cannot say which blobs it holds; so a blob is taken
 * as held when an image recorded with it is still there (asked with `GET /images/{id}/json`).
 */
const FILE = 'engine-loads.json';
/** Images kept per engine: the newest ones (an inner loop needs the last few). */
const MAX_PER_ENGINE = 20;
/** Far more than 20 images' blobs per engine take; small enough to refuse a device at once. */
const MAX_FILE_BYTES = 16 << 20;

const recordSchema = z.object({
  id: z.string().refine(isDigest),
  blobs: z.array(z.string().refine(isDigest)),
});
const fileSchema = z.object({
  version: z.literal(1),
  engines: z.record(z.array(recordSchema)),
});

export interface EngineLoad {
  readonly id: Digest;
  readonly blobs: readonly Digest[];
}
type LoadsFile = z.infer<typeof fileSchema>;

/** The images recorded for an engine, newest first; none for an unreadable or foreign file. */
export function engineLoads(cacheDir: string, engineId: string): readonly EngineLoad[] {
  return (read(join(cacheDir, FILE)).engines[engineId] ?? []) as EngineLoad[];
}

/** Adds (or moves to the front) an image loaded into an engine; under a lock, so concurrent loads keep theirs. */
export async function recordEngineLoad(
  cacheDir: string,
  engineId: string,
  load: EngineLoad,
  signal?: AbortSignal,
): Promise<void> {
  makeDirs(cacheDir);
  const file = join(cacheDir, FILE);
  await withFileLock(
    `${file}.lock`,
    () => {
      const all = read(file);
      const before = (all.engines[engineId] ?? []).filter((r) => r.id !== load.id);
      all.engines[engineId] = [{ id: load.id, blobs: [...load.blobs] }, ...before].slice(0, MAX_PER_ENGINE);
      atomicWrite(file, JSON.stringify(all));
    },
    signal,
  );
}

function read(file: string): LoadsFile {
  // Opened non-blocking, as the digest cache's other files: a FIFO put there is not waited on for
  // ever, a device (a symlink to /dev/zero) not read without end.
  const text = readSmallFile(file, MAX_FILE_BYTES);
  try {
    const parsed = fileSchema.safeParse(JSON.parse(text ?? ''));
    if (parsed.success) return parsed.data;
  } catch {
    // missing, not a regular file, or not JSON: nothing recorded (the file is only a hint; the
    // engine is asked anyway)
  }
  return { version: 1, engines: {} };
}
