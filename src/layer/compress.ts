import { zlib } from '../core/builtins.js';
import { Transform, type TransformCallback } from 'node:stream';
import { createRequire } from 'node:module';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import type * as ZstdNapi from 'zstd-napi';
import { BufferPool } from '../core/buffer-pool.js';
import { MediaType } from '../core/media-types.js';
import { recycleChunk } from './tar-stream.js';

export type Compression = 'none' | 'gzip' | 'zstd';
export const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];

export interface CompressionOptions {
  readonly compression: Compression;
  /** gzip 1–9 (default 1), zstd 1–19 (default 3). */
  readonly level?: number;
}

export function defaultLevel(c: Compression): number {
  return c === 'gzip' ? 1 : c === 'zstd' ? 3 : 0;
}

export function layerMediaType(c: Compression): MediaType {
  return c === 'gzip' ? MediaType.ociLayerGzip : c === 'zstd' ? MediaType.ociLayerZstd : MediaType.ociLayer;
}

/**
 * A compressor for the blob, or null when layers are stored uncompressed. gzip runs on the libuv
 * pool. zstd runs single-threaded on the calling thread (a layer worker for big layers): its
 * multi-threaded mode writes different frames, so one mode must be used everywhere for the same
 * layer to give the same blob, and in zstd-napi the multi-threaded mode spins on the calling thread
 * while its helper compresses, which cost more than it gained (measured: same speed, 140 MB more RSS).
 */
export function compressor(o: CompressionOptions): Transform | null {
  const level = o.level ?? defaultLevel(o.compression);
  if (o.compression === 'gzip') return unixGzip(zlib().createGzip({ level, chunkSize: 256 << 10 }));
  if (o.compression === 'zstd') return new ZstdStream(level);
  return null;
}

/** Byte 9 of a gzip header: the OS the stream was written on (RFC 1952 §2.3.1). */
const GZIP_OS = 9;
const GZIP_OS_UNIX = 3;

/**
 * The same gzip stream on every OS: zlib writes its OS_CODE into the header (3 on Linux, 19 on
 * macOS since zlib 1.2.12), which would give a layer pushed from a Mac other digests than the same
 * layer pushed from Linux. The header's OS byte is set to Unix's, as on Linux.
 */
export function unixGzip(gz: Transform): Transform {
  const push = gz.push.bind(gz);
  let at = 0; // bytes pushed before this chunk, counted until the OS byte has gone by
  gz.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (at <= GZIP_OS && Buffer.isBuffer(chunk)) {
      if (at + chunk.length > GZIP_OS) chunk[GZIP_OS - at] = GZIP_OS_UNIX;
      at += chunk.length;
    }
    return push(chunk, encoding);
  };
  return gz;
}

type Binding = typeof ZstdBinding;
let binding: Binding | undefined;

/** zstd-napi's binding, loaded on first use: its native addon costs start-up time most runs never need. */
function zstd(): Binding {
  binding ??= createRequire(import.meta.url)('zstd-napi/binding.js') as Binding;
  return binding;
}

/**
 * A streaming zstd decompressor (zstd-napi's, which reads concatenated frames as one stream), for
 * archives kept compressed (`docker save app | zstd`); loaded on first use, like the binding.
 */
export function zstdDecompressor(): Transform {
  const { DecompressStream } = createRequire(import.meta.url)('zstd-napi') as typeof ZstdNapi;
  return new DecompressStream();
}

/**
 * A zstd layer is a series of frames of ZSTD_FRAME tar bytes each, compressed with a window of the
 * same size. zstd's streaming compressor keeps the window in a ring buffer of the window's size;
 * once that wraps, every match search spans two segments (its slower "extDict" search, ~40 % of a
 * cold zstd build's CPU). A frame no longer than the window never wraps: ~10 % less zstd CPU. The
 * 4 MiB window (level 3's own is 2 MiB) finds repeats a little further back: the bench closure's
 * blobs are 1.5 % smaller, and a decoder needs 4 MiB per layer it decompresses. An 8 MiB window
 * compressed ~3 % better still, for 4 MiB more per compressing context: too much for the 200 MB
 * peak RSS of a push (docs/performance.md).
 * Frames are cut at fixed offsets of the tar, so the blob depends on the tar and the level only;
 * decoders read concatenated frames as one stream (RFC 8878 §3.1; zstd:chunked layers are made so).
 */
