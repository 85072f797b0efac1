import { createWriteStream, openSync, writeFileSync } from 'node:fs';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestStream } from '../core/digest.js';
import { NixociError } from '../core/errors.js';
import type { MediaType } from '../core/media-types.js';
import type { BlobCopies, BlobCopy } from './blob-copy.js';
import { DigestCache, type LayerDigests } from './cache.js';
import { defaultLevel, layerMediaType, type Compression } from './compress.js';
import { streamCopy, streamLayer } from './layer-pipeline.js';
import type { LayerPlan, PlannedLayer } from './plan.js';
import { tarSize, type ReadStats } from './tar-stream.js';
import { collectEntries, type SourcedEntry, type TreeOptions } from './tree.js';
import type { LayerWorkerPool } from './worker-pool.js';

const WORKER_MIN_BYTES = 1 << 20;

export type { LayerDigests } from './cache.js';

export interface LayerOptions extends TreeOptions {
  readonly compression: Compression;
  readonly level?: number;
  readonly cache: DigestCache;
  readonly stats: ReadStats;
  /** Copies of blobs that targets of this run wrote, read back instead of the store when complete. */
  readonly copies?: BlobCopies;
  /** Worker threads for big layers (null: everything on the calling thread). */
  readonly pool?: LayerWorkerPool | null;
  /** Progress of a layer being tarred: bytes of its uncompressed tar out of `total`. */
  readonly onProgress?: (e: LayerProgress) => void;
}

export interface LayerProgress {
  readonly layer: Layer;
  readonly phase: 'start' | 'bytes' | 'done';
  /** Uncompressed bytes processed since the last event. */
  readonly bytes: number;
  readonly total: number;
}

/**
 * A layer is a recipe, not a buffer: `writeTo` streams a fresh tar of its store paths through the
 * diffID hash, the compressor and the blob hash into a sink, and can be called again. Its digests
 * are `known` up front when the cache (or a registry's annotations) had them, and become known after
 * the first complete write otherwise.
 */
export class Layer {
  readonly mediaType: MediaType;
  private entries: SourcedEntry[] | undefined;
  private readonly cacheKey: string;
  /** The whole blob, once `inMemory()` made it: later writes send these bytes again. */
  private bytes: Buffer | undefined;

  private digests: LayerDigests | undefined;

  constructor(
    readonly planned: PlannedLayer,
    private readonly options: LayerOptions,
  ) {
    this.mediaType = layerMediaType(options.compression);
    this.cacheKey = DigestCache.key(planned, options.compression, this.level, options.keepSetuid);
  }

  /**
   * The digests when known: from the cache (looked up again until found, so that a layer made
   * earlier in this run, for another architecture or destination, is not made twice), from a
   * registry's annotations, or from this layer's own first write.
   */
  get known(): LayerDigests | undefined {
    return (this.digests ??= this.options.cache.get(this.cacheKey));
  }

  set known(d: LayerDigests | undefined) {
    this.digests = d;
  }

  get compression(): Compression {
    return this.options.compression;
  }

  /** Whether setuid/setgid bits of store files are kept (their narHashes do not tell). */
  get keepsSetuid(): boolean {
    return this.options.keepSetuid ?? false;
  }

  /** The compression level the blob is made with (0 for an uncompressed layer). */
  get level(): number {
    return this.options.compression === 'none'
      ? 0
      : (this.options.level ?? defaultLevel(this.options.compression));
  }

  /** Size of the uncompressed tar, from metadata alone (no file content is read). */
  tarSize(): number {
    return this.known?.tarSize ?? tarSize(this.tree());
  }

  /**
   * Tells that this run left the whole blob in the regular file `file` from `offset` on (an OCI
   * layout's blob, a layer inside a docker-archive): a later write of this layer, or of the same
   * layer compressed, reads it back from there instead of the store while the file is unchanged.
   */
  keptIn(file: string, offset: number): void {
    const d = this.known;
    if (d) this.options.copies?.add(this.cacheKey, { file, offset, size: d.size, digest: d.digest });
  }

