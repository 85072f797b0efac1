import { Readable } from 'node:stream';
import { digestHex, sha256Digest } from '../core/digest.js';
import { NixociError } from '../core/errors.js';
import { renderImage, type Blob, type Image, type Rendered } from '../image/image.js';
import type { Layer, LayerDigests } from '../layer/layer.js';
import { encodeHeader, END_OF_ARCHIVE, padding } from '../layer/tar-header.js';

/**
 * The docker-archive layout (what `docker save` writes and `docker load` / `POST /images/load`
 * read): one tar entry per layer, the image config, and `manifest.json` naming them. Docker's loader
 * extracts the whole archive before it reads `manifest.json`, so the order of entries is free; we
 * write layers first (their digests become known while they stream), then the config (whose
 * `rootfs.diff_ids` needs every diffID) and `manifest.json` last.
 *
 * A layer may be left out of the archive when the engine already holds its layer chain: the loader
 * looks up each layer's chain ID before it opens the layer's file (see docs/daemon.md).
 */

/** One image of `manifest.json`. */
export interface ArchiveManifestEntry {
  readonly Config: string;
  readonly RepoTags: readonly string[];
  readonly Layers: readonly string[];
}

/**
 * The entry name of a layer. It must be known before the layer streams, when its digests may not
 * be known yet, so it is derived from its position and store paths, whether the digest cache knows
 * the layer or not: the same closure gives the same archive, byte for byte, with a warm cache, a
 * cold one or none.
 */
export function layerEntryName(layer: Layer, index: number): string {
  const what = layer.planned.storePaths.length > 0 ? layer.planned.storePaths.join('\n') : 'customisation';
  return `layers/${index}-${digestHex(sha256Digest(what))}.tar`;
}

export const configEntryName = (config: Blob): string => `blobs/sha256/${digestHex(config.digest)}`;

export function manifestJson(entries: readonly ArchiveManifestEntry[]): Buffer {
  return Buffer.from(JSON.stringify(entries));
}

/** Header of a regular-file entry of the outer archive (same writer as the layers: one tar writer). */
export function fileHeader(name: string, size: number): Buffer {
  return encodeHeader({ name: Buffer.from(name), type: 'file', mode: 0o644, size });
}

/** A whole in-memory file entry: header, content, padding. */
export function fileEntry(name: string, bytes: Buffer): Buffer {
  return Buffer.concat([fileHeader(name, bytes.length), bytes, Buffer.alloc(padding(bytes.length))]);
}

export interface ArchiveOptions {
  readonly image: Image;
  readonly repoTags: readonly string[];
  /** Per layer, whether its content goes into the archive (default: every layer). */
  readonly include?: readonly boolean[];
  readonly signal?: AbortSignal;
  /** Called once a layer's content has been written into the archive. */
  readonly onLayerDone?: (index: number, digests: LayerDigests) => void;
  /** Called with every chunk of layer content written (index, bytes). */
  readonly onLayerBytes?: (index: number, bytes: number) => void;
  /** Awaited after the last layer, before the config and `manifest.json` are written. */
  readonly beforeConfig?: () => Promise<void>;
}

export interface ArchiveResult {
  readonly rendered: Rendered;
  readonly layerNames: readonly string[];
  /** Per layer, where its content starts in the archive (undefined for one left out). */
  readonly layerOffsets: readonly (number | undefined)[];
}

/**
 * Streams a docker-archive of one image. Layers are read straight from the store (hashed on the
 * way); `result` settles once the archive has been produced to the end. Nothing is buffered beyond
 * a chunk, and nothing touches a temporary file. Layers must be uncompressed: the entry's size is
 * written before its content, and only the uncompressed tar's size is known up front.
 */
export function dockerArchive(o: ArchiveOptions): { stream: Readable; result: Promise<ArchiveResult> } {
  let settle!: { ok: (r: ArchiveResult) => void; fail: (e: unknown) => void };
  const result = new Promise<ArchiveResult>((ok, fail) => (settle = { ok, fail }));
  result.catch(() => undefined); // the stream's consumer sees the error; avoid an unhandled rejection
  async function* generate(): AsyncGenerator<Buffer> {
    try {
      const r = yield* archiveChunks(o);
      settle.ok(r);
    } catch (e) {
      settle.fail(e);
      throw e;
    }
  }
  const stream = Readable.from(generate(), { objectMode: false, highWaterMark: 1 << 20 });
  // A consumer that stops early (request aborted) destroys the stream without an error.
  stream.on('close', () =>
    settle.fail(new NixociError('ABORTED', 'docker-archive stream closed before its end')),
  );
  return { stream, result };
}

async function* archiveChunks(o: ArchiveOptions): AsyncGenerator<Buffer, ArchiveResult> {
  const { image } = o;
  const names = image.layers.map((l, i) => layerEntryName(l, i));
  const digests: LayerDigests[] = [];
  const offsets: (number | undefined)[] = [];
  let at = 0; // bytes of the archive yielded so far
  for (const [i, layer] of image.layers.entries()) {
    if (layer.compression !== 'none') {
      throw new NixociError('INTERNAL', `docker-archive: layer ${i} is compressed (${layer.compression})`, {
        hint: 'docker-archive targets require uncompressed layers (requiredCompression = none)',
      });
    }
    if (o.include && !o.include[i]) {
      if (!layer.known)
        throw new NixociError('INTERNAL', `docker-archive: layer ${i} omitted without known digests`);
      digests.push(layer.known);
      offsets.push(undefined);
      continue;
    }
    const size = layer.tarSize();
    const cached = layer.known !== undefined;
    const header = fileHeader(names[i]!, size);
    yield header;
    offsets.push((at += header.length));
    // One layer at a time: the worker reads the store while this thread hashes (see Layer.writeTo).
    const { stream, digests: done } = layer.open(o.signal, { hashHere: true });
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      o.onLayerBytes?.(i, chunk.length);
      yield chunk;
    }
    const d = await done;
    if (d.tarSize !== size) {
      // the header announced the cached size: the entry was wrong
      if (cached) throw layer.wrongCache(size, d.tarSize);
      throw new NixociError('INTERNAL', `docker-archive: layer ${i} size ${d.tarSize} != ${size}`);
    }
    const pad = padding(size);
    if (pad > 0) yield Buffer.alloc(pad);
    at += size + pad;
    digests.push(d);
    o.onLayerDone?.(i, d);
  }
  await o.beforeConfig?.();
  const rendered = renderImage(image, digests);
  const configName = configEntryName(rendered.config);
  yield fileEntry(configName, rendered.config.bytes);
  yield fileEntry(
    'manifest.json',
    manifestJson([{ Config: configName, RepoTags: o.repoTags, Layers: names }]),
  );
  yield END_OF_ARCHIVE;
  return { rendered, layerNames: names, layerOffsets: offsets };
}