export const ZSTD_WINDOW_LOG = 22;
export const ZSTD_FRAME = 1 << ZSTD_WINDOW_LOG;
/** Part of the digest cache key of zstd layers: blobs made another way have other digests. */
export const ZSTD_FRAMING = `window-frames-${ZSTD_WINDOW_LOG}`;

/** Idle zstd contexts of this thread, by level: a layer takes one and gives it back when done. */
const idle = new Map<number, ZstdBinding.CCtx[]>();

const OUT = 1 << 20;
const EMPTY = Buffer.alloc(0);

/**
 * Output buffers of this thread's compressors, given back by a consumer that is done with a chunk
 * for good (a layer worker, once the chunk is written to the blob's file).
 */
const outputs = new BufferPool(OUT, 4);
const outBuffer = (): Buffer => outputs.take();

/** Gives an output chunk of a ZstdStream back for the next ones, once nothing refers to it. */
export function recycleOutput(b: Buffer): void {
  outputs.give(b);
}

/**
 * zstd as a Transform over one reused context (zstd-napi's CompressStream makes a context of
 * several MB per layer, which only a full garbage collection frees) writing whole 1 MiB output
 * chunks (CompressStream pushes ~128 KiB slices, which a layer worker must copy to post), in
 * frames of ZSTD_FRAME tar bytes. The bytes are those of a fresh CompressStream per frame: zstd's
 * output depends on the input and the parameters only.
 */
class ZstdStream extends Transform {
  private cctx: ZstdBinding.CCtx | undefined;
  private out = outBuffer();
  private filled = 0;
  /** Tar bytes in the frame being written, and frames finished. */
  private inFrame = 0;
  private frames = 0;

  constructor(private readonly level: number) {
    super({ highWaterMark: OUT });
    const b = zstd();
    let cctx = idle.get(level)?.pop();
    if (!cctx) {
      cctx = new b.CCtx();
      cctx.setParameter(b.CParameter.compressionLevel, level);
      cctx.setParameter(b.CParameter.windowLog, ZSTD_WINDOW_LOG);
      cctx.setParameter(b.CParameter.checksumFlag, 0);
      cctx.setParameter(b.CParameter.nbWorkers, 0);
    }
    this.cctx = cctx;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      const { continue: more, end } = zstd().EndDirective;
      for (let input = chunk; input.length > 0;) {
        const k = Math.min(input.length, ZSTD_FRAME - this.inFrame);
        this.inFrame += k;
        // Content always goes in with `continue`, and a frame is ended with no input: had a frame's
        // whole content come with `end` in one call, zstd would size its tables to it and write
        // its length, and the blob would depend on how the tar was chunked.
        this.compress(input.subarray(0, k), more);
        if (this.inFrame === ZSTD_FRAME) {
          this.compress(EMPTY, end);
          this.inFrame = 0;
          this.frames++;
        }
        input = input.subarray(k);
      }
      recycleChunk(chunk);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      // The last, partial frame; an empty layer still gets one (empty) frame: zero bytes are not
      // a zstd stream.
      if (this.inFrame > 0 || this.frames === 0) this.compress(EMPTY, zstd().EndDirective.end);
      if (this.filled > 0) this.push(this.out.subarray(0, this.filled));
      this.release();
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.release();
    cb(err);
  }

  private compress(input: Buffer, op: ZstdBinding.EndDirective): void {
    const cctx = this.cctx!;
    const end = op === zstd().EndDirective.end;
    for (;;) {
      const [left, produced, consumed] = cctx.compressStream2(
        this.filled === 0 ? this.out : this.out.subarray(this.filled),
        input,
        op,
      );
      this.filled += produced;
      if (this.filled === OUT) {
        this.push(this.out);
        this.out = outBuffer();
        this.filled = 0;
      }
      input = input.subarray(consumed);
      if (input.length === 0 && (!end || left === 0)) return;
    }
  }

  /** Back to this thread's idle list, its frame state dropped (parameters kept). */
  private release(): void {
    const cctx = this.cctx;
    if (!cctx) return;
    this.cctx = undefined;
    cctx.reset(zstd().ResetDirective.sessionOnly);
    let list = idle.get(this.level);
    if (!list) idle.set(this.level, (list = []));
    list.push(cctx);
  }
}
