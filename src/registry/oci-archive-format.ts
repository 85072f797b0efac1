import { Readable } from 'node:stream';
import { digestHex, type Digest } from '../core/digest.js';
import { NixociError } from '../core/errors.js';
import { MediaType } from '../core/media-types.js';
import { renderImage, renderIndex, type Blob, type Image, type Rendered } from '../image/image.js';
import type { LayerDigests } from '../layer/layer.js';
import { END_OF_ARCHIVE, padding } from '../layer/tar-header.js';
import { fileEntry, fileHeader } from './docker-archive-format.js';

/**
 * An OCI image layout as one tar, as `docker load` (and `POST /images/load`) of an engine with the
 * containerd image store takes it since Docker 25: `oci-layout`, the blobs, and `index.json` with
 * one entry per name, each naming the image by `io.containerd.image.name` (a full reference:
 * containerd keeps the name as it is written, and Docker shows only normalised ones).
 *
 * containerd's importer stores each `blobs/sha256/HEX` entry under the digest its name says (and
 * checks it), and reads `index.json` whenever it comes: so layers go first, JSON blobs and
 * `index.json` last. A blob name is written before its content, so every layer's digests must be
 * known (from the cache, or hashed beforehand). A layer blob the engine already holds may be left
 * out: the importer takes what the archive has and looks the rest up in its content store.
 */
export interface OciArchiveOptions {
  /** One image per platform; several make an index. */
  readonly images: readonly Image[];
  /** Full references (`docker.io/library/app:tag`) the engine names the image by. */
  readonly refs: readonly string[];
  /** Whether a layer blob goes into the archive (default: every blob). */
  readonly include?: (digest: Digest) => boolean;
  readonly signal?: AbortSignal;
  /** Called with every chunk of layer content written (image index, layer index, bytes). */
  readonly onLayerBytes?: (image: number, layer: number, bytes: number) => void;
  readonly onLayerDone?: (image: number, layer: number) => void;
}

export interface OciArchivePlan {
  readonly rendered: readonly Rendered[];
  /** What the names point at: the one manifest, or the index over several platforms. */
  readonly top: Blob;
}

/** The JSON blobs of the archive, rendered from the layers' known digests. */
export function planOciArchive(images: readonly Image[]): OciArchivePlan {
  const rendered = images.map((image, i) => renderImage(image, knownDigests(image, i)));
  const top =
    rendered.length === 1
      ? rendered[0]!.manifest
      : renderIndex(
          rendered.map((r, i) => ({ manifest: r.manifest, platform: images[i]!.platform })),
          images[0]!.annotations?.index,
        );
  return { rendered, top };
}

function knownDigests(image: Image, index: number): LayerDigests[] {
  return image.layers.map((l, i) => {
    if (!l.known)
      throw new NixociError('INTERNAL', `oci-archive: layer ${i} of image ${index} has no digest yet`);
    if (l.compression !== 'none')
      throw new NixociError('INTERNAL', `oci-archive: layer ${i} is compressed (${l.compression})`);
    return l.known;
  });
}

/** Streams the archive; nothing beyond a chunk is buffered and nothing touches a temporary file. */
export function ociArchive(o: OciArchiveOptions): { stream: Readable; plan: OciArchivePlan } {
  const plan = planOciArchive(o.images);
  const stream = Readable.from(chunks(o, plan), { objectMode: false, highWaterMark: 1 << 20 });
  return { stream, plan };
}

async function* chunks(o: OciArchiveOptions, plan: OciArchivePlan): AsyncGenerator<Buffer> {
  yield fileEntry('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  const written = new Set<string>();
  for (const [m, image] of o.images.entries()) {
    for (const [i, layer] of image.layers.entries()) {
      const d = layer.known!;
      if (written.has(d.digest) || (o.include && !o.include(d.digest))) continue;
      written.add(d.digest);
      yield fileHeader(`blobs/sha256/${digestHex(d.digest)}`, d.size);
      const { stream, digests } = layer.open(o.signal, { hashHere: true });
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        o.onLayerBytes?.(m, i, chunk.length);
        yield chunk;
      }
      const got = await digests;
      if (got.tarSize !== d.tarSize) throw layer.wrongCache(d.tarSize, got.tarSize);
      const pad = padding(d.size);
      if (pad > 0) yield Buffer.alloc(pad);
      o.onLayerDone?.(m, i);
    }
  }
  const blobs = [
    ...plan.rendered.flatMap((r) => [r.config, r.manifest]),
    ...(plan.rendered.length > 1 ? [plan.top] : []),
  ];
  for (const b of blobs) {
    if (written.has(b.digest)) continue;
    written.add(b.digest);
    yield fileEntry(`blobs/sha256/${digestHex(b.digest)}`, b.bytes);
  }
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: o.refs.map((ref) => ({
      mediaType: plan.top.mediaType,
      digest: plan.top.digest,
      size: plan.top.bytes.length,
      annotations: {
        'io.containerd.image.name': ref,
        'org.opencontainers.image.ref.name': ref.slice(ref.lastIndexOf(':') + 1),
      },
    })),
  };
  yield fileEntry('index.json', Buffer.from(JSON.stringify(index)));
  yield END_OF_ARCHIVE;
}
