import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { NixociError } from '../../core/errors.js';
import { BLOCK, padding } from '../../layer/tar-header.js';

/**
 * Sequential bytes with a cheap skip: a file skips by moving its offset (nothing is read), a stream
 * by discarding chunks as they pass. Either way nothing beyond one chunk is held.
 */
export interface ByteReader {
  /** Up to `n` bytes; fewer only at the end of the input. */
  read(n: number): Promise<Buffer>;
  /** False when the input ended before `n` bytes. */
  skip(n: number): Promise<boolean>;
  close(): Promise<void>;
}

/** A regular file, read by offset (layers are skipped without reading them). */
export async function fileReader(path: string): Promise<ByteReader> {
  const fh = await open(path, 'r');
  let size: number;
  try {
    size = (await fh.stat()).size;
  } catch (e) {
    await fh.close();
    throw e;
  }
  let pos = 0;
  return {
    read: async (n) => {
      const buf = Buffer.alloc(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(buf, got, n - got, pos);
        if (bytesRead === 0) break;
        got += bytesRead;
        pos += bytesRead;
      }
      return buf.subarray(0, got);
    },
    skip: async (n) => {
      pos += n;
      return pos <= size;
    },
    close: () => fh.close(),
  };
}

/** `signal` ends a long read or skip (a compressed archive is decompressed to skip its layers). */
export function streamReader(
  input: AsyncIterable<Buffer>,
  onClose?: () => void,
  signal?: AbortSignal,
): ByteReader {
  const it = input[Symbol.asyncIterator]();
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  const fill = async (): Promise<boolean> => {
    if (ended) return false;
    signal?.throwIfAborted();
    const next = await it.next();
    if (next.done) {
      ended = true;
      return false;
    }
    pending = pending.length === 0 ? next.value : Buffer.concat([pending, next.value]);
    return true;
  };
  return {
    read: async (n) => {
      // The chunks are joined once: a concat per chunk copied a 60 MiB config ~4000 times (minutes).
      if (pending.length < n && !ended) {
        const parts = [pending];
        let have = pending.length;
        while (have < n) {
          signal?.throwIfAborted();
          const next = await it.next();
          if (next.done) {
            ended = true;
            break;
          }
          parts.push(next.value);
          have += next.value.length;
        }
        pending = Buffer.concat(parts, have);
      }
      const out = pending.subarray(0, n);
      pending = pending.subarray(out.length);
      return Buffer.from(out);
    },
    skip: async (n) => {
      let left = n;
      while (left > 0) {
        if (pending.length === 0 && !(await fill())) return false;
        const k = Math.min(left, pending.length);
        pending = pending.subarray(k);
        left -= k;
      }
      return true;
    },
    close: async () => {
      onClose?.();
      await it.return?.();
    },
  };
}

export interface ScannedEntry {
  readonly name: string;
  readonly size: number;
  /** The first bytes of the content (up to 8), to tell JSON from a layer and a compressed layer. */
  readonly head: Buffer;
  /** The whole content, for the entries `keep` asked for. */
  readonly body?: Buffer;
  /**
   * For a hard or symbolic link: the archive path of the entry it stands for (`docker save` writes a
   * layer that an image has twice as a symlink `ID2/layer.tar -> ../ID1/layer.tar`).
   */
  readonly linkTo?: string;
}

/**
 * Walks a tar archive's regular files, reading their headers (ustar, PAX and GNU long names) and
 * the first bytes of each; only entries for which `keep(name, size, head)` is true are read whole,
 * the others are skipped. `expected` is the hint for input that is no tar: what it should be.
 */