  /**
   * Streams the blob into `sink`, or into an existing empty `{ file }`, and resolves with its
   * digests once everything was written. A copy of the blob this run wrote (`keptIn`) is read back
   * instead of the store; a compressed layer is made from a copy of its tar if there is one.
   * `hashHere`: an uncompressed layer made by a worker is hashed on this thread as its bytes arrive,
   * the worker only reading the store. For a caller that streams one layer at a time (an archive),
   * reading and hashing then overlap on two cores instead of taking turns on one; a layer whose
   * digests are known is only counted.
   */
  async writeTo(
    sink: Writable | { readonly file: string },
    signal?: AbortSignal,
    o: { hashHere?: boolean; onProduced?: () => void } = {},
  ): Promise<LayerDigests> {
    if (this.bytes && this.known) {
      if ('file' in sink) writeFileSync(sink.file, this.bytes, { flag: 'r+' });
      else
        await pipeline(
          Readable.from([this.bytes], { objectMode: false }),
          sink,
          ...(signal ? [{ signal }] : []),
        );
      return this.known;
    }
    const known = this.known;
    const own = known && this.options.copies?.get(this.cacheKey);
    if (known && own) {
      // Read back from a file: nothing to make, so a push's turn to make layers is free at once
      // for a layer that must come from the store.
      o.onProduced?.();
      return this.writeCopy(own, known, sink, signal);
    }
    // The same layer uncompressed: its copy is the tar to compress.
    const tar =
      this.options.compression === 'none'
        ? undefined
        : this.options.copies?.get(DigestCache.key(this.planned, 'none', 0, this.options.keepSetuid));
    const compression = { compression: this.options.compression, level: this.options.level };
    const pool = this.options.pool;
    // Big layers go to a worker, so that layers written at the same time use several cores (a
    // busy worker queues them: the main thread must stay free to move bytes to the sinks); small
    // ones are not worth a thread hop, and gzip always runs here: zlib already compresses on the
    // libuv pool, and a worker would only add its memory.
    const useWorker =
      pool !== undefined &&
      pool !== null &&
      this.planned.narSize >= WORKER_MIN_BYTES &&
      this.options.compression !== 'gzip';
    const progress = this.options.onProgress;
    // Progress counts tar bytes: the tar's size when known or walked here anyway. Only a layer left
    // to a worker to walk falls back to its NAR size, close to the tar's for a big layer (a small
    // one's tar is several times its NAR: 4.0 KiB of 800 B).
    const total =
      this.known?.tarSize ??
      tar?.size ??
      (progress && (!useWorker || this.entries) ? this.tarSize() : this.planned.narSize);
    const onTarBytes =
      progress && ((bytes: number) => progress({ layer: this, phase: 'bytes', bytes, total }));
    progress?.({ layer: this, phase: 'start', bytes: 0, total });
    const job = {
      planned: this.planned,
      tree: { storeDir: this.options.storeDir, keepSetuid: this.options.keepSetuid },
      compression,
      // walked already for tarSize() (archives): the worker need not walk again
      ...(tar ? { copy: tar } : this.entries ? { entries: this.entries } : {}),
    };
    const onReadBytes = (n: number): void => {
      this.options.stats.bytesRead += n;
    };
    let digests: LayerDigests;
    if ('file' in sink) {
      // A file (the OCI layout's blobs): a worker writes it itself, so the blob never crosses
      // threads; on this thread it is streamed into the file.
      if (useWorker && pool)
        digests = (await pool.run({ ...job, file: sink.file }, null, { onTarBytes, onReadBytes }, signal))!;
      else {
        // Opened now, not lazily: a layer that fails before its first byte (a FIFO in the store)
        // must not leave an open pending that fails later, with nobody listening, once the
        // caller has removed the file.
        const out = createWriteStream('', { fd: openSync(sink.file, 'r+') });
        try {
          digests = await streamLayer(
            tar ?? this.tree(),
            compression,
            this.options.stats,
            out,
            signal,
            onTarBytes,
          );
        } finally {
          out.destroy();
        }
      }
    } else if (useWorker && pool && o.hashHere && this.options.compression === 'none') {
      // A layer whose digest the cache knows is counted, not hashed again: the tar is the same bytes
      // (the cache key is the store paths' narHashes), and a Docker engine checks every diffID of an
      // archive it loads anyway.
      const diff = new DigestStream(onTarBytes, this.known && { digest: this.known.diffId });
      const piped = pipeline(diff, sink, ...(signal ? [{ signal }] : []));
      piped.catch(() => undefined); // its failure also fails the run below
      await pool.run({ ...job, bare: true }, diff, { onReadBytes }, signal);
      await piped;
      const d = diff.result();
      const expected = this.tarSize();
      if (d.size !== expected) {
        if (this.known) throw this.wrongCache(expected, d.size);
        throw new Error(`internal: tar size ${d.size} != planned ${expected}`);
      }
      digests = { diffId: d.digest, digest: d.digest, size: d.size, tarSize: d.size };
    } else if (useWorker && pool) {
      const cb = { onTarBytes, onReadBytes, ...(o.onProduced ? { onProduced: o.onProduced } : {}) };
      digests = (await pool.run(job, sink, cb, signal))!;
    } else {
      digests = await streamLayer(
        tar ?? this.tree(),
        compression,
        this.options.stats,
        sink,
        signal,
        onTarBytes,
      );
    }
    this.known = digests;
    this.options.cache.put(this.cacheKey, digests);
    progress?.({ layer: this, phase: 'done', bytes: 0, total });
    return digests;
  }

