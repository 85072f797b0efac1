// A layer read back from a copy an earlier destination of the run wrote (src/layer/blob-copy.ts):
// used only while the file is the one written, and checked against its digest as it is read, so a
// copy changed meanwhile never makes a wrong blob.
import { closeSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Closure } from '../../src/closure/closure.js';
import { loadGraphFile } from '../../src/closure/load.js';
import { sha256Digest } from '../../src/core/digest.js';
import { BlobCopies, copyStream } from '../../src/layer/blob-copy.js';
import { DigestCache } from '../../src/layer/cache.js';
import type { Compression } from '../../src/layer/compress.js';
import { makeLayers, type Layer } from '../../src/layer/layer.js';
import { planLayers } from '../../src/layer/plan.js';
import { buildFixtureClosure } from '../helpers/nix.js';

let closure: Closure;
const work = mkdtempSync(join(tmpdir(), 'nixoci-blob-copy-'));
let n = 0;

beforeAll(async () => {
  closure = await loadGraphFile((await buildFixtureClosure({ tag: 'blob-copy' })).graphFile);
}, 600_000);

/** The run's layers per compression, sharing one set of copies (as src/cli/assemble.ts makes them). */
function run(): { stats: { bytesRead: number }; layers: (c: Compression) => Layer[] } {
  const stats = { bytesRead: 0 };
  const copies = new BlobCopies();
  const plan = planLayers(closure);
  const made = new Map<Compression, Layer[]>();
  return {
    stats,
    layers: (compression) => {
      let l = made.get(compression);
      if (!l) {
        l = makeLayers(plan, {
          compression,
          cache: new DigestCache(null),
          stats,
          storeDir: closure.storeDir,
          copies,
        });
        made.set(compression, l);
      }
      return l;
    },
  };
}

/** The biggest layer (the one worth reading back). */
const biggest = (layers: Layer[]): Layer =>
  layers.reduce((a, b) => (b.planned.narSize > a.planned.narSize ? b : a));

/** Writes the layer into a new file, as an OCI layout does, and returns the file and its bytes. */
async function writeFile(layer: Layer): Promise<{ file: string; bytes: Buffer }> {
  const file = join(work, `blob-${n++}`);
  writeFileSync(file, '');
  await layer.writeTo({ file });
  return { file, bytes: readFileSync(file) };
}

/** Writes the layer into a stream sink; `ended` tells whether the sink was ended (not destroyed). */
async function writeStream(layer: Layer): Promise<{ bytes: Buffer; error?: unknown; ended: boolean }> {
  const chunks: Buffer[] = [];
  let ended = false;
  const sink = new Writable({
    write: (c: Buffer, _e, cb) => {
      chunks.push(c);
      cb();
    },
    final: (cb) => {
      ended = true;
      cb();
    },
  });
  try {
    await layer.writeTo(sink);
    return { bytes: Buffer.concat(chunks), ended };
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error, ended };
  }
}

/** Writes one byte `X` into the file at `at`, in place (same size). */
function spoilAt(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from('X'), 0, 1, at);
  closeSync(fd);
}

/**
 * The biggest uncompressed layer written to a file, then spoiled in place before the copy is
 * recorded, as a change within the file system's clock tick would look to stat.
 */
async function spoiledCopy(): Promise<{
  r: ReturnType<typeof run>;
  layer: Layer;
  first: { file: string; bytes: Buffer };
}> {
  const r = run();
  const layer = biggest(r.layers('none'));
  const first = await writeFile(layer);
  spoilAt(first.file, first.bytes.length - 2000);
  layer.keptIn(first.file, 0);
  return { r, layer, first };
}

describe('blob copies', () => {
  it('reads a later write back from the copy, the same bytes, nothing from the store', async () => {
    const r = run();
    const layer = biggest(r.layers('none'));
    const first = await writeFile(layer);
    const read = r.stats.bytesRead;
    expect(read).toBeGreaterThan(1 << 20);
    layer.keptIn(first.file, 0);
    const again = await writeStream(layer);
    expect(again.error).toBeUndefined();
    expect(again.bytes.equals(first.bytes)).toBe(true);
    // the same layer gzipped, from the tar copy: the bytes of a gzip layer made from the store
    const gz = biggest(r.layers('gzip'));
    const fromCopy = await writeFile(gz);
    expect(r.stats.bytesRead).toBe(read);
    expect(gz.known!.diffId).toBe(sha256Digest(first.bytes));
    const fresh = biggest(run().layers('gzip'));
    expect((await writeFile(fresh)).bytes.equals(fromCopy.bytes)).toBe(true);
  });

  it('tars the store again when the copy was truncated or rewritten since', async () => {
    for (const spoil of [
      (f: string) => truncateSync(f, 1000),
      (f: string) => spoilAt(f, 700), // same size, one byte different
    ]) {
      const r = run();
      const layer = biggest(r.layers('none'));
      const first = await writeFile(layer);
      layer.keptIn(first.file, 0);
      spoil(first.file);
      const read = r.stats.bytesRead;
      const again = await writeStream(layer);
      expect(again.error).toBeUndefined();
      expect(again.bytes.equals(first.bytes)).toBe(true);
      expect(r.stats.bytesRead).toBe(2 * read);
      const gz = biggest(r.layers('gzip'));
      await writeFile(gz);
      expect(gz.known!.diffId).toBe(sha256Digest(first.bytes));
      expect(r.stats.bytesRead).toBe(3 * read);
    }
  });

  it('fails, without ending the sink, on a tar copy whose bytes are not the tar (a change its file does not show)', async () => {
    const { r, first } = await spoiledCopy();
    // the compressed layer made from that tar: its diffID, hashed anyway, is not the copy's digest
    const gz = biggest(r.layers('zstd'));
    const made = await writeStream(gz);
    expect(made).toMatchObject({ ended: false, error: { code: 'TARGET_WRITE' } });
    expect(String((made.error as Error).message)).toContain(`${first.file} changed while this run read`);
  });

  it('copies a whole blob counted, not hashed again: a run hashes no layer twice', async () => {
    // A change that stat cannot show (within the clock tick of the write) goes through: hashing the
    // copy would cost what tarring the store again saved; a registry or engine checks the digest.
    const { layer, first } = await spoiledCopy();
    const again = await writeStream(layer);
    expect(again.error).toBeUndefined();
    expect(again.ended).toBe(true);
    expect(again.bytes.equals(readFileSync(first.file))).toBe(true);
    expect(again.bytes.equals(first.bytes)).toBe(false);
  });

  it('reads a copy at most one chunk ahead of its reader: every upload of a push from copies holds its own', async () => {
    // A push reads all its --concurrency blobs from copies at once (they need no turn to be made),
    // so what each copy stream buffers counts that many times over.
    const file = join(mkdtempSync(join(tmpdir(), 'nixoci-copy-ahead-')), 'blob');
    const bytes = Buffer.alloc(16 << 20, 7);
    writeFileSync(file, bytes);
    const s = copyStream({ file, offset: 0, size: bytes.length, digest: sha256Digest(bytes) });
    s.pause();
    s.read(0);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(s.readableLength).toBeGreaterThan(0);
    expect(s.readableLength).toBeLessThanOrEqual(1 << 20);
    s.destroy();
  });
});
