import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { CompressStream, Decompressor } from 'zstd-napi';
import { compressor } from '../../src/layer/compress.js';

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

describe('zstd compressor (one reused context per thread)', () => {
  it('writes the same bytes as a fresh zstd-napi CompressStream, layer after layer', async () => {
    // Several layers in a row, including an empty one: each must be a complete frame of its own,
    // unaffected by the context having compressed the layer before.
    for (const [seed, size] of [
      [1, 3 << 20],
      [2, 0],
      [3, 700_000],
      [4, 5 << 20],
    ] as const) {
      const chunks = size === 0 ? [] : input(seed, size);
      const ours = await through(compressor({ compression: 'zstd' })!, chunks);
      const reference = await through(
        new CompressStream({ compressionLevel: 3, checksumFlag: false, nbWorkers: 0 }),
        chunks,
      );
      expect(ours.equals(reference)).toBe(true);
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
    const reference = await through(
      new CompressStream({ compressionLevel: 3, checksumFlag: false, nbWorkers: 0 }),
      chunks,
    );
    expect(next.equals(reference)).toBe(true);
  });

  it('keeps levels apart', async () => {
    const chunks = input(6, 1 << 20);
    const l19 = await through(compressor({ compression: 'zstd', level: 19 })!, chunks);
    const l1 = await through(compressor({ compression: 'zstd', level: 1 })!, chunks);
    const ref1 = await through(new CompressStream({ compressionLevel: 1, nbWorkers: 0 }), chunks);
    expect(l1.equals(ref1)).toBe(true);
    expect(l19.length).toBeLessThan(l1.length);
  });
});
