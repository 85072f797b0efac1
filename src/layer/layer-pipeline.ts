import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestStream } from '../core/digest.js';
import { collectAll } from '../core/memory.js';
import { CheckedDigestStream, copyStream, type BlobCopy } from './blob-copy.js';
import type { LayerDigests } from './cache.js';
import { compressor, type CompressionOptions } from './compress.js';
import { tarSize, tarStream, type ReadStats } from './tar-stream.js';
import type { SourcedEntry } from './tree.js';

/**
 * tar → diffID hash → compressor → blob hash → sink, as one `pipeline` with an AbortSignal. Used
 * in-process and inside the layer workers, so both produce the same bytes by construction. The tar
 * comes from the store (`entries`), or from a copy of it an earlier target of the run wrote, whose
 * diffID is then checked before the sink is ended.
 */
export async function streamLayer(
  source: readonly SourcedEntry[] | BlobCopy,
  compression: CompressionOptions,
  stats: ReadStats,
  sink: Writable,
  signal: AbortSignal | undefined,
  onTarBytes?: (bytes: number) => void,
): Promise<LayerDigests> {
  const copy = 'file' in source ? source : undefined;
  const entries = copy ? [] : (source as readonly SourcedEntry[]);
  const expectedTar = copy ? copy.size : tarSize(entries);
  const diff = copy ? new CheckedDigestStream(copy, onTarBytes) : new DigestStream(onTarBytes);
  const z = compressor(compression);
  // Uncompressed, the blob is the tar: hashing it a second time would only cost CPU.
  const blob = z ? new DigestStream() : diff;
  const stages = z ? [diff, z, blob] : [diff];
  const src = copy ? copyStream(copy) : tarStream(entries, stats);
  const streams = [src, ...stages, sink] as [Readable, ...Writable[]];
  try {
    await (signal ? pipeline(streams, { signal }) : pipeline(streams));
  } finally {
    // Once this frame is gone, so that the gzip stream it holds can be collected with its native
    // zlib state (invisible to V8's heuristics). zstd contexts are reused, not collected.
    if (compression.compression === 'gzip') setImmediate(collectAll);
  }
  const d = diff.result();
  const b = blob.result();
  if (d.size !== expectedTar) throw new Error(`internal: tar size ${d.size} != planned ${expectedTar}`);
  return { diffId: d.digest, digest: b.digest, size: b.size, tarSize: d.size };
}

/**
 * The bare tar into `sink`, neither hashed nor compressed: a layer worker's share when the thread
 * receiving the bytes hashes them (see `Layer.open`), which also checks their count.
 */
export async function streamTar(
  entries: readonly SourcedEntry[],
  stats: ReadStats,
  sink: Writable,
  signal: AbortSignal | undefined,
): Promise<void> {
  const src = tarStream(entries, stats);
  await (signal ? pipeline(src, sink, { signal }) : pipeline(src, sink));
}

/**
 * A whole blob copied from a copy an earlier target of the run wrote, its size checked before the
 * sink is ended. It is counted, not hashed again (as a store tar whose digests are known is): the
 * copy's file is the one this run wrote, as `stat` shows (BlobCopies.get), and a registry or an
 * engine checks the digest of what it receives.
 */
export async function streamCopy(
  copy: BlobCopy,
  sink: Writable,
  signal: AbortSignal | undefined,
  onBytes?: (bytes: number) => void,
): Promise<{ digest: LayerDigests['digest']; size: number }> {
  const checked = new CheckedDigestStream(copy, onBytes, true);
  const src = copyStream(copy);
  await (signal ? pipeline(src, checked, sink, { signal }) : pipeline(src, checked, sink));
  return checked.result();
}
