import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { CompressStream, Decompressor } from 'zstd-napi';
import type { StorePath } from '../../src/closure/store-path.js';
import { sha256Digest } from '../../src/core/digest.js';
import { compressor, recycleOutput, ZSTD_FRAME, ZSTD_WINDOW_LOG } from '../../src/layer/compress.js';
import { streamLayer } from '../../src/layer/layer-pipeline.js';
import { recycleChunk, tarStream } from '../../src/layer/tar-stream.js';
import { collectEntries } from '../../src/layer/tree.js';

/** Text-like input with repeats (compressible) and random runs, fed in uneven chunks. */
function input(seed: number, size: number): Buffer[] {
  const words = Buffer.from(`lib${seed} /nix/store/abc-${seed} ELF\0\0\0 share/doc/readme `);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += words.length) words.copy(out, i);
  randomBytes(size / 8).copy(out, size / 3);
  const chunks: Buffer[] = [];
  for (let at = 0, step = 1; at < size; step = (step * 7919) % 1_500_001) {
    chunks.push(out.subarray(at, at + step));
    at += step;
  }
  return chunks;
}

async function through(t: NodeJS.ReadWriteStream, chunks: Buffer[]): Promise<Buffer> {
  const out = buffer(t as unknown as Readable);
  await pipeline(Readable.from(chunks), t as unknown as NodeJS.WritableStream);
  return out;
}

/**
 * What a layer's blob must be: the tar cut into ZSTD_FRAME pieces, each compressed by a fresh
 * zstd-napi CompressStream (level, a window of ZSTD_FRAME, no checksum), fed in 1 MiB writes, the
 * frames concatenated; one empty frame for an empty tar.
 */
async function reference(chunks: Buffer[], level = 3): Promise<Buffer> {
  const all = Buffer.concat(chunks);
  const frames: Buffer[] = [];
  for (let at = 0; at < all.length || frames.length === 0; at += ZSTD_FRAME) {
    const piece = all.subarray(at, at + ZSTD_FRAME);
    const writes: Buffer[] = [];
    for (let i = 0; i < piece.length; i += 1 << 20) writes.push(piece.subarray(i, i + (1 << 20)));
    frames.push(
      await through(
        new CompressStream({
          compressionLevel: level,
          windowLog: ZSTD_WINDOW_LOG,
          checksumFlag: false,
          nbWorkers: 0,
        }),
        writes,
      ),
    );
  }
  return Buffer.concat(frames);
}

describe('zstd compressor (one reused context per thread)', () => {
  it('writes the frames of fresh zstd-napi CompressStreams, whatever the chunking, layer after layer', async () => {
    // Several layers in a row, including an empty one and ones of more than one frame (uneven
    // input chunks, some straddling a frame's end): each must be complete frames of its own,
    // unaffected by the context having compressed the layer before.
    for (const [seed, size] of [
      [1, 3 << 20],
      [2, 0],
      [3, 700_000],
      [4, ZSTD_FRAME * 2 + 12345],
      [5, ZSTD_FRAME],
    ] as const) {
      const chunks = size === 0 ? [] : input(seed, size);
      const ours = await through(compressor({ compression: 'zstd' })!, chunks);
      const expected = await reference(chunks);
      expect(ours.equals(expected)).toBe(true);
      // the same bytes fed in one piece
      const whole = await through(compressor({ compression: 'zstd' })!, [Buffer.concat(chunks)]);
      expect(whole.equals(expected)).toBe(true);
      expect(new Decompressor().decompress(ours).equals(Buffer.concat(chunks))).toBe(true);
    }
  });

  it('gives its context back clean when a layer is abandoned half-way', async () => {
    const chunks = input(5, 2 << 20);
    const z = compressor({ compression: 'zstd' })!;
    z.write(chunks[0]!);
    z.write(chunks[1]!);
    z.destroy();
    await new Promise((r) => setImmediate(r));
    // The next layer takes the same context: its frame must not continue the abandoned one.
    const next = await through(compressor({ compression: 'zstd' })!, chunks);
    expect(next.equals(await reference(chunks))).toBe(true);
  });

  it('keeps levels apart', async () => {
    const chunks = input(6, 1 << 20);
    const l19 = await through(compressor({ compression: 'zstd', level: 19 })!, chunks);
    const l1 = await through(compressor({ compression: 'zstd', level: 1 })!, chunks);
    expect(l1.equals(await reference(chunks, 1))).toBe(true);
    expect(l19.length).toBeLessThan(l1.length);
  });

  it('reuses spent tar chunks and output chunks without corrupting the layers that follow', async () => {
    // Several MiB per layer, so that chunks are given back by the compressor and taken again by the
    // next tar chunks, within one layer and across layers; the sink gives every output chunk back
    // once it has copied it, as a layer worker writing a file does (the random part does not
    // compress, so each layer has several full output chunks).
    const root = mkdtempSync(join(tmpdir(), 'nixoci-recycle-'));
    try {
      const storeDir = join(root, 'nix', 'store');
      const layers = [1, 2, 3].map((i) => {
        const sp = join(storeDir, `${'0123456789abcdfghijklmnpqrsvwxy'}${i}-p${i}`);
        mkdirSync(sp, { recursive: true });
        writeFileSync(join(sp, 'a'), randomBytes(3 << 20));
        writeFileSync(join(sp, 'b'), Buffer.alloc((2 << 20) + 777, i));
        return collectEntries(
          { storePaths: [sp as StorePath], narHashes: ['sha256-x'], narSize: 0 },
          { storeDir },
        );
      });
      const zstd = { compression: 'zstd' as const };
      const outs = await Promise.all(
        layers.map(async (entries) => {
          const chunks: Buffer[] = [];
          const sink = new (await import('node:stream')).Writable({
            write: (c: Buffer, _e, cb) => {
              chunks.push(Buffer.from(c));
              recycleOutput(c);
              recycleChunk(c);
              cb();
            },
          });
          const d = await streamLayer(entries, zstd, { bytesRead: 0 }, sink, undefined);
          return { blob: Buffer.concat(chunks), d };
        }),
      );
      for (const [i, entries] of layers.entries()) {
        const tar = await buffer(tarStream(entries, { bytesRead: 0 }));
        const { blob, d } = outs[i]!;
        expect(new Decompressor().decompress(blob).equals(tar)).toBe(true);
        expect(d.tarSize).toBe(tar.length);
        expect(blob.length).toBeGreaterThan(3 << 20);
        expect(d.digest).toBe(sha256Digest(blob));
        expect(d.size).toBe(blob.length);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('gzip layers', () => {
  it('say Unix in the header whatever OS zlib was built for (macOS writes 19)', async () => {
    const data = Buffer.concat(input(3, 1 << 20));
    const linux = await buffer(Readable.from([data]).pipe(compressor({ compression: 'gzip' })!));
    expect(linux[9]).toBe(3);
    // a zlib that writes another OS code (macOS's 19), through the same wrapper
    const mac = Buffer.from(linux);
    mac[9] = 19;
    const { PassThrough } = await import('node:stream');
    const { unixGzip } = await import('../../src/layer/compress.js');
    const fixed = await buffer(
      Readable.from([mac.subarray(0, 7), mac.subarray(7)]).pipe(unixGzip(new PassThrough())),
    );
    expect(sha256Digest(fixed)).toBe(sha256Digest(linux));
  });
});
