import { z } from 'zod';
import { isDigest, type Digest } from '../core/digest.js';
import { MediaType } from '../core/media-types.js';
import {
  ANNOTATION_COMPRESSION_LEVEL,
  ANNOTATION_DIFF_ID,
  ANNOTATION_NAR_HASHES,
  ANNOTATION_STORE_PATHS,
  ANNOTATION_TAR_SIZE,
  compressionLevelAnnotation,
} from '../image/image.js';
import type { Layer } from '../layer/layer.js';
import type { RegistryClient } from './client.js';

/** A layer descriptor found in a registry, with what its annotations say it holds. */
export interface ReusableLayer {
  readonly digest: Digest;
  readonly size: number;
  readonly diffId: Digest;
  /** Uncompressed tar size from the annotation, when the manifest has it. */
  readonly tarSize: number | undefined;
  readonly mediaType: string;
  /** Annotations: space-separated store paths and their narHashes. */
  readonly storePaths: string;
  readonly narHashes: string;
  /** Compression level annotation: set when the blob was made at another than the default level. */
  readonly compressionLevel: string | undefined;
  /** Repository of the manifest that named it (a mount source when it is not the target). */
  readonly repository: string;
}

const digest = z.string().refine(isDigest) as unknown as z.ZodType<Digest>;
const descriptor = z.object({
  mediaType: z.string(),
  digest,
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string()).optional(),
  platform: z.object({ architecture: z.string(), os: z.string() }).passthrough().optional(),
});
const manifestSchema = z.object({ config: descriptor.optional(), layers: z.array(descriptor) });
const indexSchema = z.object({ manifests: z.array(descriptor) });

/** At most this many platform manifests of an index are read (nixoci writes two). */
const MAX_CHILDREN = 8;

/**
 * The key under which a layer with these contents is found: media type, compression level (when
 * not the default), store paths, narHashes.
 */
export function reuseKey(
  mediaType: string,
  level: string | undefined,
  storePaths: string,
  narHashes: string,
): string {
  return `${mediaType}\n${level ?? ''}\n${storePaths}\n${narHashes}`;
}

/** What a manifest (or index) at a reference says about the repository. */
export interface FoundImage {
  /** Layer descriptors nixoci annotated. */
  readonly layers: ReusableLayer[];
  /**
   * Every blob (config and layers) the manifests name: the registry accepted those manifests, so
   * the repository holds these blobs and a push need not ask for them again. Also the digests of
   * an index's manifests that were read: those need not be PUT again. Each with the size its
   * descriptor gives.
   */
  readonly blobs: ReadonlyMap<Digest, number>;
  /** Digest of the manifest or index at the reference, if there is one. */
  readonly topDigest: Digest | undefined;
}

/**
 * Reads the manifest at `reference` (and, for an index, the manifests of the given architectures)
 * and returns every layer descriptor nixoci annotated. Nothing is found when there is no manifest.
 */
export async function findReusableLayers(
  client: RegistryClient,
  repository: string,
  reference: string,
  architectures: readonly string[],
  signal?: AbortSignal,
): Promise<FoundImage> {
  const blobs = new Map<Digest, number>();
  const top = await client.getManifest(repository, reference, signal);
  if (!top) return { layers: [], blobs, topDigest: undefined };
  // A manifest that is not JSON offers nothing to reuse (and the push replaces it).
  const json = jsonOrNull(top.bytes);
  const manifests: unknown[] = [];
  const index = indexSchema.safeParse(json);
  if (
    top.mediaType === MediaType.ociIndex ||
    top.mediaType === MediaType.dockerManifestList ||
    index.success
  ) {
    if (!index.success) return { layers: [], blobs, topDigest: top.digest };
    const children = index.data.manifests
      .filter((m) => !m.platform || architectures.includes(m.platform.architecture))
      .slice(0, MAX_CHILDREN);
    const fetched = await Promise.all(children.map((m) => client.getManifest(repository, m.digest, signal)));
    for (const f of fetched)
      if (f) {
        blobs.set(f.digest, f.bytes.length);
        manifests.push(jsonOrNull(f.bytes));
      }
  } else {
    manifests.push(json);
  }
  const out: ReusableLayer[] = [];
  for (const m of manifests) {
    const parsed = manifestSchema.safeParse(m);
    if (!parsed.success) continue;
    if (parsed.data.config) blobs.set(parsed.data.config.digest, parsed.data.config.size);
    for (const l of parsed.data.layers) {
      blobs.set(l.digest, l.size);
      const diffId = l.annotations?.[ANNOTATION_DIFF_ID];
      const storePaths = l.annotations?.[ANNOTATION_STORE_PATHS];
      const narHashes = l.annotations?.[ANNOTATION_NAR_HASHES];
      if (!diffId || !isDigest(diffId) || !storePaths || narHashes === undefined) continue;
      out.push({
        digest: l.digest,
        size: l.size,
        diffId,
        tarSize: /^\d+$/.test(l.annotations?.[ANNOTATION_TAR_SIZE] ?? '')
          ? Number(l.annotations![ANNOTATION_TAR_SIZE])
          : undefined,
        mediaType: l.mediaType,
        storePaths,
        narHashes,
        compressionLevel: l.annotations?.[ANNOTATION_COMPRESSION_LEVEL],
        repository,
      });
    }
  }
  return { layers: out, blobs, topDigest: top.digest };
}

/**
 * Stateless skip: a layer without known digests whose store paths and narHashes equal a found
 * descriptor's annotations takes that descriptor's digests, so its store paths are never read.
 * The customisation layer is never matched (its content is not described by the annotations).
 * Returns the layers so matched, with where their blob was seen.
 */
export function applyReuse(
  layers: readonly Layer[],
  found: readonly ReusableLayer[],
): Map<Layer, ReusableLayer> {
  const byKey = new Map<string, ReusableLayer>();
  for (const f of found) {
    const k = reuseKey(f.mediaType, f.compressionLevel, f.storePaths, f.narHashes);
    // The first source wins: the target's own manifest is read first and needs no mount.
    if (!byKey.has(k)) byKey.set(k, f);
  }
  const matched = new Map<Layer, ReusableLayer>();
  for (const layer of layers) {
    const p = layer.planned;
    // With --keep-setuid a layer may differ from one with the same narHashes pushed without it.
    if (layer.known || layer.keepsSetuid || p.storePaths.length === 0 || (p.extra?.length ?? 0) > 0) continue;
    const level = compressionLevelAnnotation(layer);
    const hit = byKey.get(reuseKey(layer.mediaType, level, p.storePaths.join(' '), p.narHashes.join(' ')));
    if (!hit) continue;
    // tarSize comes from the annotation, else from the tree's metadata (lstat only); no file
    // content is read either way.
    const tarSize = hit.tarSize ?? layer.tarSize();
    layer.known = { diffId: hit.diffId, digest: hit.digest, size: hit.size, tarSize };
    matched.set(layer, hit);
  }
  return matched;
}

function jsonOrNull(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return null;
  }
}
