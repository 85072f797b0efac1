import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { digestHex, isDigest, sha256Digest, type Digest } from '../../core/digest.js';
import { NixociError, reason } from '../../core/errors.js';
import { MAX_CONFIG, MAX_MANIFEST } from '../client.js';
import {
  followIndexes,
  indexPlatforms,
  invalidImage,
  lazySource,
  parseConfig,
  parseJson,
  parseManifest,
  someTags,
  type ImageSource,
  type LoadedImage,
  type SourceOptions,
} from './image-source.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

const layoutIndexSchema = z.object({
  manifests: z.array(
    z
      .object({
        mediaType: z.string().optional(),
        digest: z.string(),
        annotations: z.record(z.string()).optional(),
      })
      .passthrough(),
  ),
});

/**
 * An image in an OCI image layout (`oci:DIR[:TAG]`): index.json names the tag; manifest and config
 * are read from blobs/ and checked against their digests. Without a tag, the only image in the
 * layout, else `latest`.
 */
export function ociLayoutSource(dir: string, tag: string | undefined, o: SourceOptions = {}): ImageSource {
  const description = `oci:${dir}${tag !== undefined ? `:${tag}` : ''}`;
  return lazySource(description, () =>
    readLayout(description, tag, o, {
      index: async () => {
        try {
          return await readSmall(join(dir, 'index.json'), MAX_CONFIG);
        } catch (e) {
          // An errno error names the file; the checks of readSmall do not.
          const why = (e as NodeJS.ErrnoException).code ? reason(e) : `index.json: ${reason(e)}`;
          throw new NixociError('IMAGE_READ', `read ${description}: ${why}`, {
            hint: 'oci: must name an OCI image layout directory (with index.json)',
          });
        }
      },
      blob: async (d, what) => {
        try {
          return await readSmall(
            join(dir, 'blobs', 'sha256', digestHex(d)),
            what === 'config' ? MAX_CONFIG : MAX_MANIFEST,
          );
        } catch (e) {
          throw new NixociError('IMAGE_READ', `read ${description}: ${what} ${d}: ${reason(e)}`, {
            hint: 'the layout is incomplete; rewrite it (e.g. with nixoci build --to oci:DIR)',
          });
        }
      },
    }),
  );
}

/** Where a layout's index.json and blobs come from: a directory, or an OCI archive's entries. */
export interface LayoutFiles {
  index(): Promise<Buffer>;
  blob(d: Digest, what: 'manifest' | 'config'): Promise<Buffer>;
}

/** The image `tag` names in a layout (its only one without a tag, else `latest`), as oci: reads it. */
export async function readLayout(
  description: string,
  tag: string | undefined,
  o: SourceOptions,
  files: LayoutFiles,
): Promise<LoadedImage> {
  const blob = async (d: Digest, what: 'manifest' | 'config'): Promise<Buffer> => {
    const bytes = await files.blob(d, what);
    if (sha256Digest(bytes) !== d) throw invalidImage(description, `blob ${d} does not match its digest`);
    return bytes;
  };
  const index = layoutIndexSchema.safeParse(parseJson(await files.index(), `${description} index.json`));
  if (!index.success) throw invalidImage(description, 'index.json is not an OCI index');
  const all = index.data.manifests;
  const wanted = tag ?? (all.length === 1 ? undefined : 'latest');
  const top = wanted === undefined ? all[0] : all.find((m) => m.annotations?.[REF_NAME] === wanted);
  if (!top) {
    const tags = all.flatMap((m) => m.annotations?.[REF_NAME] || []);
    throw new NixociError('IMAGE_NOT_FOUND', `read ${description}: no image tagged ${wanted ?? ''}`, {
      hint:
        tags.length > 0
          ? `its tags: ${someTags(tags)}`
          : all.length > 0
            ? `none of its ${all.length} images has a tag (${REF_NAME}); without one, only a layout's single image can be read`
            : 'the layout holds no image',
    });
  }
  const topDigest = checked(top.digest, description);
  const read = async (d: { digest: Digest; mediaType?: string | undefined }) => ({
    parsed: parseManifest(await blob(d.digest, 'manifest'), d.mediaType, description),
    got: null,
  });
  const topRead = await read({ digest: topDigest, mediaType: top.mediaType });
  const { parsed, via } = await followIndexes(topRead, read, o.arch, description);
  const manifestDigest = via?.digest ?? topDigest;
  const mediaType = (via ? via.mediaType : top.mediaType) ?? null;
  const indexDigest = via ? topDigest : null;
  const config = parseConfig(await blob(parsed.configDigest, 'config'), `${description} config`);
  return {
    manifest: {
      mediaType,
      digest: manifestDigest,
      indexDigest,
      configDigest: parsed.configDigest,
      layers: parsed.layers,
      annotations: parsed.annotations,
      indexAnnotations: via ? topRead.parsed.annotations : null,
      indexPlatforms:
        via && topRead.parsed.kind === 'index' ? indexPlatforms(topRead.parsed.manifests) : null,
    },
    config,
  };
}

function checked(d: string, what: string): Digest {
  if (!isDigest(d)) throw invalidImage(what, `unsupported digest ${JSON.stringify(d)}`);
  return d;
}

/**
 * A manifest, config or index.json of the layout, which must be a regular file of at most `limit`
 * bytes: a FIFO would block the read forever (and a thread with it, deaf to Ctrl-C), /dev/zero
 * would fill the memory. Opened non-blocking so that a FIFO is seen before it is read.
 */
async function readSmall(file: string, limit: number): Promise<Buffer> {
  const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new Error('it is a directory');
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > limit) throw new Error(`larger than ${limit >> 20} MiB`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
