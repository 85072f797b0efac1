import { createReadStream } from 'node:fs';
import { familiarName } from '../reference.js';
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { z } from 'zod';
import { isDigest, sha256Digest, type Digest } from '../../core/digest.js';
import { NixociError, reason } from '../../core/errors.js';
import { zstdDecompressor } from '../../layer/compress.js';
import { MediaType } from '../../core/media-types.js';
import {
  invalidImage,
  lazySource,
  parseConfig,
  parseJson,
  someTags,
  type ImageSource,
  type LayerDescriptor,
  type LoadedImage,
} from './image-source.js';
import {
  compressionOf,
  fileReader,
  MAGIC_BYTES,
  scanTar,
  streamReader,
  type ByteReader,
  type ScannedEntry,
} from './tar-scan.js';

const archiveManifestSchema = z.array(
  z.object({
    Config: z.string(),
    RepoTags: z.array(z.string()).nullable().optional(),
    Layers: z.array(z.string()),
  }),
);

/** JSON files (manifest.json, the config) are kept; a larger file is not a config. */
const MAX_JSON = 16 << 20;

/**
 * An image in a docker-archive file (`docker-archive:FILE[:NAME:TAG|:@N]`, what `docker save` and
 * `nixoci build --to docker-archive:` write). Only tar headers, manifest.json and the config are
 * read: layer entries are skipped by offset, never read.
 */
export function dockerArchiveSource(file: string, repoTag: string | undefined): ImageSource {
  const description = `docker-archive:${file}${repoTag ? `:${repoTag}` : ''}`;
  return lazySource(description, async (signal) => {
    const reader = await openArchive(
      file,
      description,
      {
        what: 'docker-archive: must name a tar file, e.g. one written by `docker save`',
        pipe: 'docker save IMAGE | nixoci inspect docker-archive:-',
      },
      signal,
    );
    try {
      return await readArchive(reader, repoTag, description);
    } finally {
      await reader.close();
    }
  });
}

/**
 * An archive file to scan: FILE - is standard input; a regular file is read by offset; a pipe or
 * FIFO (`<(docker save app)`) or a compressed file (`docker save app | gzip` or `| zstd`, which
 * docker load reads too) as a stream. `hints` say what the file should be and how to pipe one in.
 */
export async function openArchive(
  file: string,
  description: string,
  hints: { readonly what: string; readonly pipe: string },
  signal?: AbortSignal,
): Promise<ByteReader> {
  try {
    if (file === '-') {
      if (process.stdin.isTTY)
        throw new NixociError('USAGE', `read ${description}: standard input is a terminal`, {
          hint: `pipe the archive in: ${hints.pipe}`,
        });
      return streamReader(decompressed(process.stdin, description), () => process.stdin.destroy(), signal);
    }
    const st = await stat(file);
    if (st.isDirectory())
      throw new NixociError('IMAGE_READ', `read ${description}: it is a directory`, { hint: hints.what });
    return st.isFile() && !(await isCompressed(file))
      ? await fileReader(file)
      : streamReader(
          decompressed(createReadStream(file, { highWaterMark: 1 << 20 }), description),
          undefined,
          signal,
        );
  } catch (e) {
    if (e instanceof NixociError) throw e;
    throw new NixociError('IMAGE_READ', `read ${description}: ${reason(e)}`, { hint: hints.what });
  }
}

async function isCompressed(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(MAGIC_BYTES), 0, MAGIC_BYTES, 0);
    return compressionOf(buffer.subarray(0, bytesRead)) !== undefined;
  } finally {
    await fh.close();
  }
}

/**
 * The input as it is, or decompressed as it passes when it begins with gzip's or zstd's magic
 * bytes: nothing is written to disk and no more than a chunk is held.
 */
async function* decompressed(input: AsyncIterable<Buffer>, description: string): AsyncGenerator<Buffer> {
  const it = input[Symbol.asyncIterator]();
  let first = Buffer.alloc(0);
  while (first.length < MAGIC_BYTES) {
    const next = await it.next();
    if (next.done) break;
    first = Buffer.concat([first, next.value]);
  }
  // What reading the input threw (a read error), told apart from the decompressor's own errors.
  let inputError: unknown;
  const rest = async function* (): AsyncGenerator<Buffer> {
    yield first;
    try {
      for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
    } catch (e) {
      inputError = e;
      throw e;
    }
  };
  const packed = compressionOf(first);
  if (packed === undefined) {
    yield* rest();
    return;
  }
  const decompress = packed === 'gzip' ? createGunzip() : zstdDecompressor();
  // A failure anywhere in the pipeline destroys the decompressor with it, so it surfaces in the
  // loop below; stopping early (the reader closed) destroys it, which ends the pipeline.
  pipeline(Readable.from(rest()), decompress).catch(() => undefined);
  try {
    for await (const chunk of decompress as AsyncIterable<Buffer>) yield chunk;
  } catch (e) {
    // zlib's errors (Z_DATA_ERROR, Z_BUF_ERROR at a cut) and zstd's (which have no code): the
    // file, not the reading, is at fault
    if (e === inputError || (packed === 'gzip' && !String((e as { code?: unknown }).code).startsWith('Z_')))
      throw e;
    throw new NixociError(
      'IMAGE_INVALID',
      `read ${description}: the ${packed} data is damaged or cut short: ${(e as Error).message}`,
      {
        hint: 'the file is truncated or corrupt; write it again',
      },
    );
  }
}

