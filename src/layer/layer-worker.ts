import { closeSync, openSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { parentPort } from 'node:worker_threads';
import { NixociError } from '../core/errors.js';
import type { BlobCopy } from './blob-copy.js';
import { recycleOutput, type CompressionOptions } from './compress.js';
import { streamLayer, streamTar } from './layer-pipeline.js';
import { recycleChunk } from './tar-stream.js';
import type { PlannedLayer } from './plan.js';
import { collectEntries, type SourcedEntry, type TreeOptions } from './tree.js';

/**
 * A layer worker: tars, hashes and compresses one layer at a time on its own thread and posts the
 * blob's chunks to the main thread, at most WINDOW chunks ahead of the acknowledgements it gets
 * back (so a slow sink slows the worker down instead of filling memory).
 */
export interface LayerJob {
  readonly id: number;
  readonly planned: PlannedLayer;
  readonly tree: TreeOptions;
  readonly compression: CompressionOptions;
  /** The layer's entries when the main thread has walked them already (else the worker walks). */
  readonly entries?: readonly SourcedEntry[];
  /**
   * Compress this copy of the layer's tar, which an earlier target of the run wrote, instead of
   * tarring the store (compressed layers only).
   */
  readonly copy?: BlobCopy;
  /** Only the tar (uncompressed layers): the main thread hashes it as it arrives. */
  readonly bare?: boolean;
  /**
   * Write the blob into this file (created by the caller) here, instead of posting its chunks:
   * no transfer to the main thread, and the compressor's output buffers are reused.
   */
  readonly file?: string;
}

export type ToWorker =
  { type: 'job'; job: LayerJob } | { type: 'ack'; id: number } | { type: 'abort'; id: number };
export type FromWorker =
  | { type: 'chunk'; id: number; chunk: Uint8Array; tarBytes: number; readBytes: number }
  | { type: 'progress'; id: number; tarBytes: number; readBytes: number }
  | {
      type: 'done';
      id: number;
      /** Undefined for a bare job. */
      digests: import('./cache.js').LayerDigests | undefined;
      tarBytes: number;
      readBytes: number;
    }
  | { type: 'error'; id: number; code: string; message: string; hint: string | undefined; name: string };

const WINDOW = 4;
const port = parentPort!;
const running = new Map<number, { abort: AbortController; acked: () => void }>();

port.on('message', (m: ToWorker) => {
  if (m.type === 'job') void run(m.job);
  else if (m.type === 'ack') running.get(m.id)?.acked();
  else running.get(m.id)?.abort.abort();
});

async function run(job: LayerJob): Promise<void> {
  const abort = new AbortController();
  let inflight = 0;
  let waiting: (() => void) | undefined;
  let tarBytes = 0;
  const stats = { bytesRead: 0 };
  let reported = 0;
  running.set(job.id, {
    abort,
    acked: () => {
      inflight--;
      const w = waiting;
      waiting = undefined;
      w?.();
    },
  });
  let fd: number | undefined;
  const closeFile = (): void => {
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch {
      // already reported, or nothing to report: the descriptor is gone either way
    }
    fd = undefined;
  };
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      if (fd !== undefined) {
        try {
          for (let off = 0; off < chunk.length;) off += writeSync(fd, chunk, off);
        } catch (e) {
          cb(e as Error);
          return;
        }
        recycleOutput(chunk);
        recycleChunk(chunk);
        const readBytes = stats.bytesRead - reported;
        reported = stats.bytesRead;
        port.postMessage({ type: 'progress', id: job.id, tarBytes, readBytes } satisfies FromWorker);
        tarBytes = 0;
        cb();
        return;
      }
      // Transfer the memory instead of copying it when the chunk is big and owns its whole
      // ArrayBuffer (big chunks are fresh reads or concatenations; small ones may be shared
      // constants such as the end-of-archive blocks, which must never be detached).
      const owns =
        chunk.byteLength >= 64 << 10 &&
        chunk.byteOffset === 0 &&
        chunk.byteLength === chunk.buffer.byteLength;
      const data = owns ? new Uint8Array(chunk.buffer) : new Uint8Array(chunk);
      const readBytes = stats.bytesRead - reported;
      reported = stats.bytesRead;
      const msg: FromWorker = { type: 'chunk', id: job.id, chunk: data, tarBytes, readBytes };
      tarBytes = 0;
      port.postMessage(msg, [data.buffer as ArrayBuffer]);
      inflight++;
      if (inflight < WINDOW) cb();
      else waiting = () => cb();
    },
  });
  try {
    // r+, not w: the caller made the file, and one it removed since (an abort) must stay removed.
    if (job.file !== undefined) fd = openSync(job.file, 'r+');
    const entries = job.copy
      ? job.copy
      : job.entries
        ? job.entries.map(asBuffers)
        : collectEntries(job.planned, job.tree);
    let digests: import('./cache.js').LayerDigests | undefined;
    if (job.bare) {
      if ('file' in entries) throw new Error('internal: a bare job from a copy');
      await streamTar(entries, stats, sink, abort.signal);
    } else
      digests = await streamLayer(entries, job.compression, stats, sink, abort.signal, (n) => {
        tarBytes += n;
      });
    // Closed before 'done' (and before 'error'): the caller renames or removes the file when it
    // hears of it.
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
    const msg: FromWorker = {
      type: 'done',
      id: job.id,
      digests,
      tarBytes,
      readBytes: stats.bytesRead - reported,
    };
    port.postMessage(msg);
  } catch (e) {
    closeFile();
    const err = e as Error;
    port.postMessage({
      type: 'error',
      id: job.id,
      code: e instanceof NixociError ? e.code : 'INTERNAL',
      message: err.message,
      hint: e instanceof NixociError ? e.hint : undefined,
      name: err.name,
    } satisfies FromWorker);
  } finally {
    closeFile();
    running.delete(job.id);
  }
}

/** Entries as posted: their Buffers arrive as plain Uint8Arrays; view them as Buffers again. */
function asBuffers(e: SourcedEntry): SourcedEntry {
  const b = (u: Uint8Array | undefined): Buffer | undefined =>
    u && Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  return {
    ...e,
    name: b(e.name)!,
    ...(e.linkTarget ? { linkTarget: b(e.linkTarget)! } : {}),
    ...(e.content ? { content: b(e.content)! } : {}),
  };
}
