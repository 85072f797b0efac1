import { closeSync, openSync, readSync, statSync, type BigIntStats } from 'node:fs';
import { Readable, type TransformCallback } from 'node:stream';
import { DigestStream, type Digest } from '../core/digest.js';
import { NixociError } from '../core/errors.js';

/**
 * A complete copy of a layer's blob that a target of this run left in a regular file: an OCI
 * layout's `blobs/sha256/<hex>`, or a layer's bytes inside a docker-archive file. Plain data, so
 * that a layer worker can be given one.
 */
export interface BlobCopy {
  readonly file: string;
  /** Where the blob starts in `file`. */
  readonly offset: number;
  readonly size: number;
  readonly digest: Digest;
}

/** What tells that a file is still the one written: a rewrite, truncation or replacement changes it. */
type FileId = Pick<BigIntStats, 'dev' | 'ino' | 'size' | 'mtimeNs' | 'ctimeNs'>;

const ID_FIELDS = ['dev', 'ino', 'size', 'mtimeNs', 'ctimeNs'] as const;

function fileId(file: string): FileId | undefined {
  try {
    const st = statSync(file, { bigint: true });
    return st.isFile() ? st : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The copies targets of one run have left, by layer cache key, so that a later target reads a blob
 * back from one instead of tarring the store again (`Layer.writeTo`). A copy is offered only while
 * its file is the one written (same inode, size, mtime and ctime as just after it was written);
 * whoever reads it still hashes what it reads (`CheckedDigestStream`), so a change that none of
 * these show fails the write instead of making a wrong blob.
 */
export class BlobCopies {
  private readonly copies = new Map<string, { copy: BlobCopy; id: FileId }>();

  /** Records a copy just written and complete (its file no longer being written). */
  add(key: string, copy: BlobCopy): void {
    const id = fileId(copy.file);
    if (id && BigInt(copy.offset + copy.size) <= id.size) this.copies.set(key, { copy, id });
  }

  /** The copy of the blob with this key, if its file has not changed since. */
  get(key: string): BlobCopy | undefined {
    const kept = this.copies.get(key);
    if (!kept) return undefined;
    const now = fileId(kept.copy.file);
    if (now && ID_FIELDS.every((f) => now[f] === kept.id[f])) return kept.copy;
    this.copies.delete(key);
    return undefined;
  }
}

const CHUNK = 1 << 20;

/**
 * The copy's bytes, in 1 MiB chunks (each owning its memory, so a worker can transfer it), read no
 * more than one chunk ahead: the file is in the page cache, and a push sends all of its
 * --concurrency blobs from copies at once, each stream with its own read-ahead.
 */
export function copyStream(copy: BlobCopy): Readable {
  return Readable.from(readCopy(copy), { objectMode: false, highWaterMark: CHUNK });
}

function* readCopy(copy: BlobCopy): Generator<Buffer> {
  // Synchronous reads, as for store files (src/layer/tar-stream.ts): the file was just written and
  // is in the page cache.
  const fd = openSync(copy.file, 'r');
  try {
    for (let done = 0; done < copy.size;) {
      const buf = Buffer.allocUnsafeSlow(Math.min(CHUNK, copy.size - done));
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, copy.offset + done + got);
        if (n === 0) throw copyChanged(copy, 'it ended early');
        got += n;
      }
      done += got;
      yield buf;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * A DigestStream that fails, before the stream ends, when what went through is not the copy it
 * should be: a sink downstream is then destroyed, never ended, and keeps no wrong blob.
 */
export class CheckedDigestStream extends DigestStream {
  /**
   * `counted`: only the size is checked, the bytes are not hashed (a blob copied whole, whose file
   * `stat` showed unchanged: a run hashes no layer twice). A tar being compressed is hashed anyway,
   * for the diffID, and so is checked in full.
   */
  constructor(
    private readonly copy: BlobCopy,
    onChunk?: (bytes: number) => void,
    counted = false,
  ) {
    super(onChunk, counted ? { digest: copy.digest } : undefined);
  }

  override _flush(cb: TransformCallback): void {
    super._flush((e) => {
      if (e) return cb(e);
      const r = this.result();
      if (r.size !== this.copy.size || r.digest !== this.copy.digest)
        return cb(copyChanged(this.copy, `its bytes are no longer ${this.copy.digest}`));
      cb();
    });
  }
}

function copyChanged(copy: BlobCopy, why: string): NixociError {
  return new NixociError(
    'TARGET_WRITE',
    `${copy.file} changed while this run read a layer back from it for a later destination: ${why}`,
    { hint: 'leave what nixoci writes alone until it is done, and run again' },
  );
}