  /**
   * The blob read back from a copy, hashed on this thread and checked against `known` before the
   * sink is ended. Progress counts tar bytes: a compressed copy's bytes are scaled to them.
   */
  private async writeCopy(
    copy: BlobCopy,
    known: LayerDigests,
    sink: Writable | { readonly file: string },
    signal: AbortSignal | undefined,
  ): Promise<LayerDigests> {
    const progress = this.options.onProgress;
    const total = known.tarSize;
    let read = 0;
    let told = 0;
    const onBytes =
      progress &&
      ((n: number): void => {
        read += n;
        const now = Math.round((read * total) / copy.size);
        progress({ layer: this, phase: 'bytes', bytes: now - told, total });
        told = now;
      });
    progress?.({ layer: this, phase: 'start', bytes: 0, total });
    if ('file' in sink) {
      const out = createWriteStream('', { fd: openSync(sink.file, 'r+') });
      try {
        await streamCopy(copy, out, signal, onBytes);
      } finally {
        out.destroy();
      }
    } else await streamCopy(copy, sink, signal, onBytes);
    progress?.({ layer: this, phase: 'done', bytes: 0, total });
    return known;
  }

  /**
   * The error for a tar size known up front (the cache) that this layer's tar, now made,
   * contradicts: `actual` bytes, not the `cached` size that an archive's header already announced.
   * A wrong entry not yet replaced by this write's digests is dropped, so that the next run makes
   * the layer afresh instead of failing the same way.
   */
  wrongCache(cached: number, actual: number): NixociError {
    if (this.known?.tarSize === actual) return this.cacheError(`its tar is ${actual} bytes, not ${cached}`);
    return this.forgetWrong(`its tar is ${actual} bytes, not ${cached}`);
  }

  /**
   * The error for cached digests that a registry contradicts (a blob of another size under the
   * layer's digest: the descriptor would be wrong); the entry is dropped.
   */
  wrongSize(registrySize: number): NixociError {
    const d = this.known;
    return this.forgetWrong(
      `the registry holds ${registrySize} bytes under its digest ${d?.digest ?? ''}, not ${d?.size ?? '?'}`,
    );
  }

  private forgetWrong(fact: string): NixociError {
    this.known = undefined;
    this.options.cache.forget(this.cacheKey);
    return this.cacheError(fact);
  }

  private cacheError(fact: string): NixociError {
    const what = this.planned.storePaths.length > 0 ? this.planned.storePaths.join(', ') : 'customisation';
    return new NixociError('CACHE', `the digest cache was wrong about the layer of ${what}: ${fact}`, {
      hint: 'the wrong entry is gone: run the command again',
    });
  }

  /**
   * The blob as a readable stream (for an HTTP body); `digests` settles when it has been read to the
   * end, or rejects with the error that broke it. `produced` settles as soon as the blob is made
   * (a layer worker is then free for the next one), which may be before its last chunks are read.
   */
  open(
    signal?: AbortSignal,
    o: { hashHere?: boolean } = {},
  ): { stream: Readable; digests: Promise<LayerDigests>; produced: Promise<void> } {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    let onProduced!: () => void;
    const produced = new Promise<void>((resolve) => (onProduced = resolve));
    const digests = this.writeTo(out, signal, { ...o, onProduced });
    digests.then(onProduced, (e: unknown) => {
      onProduced();
      out.destroy(e as Error);
    });
    return { stream: out, digests, produced };
  }

  /**
   * Makes the blob once into memory, so that its digests are known before it is sent and every
   * later write sends these bytes (no second tar or hash). For small layers only (the caller's
   * choice): a push uses it for the few-KB app layer of an inner loop, whose digest then lets the
   * config go out with the layers and the layer go as one monolithic PUT.
   */
  async inMemory(signal?: AbortSignal): Promise<LayerDigests> {
    if (this.bytes && this.known) return this.known;
    const chunks: Buffer[] = [];
    const d = await this.writeTo(
      new Writable({
        write: (c: Buffer, _e, cb) => {
          chunks.push(c);
          cb();
        },
      }),
      signal,
    );
    this.bytes = Buffer.concat(chunks);
    return d;
  }

  /** Entries of this layer: walked once, then reused by every write of this layer in this run. */
  private tree(): SourcedEntry[] {
    this.entries ??= collectEntries(this.planned, this.options);
    return this.entries;
  }
}

export function makeLayers(plan: LayerPlan, options: LayerOptions): Layer[] {
  return plan.layers.map((l) => new Layer(l, options));
}