export async function scanTar(
  r: ByteReader,
  keep: (name: string, size: number, head: Buffer) => boolean,
  what: string,
  expected?: string,
): Promise<ScannedEntry[]> {
  const out: ScannedEntry[] = [];
  let longName: string | undefined;
  let longLink: string | undefined;
  let paxSize: number | undefined;
  let kept = 0;
  const skip = async (n: number): Promise<void> => {
    if (!(await r.skip(n))) throw truncated(what);
  };
  for (;;) {
    const h = await r.read(BLOCK);
    if (h.length === 0 || h.every((b) => b === 0)) break;
    // `docker save app | gzip` is a common way to keep an archive; say so, not "bad checksum"
    const packed = out.length === 0 ? compressionOf(h) : undefined;
    if (packed)
      throw notTar(
        what,
        `${packed}-compressed`,
        `decompress it first: ${packed === 'gzip' ? 'gunzip' : 'zstd -d'} -c FILE | nixoci inspect docker-archive:-`,
      );
    if (h.length < BLOCK)
      throw out.length === 0 && longName === undefined
        ? notTar(what, `${h.length} bytes`, expected)
        : truncated(what);
    if (!checksumOk(h)) throw notTar(what, 'bad header checksum', expected);
    const type = String.fromCharCode(h[156]!);
    const headerSize = parseSize(h.subarray(124, 136));
    if (!Number.isSafeInteger(headerSize) || headerSize < 0) throw notTar(what, 'bad entry size', expected);
    if (type === 'x' || type === 'L' || type === 'K') {
      // Read whole, so a header may not claim any size (an 8 GB one was a RangeError, a big one in a
      // compressed stream held minutes and gigabytes); Go's archive/tar takes 1 MiB at most too.
      if (headerSize > MAX_EXTENDED)
        throw new NixociError(
          'IMAGE_INVALID',
          `read ${what}: a ${type === 'x' ? 'PAX' : 'GNU long name'} header of ${headerSize} bytes (at most ${MAX_EXTENDED >> 20} MiB)`,
          { hint: 'the archive is damaged or not made by a tar tool; write it again' },
        );
      const body = await r.read(headerSize);
      if (body.length < headerSize) throw truncated(what);
      await skip(padding(headerSize));
      if (type === 'L') longName = cString(body);
      else if (type === 'K') longLink = cString(body);
      else {
        const pax = paxFields(body);
        longName = pax.get('path') ?? longName;
        longLink = pax.get('linkpath') ?? longLink;
        const paxValue = pax.get('size');
        if (paxValue !== undefined) {
          paxSize = /^\d{1,16}$/.test(paxValue) ? Number(paxValue) : NaN;
          if (!Number.isSafeInteger(paxSize)) throw notTar(what, 'bad PAX size', expected);
        }
      }
      continue;
    }
    // Each file is remembered (name, size, first bytes): millions of empty ones cost gigabytes.
    if (out.length >= MAX_ENTRIES)
      throw new NixociError('IMAGE_INVALID', `read ${what}: more than ${MAX_ENTRIES} files in the archive`, {
        hint: 'an image archive holds a few files per layer; check what the file is',
      });
    const name = (longName ?? headerName(h)).replace(/^\.\//, '');
    const size = paxSize ?? headerSize;
    const link = longLink ?? cString(h.subarray(157, 257));
    longName = undefined;
    longLink = undefined;
    paxSize = undefined;
    if (type === '1' || type === '2') {
      // a hard link names an archive path; a symlink is relative to its own directory
      const target = type === '1' ? link.replace(/^\.\//, '') : posix.join(posix.dirname(name), link);
      out.push({ name, size: 0, head: Buffer.alloc(0), linkTo: posix.normalize(target) });
      continue;
    }
    if (type !== '0' && type !== '\0') {
      await skip(size + padding(size));
      continue;
    }
    const head = await r.read(Math.min(8, size));
    if (head.length < Math.min(8, size)) throw truncated(what);
    let body: Buffer | undefined;
    if (keep(name, size, head)) {
      // Each kept entry is small, but a compressed archive may hold thousands of them.
      kept += size;
      if (kept > MAX_KEPT)
        throw new NixociError(
          'IMAGE_INVALID',
          `read ${what}: its JSON files come to more than ${MAX_KEPT >> 20} MiB`,
          { hint: 'an image archive holds a few small JSON files beside its layers; check what the file is' },
        );
      const rest = await r.read(size - head.length);
      body = Buffer.concat([head, rest]);
      if (body.length < size) throw truncated(what);
    } else await skip(size - head.length);
    await skip(padding(size));
    out.push({ name, size, head, ...(body ? { body } : {}) });
  }
  return out;
}

/** The most files (and links) an archive may hold. */
const MAX_ENTRIES = 100_000;

/** The most that the entries read whole may come to together. */
const MAX_KEPT = 256 << 20;

/** The largest PAX or GNU long-name header read. */
const MAX_EXTENDED = 1 << 20;

const notTar = (
  what: string,
  why: string,
  hint = 'docker-archive: wants a tar as `docker save` writes it (plain, gzip- or zstd-compressed)',
): NixociError => new NixociError('IMAGE_INVALID', `read ${what}: not a tar archive (${why})`, { hint });

/** Bytes enough for `compressionOf` to tell: zstd's magic number is the longer, 4. */
export const MAGIC_BYTES = 4;

/** How an archive is compressed (`docker save app | gzip`), by its first bytes: gzip, zstd or not. */
export function compressionOf(h: Buffer): 'gzip' | 'zstd' | undefined {
  if (h[0] === 0x1f && h[1] === 0x8b) return 'gzip';
  if (h.length >= MAGIC_BYTES && h.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return undefined;
}

const truncated = (what: string): NixociError =>
  new NixociError('IMAGE_INVALID', `read ${what}: the archive ends in the middle of an entry`, {
    hint: 'the file is truncated; write it again',
  });

function cString(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
}

function headerName(h: Buffer): string {
  const name = cString(h.subarray(0, 100));
  const ustar = h.subarray(257, 262).toString('latin1') === 'ustar';
  const prefix = ustar ? cString(h.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function parseSize(f: Buffer): number {
  if ((f[0]! & 0x80) !== 0) {
    // GNU base-256: big-endian, high bit of the first byte is the marker
    let n = f[0]! & 0x7f;
    for (const b of f.subarray(1)) n = n * 256 + b;
    return n;
  }
  const s = cString(f).trim();
  return s === '' ? 0 : parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  return parseInt(cString(h.subarray(148, 156)).trim(), 8) === sum;
}

function paxFields(records: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let i = 0;
  while (i < records.length) {
    const sp = records.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number(records.subarray(i, sp).toString('latin1'));
    if (!Number.isInteger(len) || len <= 0) break;
    const rec = records.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) fields.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return fields;
}
