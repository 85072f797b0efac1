import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** `sha256:<64 hex>`; branded so that a plain string cannot stand in for a verified digest. */
export type Digest = string & { readonly __brand: 'Digest' };

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

export function parseDigest(s: string): Digest {
  if (!isDigest(s)) throw new Error(`not a sha256 digest: ${JSON.stringify(s)}`);
  return s;
}

export const digestHex = (d: Digest): string => d.slice('sha256:'.length);

/** The sanctioned sha256 helper: every digest in nixoci comes from here. */
export function sha256(): Hash {
  return createHash('sha256');
}

export function sha256Digest(data: string | Uint8Array): Digest {
  return `sha256:${sha256().update(data).digest('hex')}` as Digest;
}

export function hashDigest(h: Hash): Digest {
  return `sha256:${h.digest('hex')}` as Digest;
}

/**
 * A pass-through that hashes and counts what flows through it; `result()` is valid once the stream
 * has finished.
 */
export class DigestStream extends Transform {
  /** `counted`: the caller knows the digest already and wants the size only (no hash is computed). */
  constructor(
    private readonly onChunk?: (bytes: number) => void,
    counted?: { readonly digest: Digest },
  ) {
    super();
    this.known = counted?.digest;
    this.hash = counted ? undefined : sha256();
  }

  private readonly known: Digest | undefined;
  private readonly hash: Hash | undefined;
  private bytes = 0;
  private final: { digest: Digest; size: number } | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash?.update(chunk);
    this.bytes += chunk.length;
    this.onChunk?.(chunk.length);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.final = { digest: this.hash ? hashDigest(this.hash) : this.known!, size: this.bytes };
    cb();
  }

  result(): { digest: Digest; size: number } {
    if (!this.final) throw new Error('DigestStream.result() called before the stream finished');
    return this.final;
  }
}
