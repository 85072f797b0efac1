import { createGzip } from 'node:zlib';
import type { Transform } from 'node:stream';
import { createRequire } from 'node:module';
import { MediaType } from '../core/media-types.js';

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
  if (o.compression === 'gzip') return createGzip({ level, chunkSize: 256 << 10 });
  if (o.compression === 'zstd')
    return new (zstd().CompressStream)({ compressionLevel: level, checksumFlag: false, nbWorkers: 0 });
  return null;
}

let zstdModule: typeof import('zstd-napi') | undefined;

/** zstd-napi, loaded on first use: its native addon costs start-up time that most runs never need. */
function zstd(): typeof import('zstd-napi') {
  zstdModule ??= createRequire(import.meta.url)('zstd-napi') as typeof import('zstd-napi');
  return zstdModule;
}
