import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { atomicWrite } from '../core/atomic-write.js';
import { makeDirs } from '../core/make-dirs.js';
import { readSmallFile } from '../core/read-small-file.js';
import { removeQuietly } from '../core/remove-quietly.js';
import { removeStaleFiles } from '../core/stale-files.js';
import { TEMP_TAG_PATTERN } from '../core/temp-name.js';
import { isDigest, sha256Digest, digestHex, type Digest } from '../core/digest.js';
import { ZSTD_FRAMING, type Compression } from './compress.js';
import type { PlannedLayer } from './plan.js';
import { TAR_FORMAT_VERSION } from './tar-header.js';

export interface LayerDigests {
  /** sha256 of the uncompressed tar. */
  readonly diffId: Digest;
  /** sha256 of the blob as stored. */
  readonly digest: Digest;
  /** Size of the blob as stored. */
  readonly size: number;
  /** Size of the uncompressed tar. */
  readonly tarSize: number;
}

const digestSchema = z.string().refine(isDigest, 'not a sha256 digest') as unknown as z.ZodType<Digest>;
const entrySchema = z.object({
  diffId: digestSchema,
  digest: digestSchema,
  size: z.number().int().nonnegative(),
  tarSize: z.number().int().nonnegative(),
});

/** An entry is ~200 bytes; a bigger file is not one. */
const MAX_ENTRY_BYTES = 4096;

/** atomicWrite's temp file of an entry: `KEY.json.PID.RANDOM.tmp` (`KEY.json.PID.tmp` before). */
const ENTRY_TEMP = new RegExp(`\\.json\\.${TEMP_TAG_PATTERN}\\.tmp$`);
/** An entry is written in one go: a temp file this old is a killed writer's, whatever its pid. */
const ENTRY_TEMP_MAX_AGE_MS = 60 * 60 * 1000;

export function defaultCacheDir(): string {
  // The XDG spec: a relative path is invalid and ignored (it would put a cache in every working
  // directory nixoci runs in).
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
  return join(base, 'nixoci');
}

/** The cache directory that --cache-dir and --no-cache choose (null: no cache). */
export function cacheDirOf(flags: { 'cache-dir'?: unknown; 'no-cache'?: unknown }): string | null {
  if (flags['no-cache']) return null;
  return typeof flags['cache-dir'] === 'string' ? flags['cache-dir'] : defaultCacheDir();
}

/**
 * Store paths never change, so the digests of a layer made from them can be kept forever, keyed by
 * what determines the bytes: the store paths and their narHashes, the synthetic entries, the tar
 * format version, the compression and --keep-setuid. Entries are written atomically (temp file +
 * rename); an entry that does not parse is deleted and treated as a miss, never trusted.
 */
export class DigestCache {
  /**
   * This run's entries, also without a directory (--no-cache): a layer made once in a run is not
   * made again for another architecture or destination. Disk misses are remembered too (null).
   */
  private readonly mem = new Map<string, LayerDigests | null>();
  /** Directories of entries whose stale temp files this run has removed (each once). */
  private readonly swept = new Set<string>();

  constructor(private readonly dir: string | null) {}

  static key(layer: PlannedLayer, compression: Compression, level: number, keepSetuid = false): string {
    const what = {
      tar: TAR_FORMAT_VERSION,
      compression,
      level: compression === 'none' ? 0 : level,
      ...(compression === 'zstd' ? { zstd: ZSTD_FRAMING } : {}),
      // --keep-setuid changes the modes of such files, not the narHashes (absent otherwise, so
      // that the keys of every other layer stay as they were)
      ...(keepSetuid ? { keepSetuid } : {}),
      paths: layer.storePaths,
      narHashes: layer.narHashes,
      extra: layer.extra ?? [],
    };
    return digestHex(sha256Digest(JSON.stringify(what)));
  }

  get(key: string): LayerDigests | undefined {
    const seen = this.mem.get(key);
    if (seen !== undefined) return seen ?? undefined;
    const d = this.read(key);
    this.mem.set(key, d ?? null);
    return d;
  }

  private read(key: string): LayerDigests | undefined {
    if (!this.dir) return undefined;
    const file = this.file(key);
    const text = readSmallFile(file, MAX_ENTRY_BYTES);
    if (text === undefined) return undefined;
    try {
      return entrySchema.parse(JSON.parse(text));
    } catch {
      // A read-only cache (a shared CI volume) keeps its bad entry: a miss all the same.
      removeQuietly(file);
      return undefined;
    }
  }

  /** Drops an entry found wrong (the layer's content disagrees with it): a miss from now on. */
  forget(key: string): void {
    this.mem.set(key, null);
    if (this.dir) removeQuietly(this.file(key));
  }

  put(key: string, d: LayerDigests): void {
    this.mem.set(key, d);
    if (!this.dir) return;
    try {
      const dir = join(this.dir, 'v1', key.slice(0, 2));
      makeDirs(dir);
      this.sweep(dir);
      atomicWrite(this.file(key), JSON.stringify(d) + '\n');
    } catch {
      // A cache that cannot be written only costs speed next time; never fail the build for it.
    }
  }

  /**
   * Removes the temp files that killed runs left in `dir` (SIGKILL, a machine gone down), once per
   * run: in the directory being written only, which costs one readdir of a few entries, never a
   * walk of the whole cache; over many runs every directory written to is swept.
   */
  private sweep(dir: string): void {
    if (this.swept.has(dir)) return;
    this.swept.add(dir);
    try {
      removeStaleFiles(dir, ENTRY_TEMP, { olderThanMs: ENTRY_TEMP_MAX_AGE_MS });
    } catch {
      // another user's file in a shared cache: left, as the write below may still succeed
    }
  }

  private file(key: string): string {
    return join(this.dir!, 'v1', key.slice(0, 2), `${key}.json`);
  }
}
