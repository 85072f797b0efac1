import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { NixociError } from '../core/errors.js';
import { encodeHeader, END_OF_ARCHIVE, entrySize, padding } from './tar-header.js';
import { printable, storeReadError, type SourcedEntry } from './tree.js';

export interface ReadStats {
  /** Bytes of file content read from the store. */
  bytesRead: number;
}

/** The exact size of the tar that `tarStream(entries)` produces. */
export function tarSize(entries: readonly SourcedEntry[]): number {
  return entries.reduce((n, e) => n + entrySize(e), END_OF_ARCHIVE.length);
}

const CHUNK = 1 << 20;
// Files up to this size are read synchronously in one call: for the many small files of a closure
// the thread-pool round trips of async reads cost more than the read itself (page cache is warm).
const SMALL = 256 << 10;

/** A fresh tar stream of `entries`, read straight from the store. */
export function tarStream(entries: readonly SourcedEntry[], stats: ReadStats): Readable {
  return Readable.from(generate(entries, stats), { objectMode: false, highWaterMark: 4 * CHUNK });
}

async function* generate(entries: readonly SourcedEntry[], stats: ReadStats): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const push = (b: Buffer): void => {
    pending.push(b);
    pendingBytes += b.length;
  };
  const flush = (): Buffer => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };

  for (const e of entries) {
    push(encodeHeader(e));
    if (e.type === 'file') {
      if (e.content) push(e.content);
      else if (e.size <= SMALL) push(readSmall(e, stats));
      else {
        if (pendingBytes > 0) yield flush();
        yield* readLarge(e, stats);
      }
      const pad = padding(e.size);
      if (pad > 0) push(Buffer.alloc(pad));
    }
    if (pendingBytes >= CHUNK) yield flush();
  }
  push(END_OF_ARCHIVE);
  yield flush();
}

function readSmall(e: SourcedEntry, stats: ReadStats): Buffer {
  const src = e.source!;
  let fd: number;
  try {
    fd = openSync(src, 'r');
  } catch (err) {
    throw storeReadError(src, err);
  }
  try {
    const buf = Buffer.allocUnsafe(e.size);
    let off = 0;
    while (off < e.size) {
      const n = readSync(fd, buf, off, e.size - off, off);
      if (n === 0) break;
      off += n;
    }
    if (off !== e.size || fstatSync(fd).size !== e.size) throw changed(src);
    stats.bytesRead += off;
    return buf;
  } catch (err) {
    if (err instanceof NixociError) throw err;
    throw storeReadError(src, err);
  } finally {
    closeSync(fd);
  }
}

async function* readLarge(e: SourcedEntry, stats: ReadStats): AsyncGenerator<Buffer> {
  const src = e.source!;
  const fh = await open(src, 'r').catch((err: unknown) => {
    throw storeReadError(src, err);
  });
  try {
    let off = 0;
    while (off < e.size) {
      const want = Math.min(CHUNK, e.size - off);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, off).catch((err: unknown) => {
        throw storeReadError(src, err);
      });
      if (bytesRead === 0) throw changed(src);
      off += bytesRead;
      stats.bytesRead += bytesRead;
      yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
    }
    if ((await fh.stat()).size !== e.size) throw changed(src);
  } finally {
    await fh.close();
  }
}

function changed(src: Buffer): NixociError {
  return new NixociError('STORE_CHANGED', `${printable(src)} changed size while it was being read`, {
    hint: 'store paths are immutable; something is modifying the store — re-run once it is done',
  });
}
