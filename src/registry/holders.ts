import { join } from 'node:path';
import { z } from 'zod';
import { atomicWrite } from '../core/atomic-write.js';
import { withFileLock } from '../core/file-lock.js';
import { makeDirs } from '../core/make-dirs.js';
import { readSmallFile } from '../core/read-small-file.js';
import { digestHex, isDigest, sha256Digest, type Digest } from '../core/digest.js';

/** Repositories remembered per blob (most recent first), and blobs per registry (most recent kept). */
const MAX_REPOSITORIES = 4;
const MAX_BLOBS = 4096;
/** The file at most (4096 blobs of 4 repository names each), with room to spare. */
const MAX_FILE_BYTES = 64 << 20;

const fileSchema = z.object({
  version: z.literal(1),
  registry: z.string(),
  blobs: z.record(z.array(z.string())),
});

/**
 * The repositories of one registry known to hold each blob: the mount sources of a push to another
 * repository. Learned from every blob a push found, mounted or uploaded, and kept next to the digest
 * cache (`holders/v1/<registry key>.json`), so that pushing to a new repository mounts what an
 * earlier run pushed elsewhere on the same registry. Only a hint: a mount the registry refuses (no
 * access to that repository, blob deleted since) becomes an upload. Without a directory (--no-cache)
 * the knowledge lasts as long as the process.
 */
export class BlobHolders {
  private static readonly open = new Map<string, BlobHolders>();

  /** The holders of `registry` for this process, shared by every push to it. */
  static for(registry: string, dir: string | null | undefined): BlobHolders {
    const key = `${dir ?? ''}\0${registry}`;
    let h = BlobHolders.open.get(key);
    if (!h) BlobHolders.open.set(key, (h = new BlobHolders(registry, dir ?? null)));
    return h;
  }

  /** Blob → repositories, in insertion order (least recently learned first). */
  private blobs: Map<string, string[]> | undefined;
  /** What this process learned, to merge into the file on save. */
  private readonly learned = new Map<string, string[]>();

  private constructor(
    readonly registry: string,
    private readonly dir: string | null,
  ) {}

  /** Repositories known to hold `digest`, most recently seen first. */
  get(digest: Digest): string[] {
    return [...(this.load().get(digest) ?? [])];
  }

  /** Notes that `repository` holds `digest` (it was found, mounted or uploaded there). */
  add(digest: Digest, repository: string): void {
    // Already known as the latest holder (an unchanged push): nothing to write.
    if (this.load().get(digest)?.[0] === repository) return;
    remember(this.load(), digest, repository);
    remember(this.learned, digest, repository);
  }

  /**
   * Writes what this process learned into the file, merged with what other runs wrote meanwhile
   * (temp file + rename). A file that cannot be written only costs mounts next time.
   */
  async save(): Promise<void> {
    if (!this.dir || this.learned.size === 0) return;
    const file = this.file();
    try {
      makeDirs(join(this.dir, 'holders', 'v1'));
      // Under a lock: two pushes saving at once would each write what it read before the other
      // wrote, and one's entries would be lost (a mount becomes an upload next time).
      await withFileLock(`${file}.lock`, () => {
        const merged = read(file, this.registry);
        for (const [digest, repos] of this.learned)
          for (const r of [...repos].reverse()) remember(merged, digest, r);
        const blobs = Object.fromEntries(merged);
        atomicWrite(file, JSON.stringify({ version: 1, registry: this.registry, blobs }) + '\n');
      });
      this.learned.clear();
    } catch {
      // kept in memory: the next save tries again
    }
  }

  private load(): Map<string, string[]> {
    this.blobs ??= this.dir ? read(this.file(), this.registry) : new Map();
    return this.blobs;
  }

  private file(): string {
    const key = digestHex(sha256Digest(this.registry)).slice(0, 32);
    return join(this.dir!, 'holders', 'v1', `${key}.json`);
  }
}

/** The file's blobs; empty when it is missing, unreadable, of another registry or malformed. */
function read(file: string, registry: string): Map<string, string[]> {
  const text = readSmallFile(file, MAX_FILE_BYTES);
  if (text === undefined) return new Map();
  try {
    const f = fileSchema.parse(JSON.parse(text));
    if (f.registry !== registry) return new Map();
    return new Map(Object.entries(f.blobs).filter(([d]) => isDigest(d)));
  } catch {
    return new Map();
  }
}

/** Puts `repository` first for `digest`, and the blob last (most recent) in the map, within bounds. */
function remember(blobs: Map<string, string[]>, digest: string, repository: string): void {
  const repos = [repository, ...(blobs.get(digest) ?? []).filter((r) => r !== repository)];
  blobs.delete(digest);
  blobs.set(digest, repos.slice(0, MAX_REPOSITORIES));
  while (blobs.size > MAX_BLOBS) blobs.delete(blobs.keys().next().value!);
}