/** Reads the image out of a docker-archive (a file or the stream of an engine's `GET /images/get`). */
export async function readArchive(
  reader: ByteReader,
  repoTag: string | undefined,
  description: string,
): Promise<LoadedImage> {
  const entries = await scanTar(
    reader,
    (name, size, head) => {
      // A header may claim any size: reading such a manifest.json whole would exhaust the memory.
      if (name === 'manifest.json' && size > MAX_JSON)
        throw invalidImage(description, `manifest.json is larger than ${MAX_JSON >> 20} MiB`);
      return name === 'manifest.json' || (size <= MAX_JSON && head[0] === 0x7b); /* { */
    },
    description,
  );
  const byName = new Map<string, ScannedEntry>(entries.map((e) => [e.name, e]));
  // Links stand for the entry they point at (a few hops at most; a loop resolves to nothing).
  for (const e of entries) {
    let t: ScannedEntry | undefined = e;
    for (let hops = 0; t?.linkTo !== undefined && hops < 8; hops++) t = byName.get(t.linkTo);
    if (e.linkTo !== undefined) {
      if (t && t.linkTo === undefined) byName.set(e.name, { ...t, name: e.name });
      else byName.delete(e.name);
    }
  }
  const mf = byName.get('manifest.json')?.body;
  if (!mf) {
    // skopeo copy … oci-archive:FILE and podman save --format oci-archive write an OCI layout as a tar
    if (byName.has('oci-layout') || byName.has('index.json'))
      throw new NixociError(
        'IMAGE_INVALID',
        `read ${description}: it is an OCI archive (index.json, no manifest.json), not a docker-archive`,
        { hint: 'read it as oci-archive:FILE[:TAG]' },
      );
    throw invalidImage(description, 'no manifest.json: not a docker-archive');
  }
  const parsed = archiveManifestSchema.safeParse(parseJson(mf, `${description} manifest.json`));
  if (!parsed.success || parsed.data.length === 0)
    throw invalidImage(description, 'manifest.json does not describe an image');
  const images = parsed.data;
  const tags = images.flatMap((i) => i.RepoTags ?? []);
  const pick = `name one: docker-archive:FILE:NAME:TAG${tags.length > 0 ? ` (its tags: ${someTags(tags)})` : ''}, or docker-archive:FILE:@N for the Nth image from 0 (untagged ones too), as skopeo does`;
  if (repoTag === undefined && images.length > 1)
    throw new NixociError(
      'IMAGE_NOT_FOUND',
      `read ${description}: the archive holds ${images.length} images`,
      {
        hint: pick,
      },
    );
  // @N: the Nth entry of manifest.json, as skopeo's docker-archive:FILE:@N
  const nth = repoTag !== undefined && /^@\d+$/.test(repoTag) ? Number(repoTag.slice(1)) : undefined;
  const want = repoTag === undefined || nth !== undefined ? undefined : familiar(repoTag);
  const image =
    nth !== undefined
      ? images[nth]
      : want
        ? images.find((i) => (i.RepoTags ?? []).map(familiar).includes(want))
        : images[0];
  if (!image) {
    throw new NixociError(
      'IMAGE_NOT_FOUND',
      `read ${description}: ${nth !== undefined ? `no image @${nth} (the archive holds ${images.length}: @0 to @${images.length - 1})` : `no image tagged ${want}`}`,
      {
        hint:
          nth !== undefined
            ? pick
            : tags.length > 0
              ? `its tags: ${someTags(tags)}`
              : `the archive has no tagged image; ${images.length === 1 ? 'leave out NAME:TAG' : 'name one as docker-archive:FILE:@N'}`,
      },
    );
  }
  const configBytes = byName.get(image.Config)?.body;
  if (!configBytes) throw invalidImage(description, `config ${image.Config} is missing`);
  const config = parseConfig(configBytes, `${description} config`);
  const layers = image.Layers.map((name, i): LayerDescriptor => {
    const e = byName.get(name);
    if (!e) throw invalidImage(description, `layer ${name} is missing`);
    const mediaType = layerMediaType(e.head);
    const named = `sha256:${name.split('/').pop()}`;
    // An uncompressed layer's blob is its tar: its digest is the diffID.
    const digest: Digest | null =
      name.startsWith('blobs/sha256/') && isDigest(named)
        ? named
        : mediaType === MediaType.ociLayer
          ? (config.rootfs.diff_ids[i] ?? null)
          : null;
    return { mediaType, digest, size: e.size, annotations: {} };
  });
  return {
    manifest: {
      mediaType: null,
      digest: null,
      indexDigest: null,
      annotations: {},
      indexAnnotations: null,
      indexPlatforms: null,
      configDigest: sha256Digest(configBytes),
      layers,
    },
    config,
  };
}

/** NAME[:TAG] as `docker save` writes it: Docker Hub names without docker.io/ and library/, a tag. */
function familiar(ref: string): string {
  const tagged = ref.lastIndexOf(':') > ref.lastIndexOf('/');
  return familiarName(tagged ? ref : `${ref}:latest`);
}

function layerMediaType(head: Buffer): string {
  if (head[0] === 0x1f && head[1] === 0x8b) return MediaType.ociLayerGzip;
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return MediaType.ociLayerZstd;
  return MediaType.ociLayer;
}
