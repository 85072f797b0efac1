import { z } from 'zod';
import { storeDirFromEnv } from '../../closure/store-path.js';
import { isDigest, type Digest } from '../../core/digest.js';
import { NixociError } from '../../core/errors.js';
import { MediaType } from '../../core/media-types.js';
import { ANNOTATION_STORE_PATHS } from '../../image/image.js';

/**
 * An existing image read back for `nixoci inspect IMAGE` and `nixoci diff`: one implementation per
 * transport (registry, OCI layout, docker-archive, engine), all reading only manifests and the
 * config — never a layer's content.
 */
export interface ImageSource {
  /** The reference as the user gave it, credentials removed. */
  readonly description: string;
  manifest(signal?: AbortSignal): Promise<SourceManifest>;
  config(signal?: AbortSignal): Promise<ImageConfig>;
  layers(signal?: AbortSignal): Promise<ImageLayerInfo[]>;
}

export interface SourceOptions {
  /** Which platform of an index to read (default amd64 when the index has it, else its first). */
  readonly arch?: string;
}

export interface LayerDescriptor {
  readonly mediaType: string;
  /** Digest of the blob as stored; null when the source does not name it (a compressed archive entry). */
  readonly digest: Digest | null;
  readonly size: number;
  readonly annotations: Readonly<Record<string, string>>;
}

/** The manifest of the chosen platform (or what a docker-archive's manifest.json says). */
export interface SourceManifest {
  /** Media type of the manifest; null for a docker-archive or an engine image (there is none). */
  readonly mediaType: string | null;
  readonly digest: Digest | null;
  /** The index the reference named, when it named one. */
  readonly indexDigest: Digest | null;
  readonly configDigest: Digest;
  readonly layers: readonly LayerDescriptor[];
  /** The manifest's own annotations (none for a docker-archive or an engine image). */
  readonly annotations: Readonly<Record<string, string>>;
  /** The annotations of the index the reference named; null when it named no index. */
  readonly indexAnnotations: Readonly<Record<string, string>> | null;
  /** The platforms of the index the reference named (see indexPlatforms); null when it named none. */
  readonly indexPlatforms: readonly string[] | null;
}

const digest = z.string().refine(isDigest, 'not a sha256 digest') as unknown as z.ZodType<Digest>;

export const configSchema = z
  .object({
    architecture: z.string().optional(),
    os: z.string().optional(),
    variant: z.string().optional(),
    created: z.string().optional(),
    config: z.record(z.unknown()).nullable().optional(),
    rootfs: z.object({ type: z.string(), diff_ids: z.array(digest) }),
    history: z
      .array(
        z
          .object({
            created: z.string().optional(),
            created_by: z.string().optional(),
            comment: z.string().optional(),
            empty_layer: z.boolean().optional(),
          })
          .passthrough(),
      )
      .nullable()
      .optional(),
  })
  .passthrough();
export type ImageConfig = z.infer<typeof configSchema>;

const descriptorSchema = z
  .object({
    mediaType: z.string().optional(),
    digest,
    // An int64 in the spec; beyond 2^53 a JSON number is no exact size (1e300 passes .int()).
    size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    annotations: z.record(z.string()).optional(),
    platform: z.object({ architecture: z.string(), os: z.string() }).passthrough().optional(),
  })
  .passthrough();
const manifestSchema = z.object({
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
  annotations: z.record(z.string()).optional(),
});
const indexSchema = z.object({
  mediaType: z.string().optional(),
  manifests: z.array(descriptorSchema),
  annotations: z.record(z.string()).optional(),
});
export type IndexDescriptor = z.infer<typeof descriptorSchema>;

export type ParsedManifest =
  | {
      readonly kind: 'index';
      readonly manifests: readonly IndexDescriptor[];
      readonly annotations: Readonly<Record<string, string>>;
    }
  | {
      readonly kind: 'manifest';
      readonly configDigest: Digest;
      readonly layers: LayerDescriptor[];
      readonly annotations: Readonly<Record<string, string>>;
    };

export interface ImageLayerInfo {
  readonly index: number;
  readonly digest: Digest | null;
  readonly diffId: Digest;
  readonly size: number;
  readonly mediaType: string;
  readonly storePaths: readonly string[];
  /** Where `storePaths` came from: nixoci's layer annotation, the config history, or nowhere. */
  readonly storePathsFrom: 'annotation' | 'history' | 'none';
  readonly createdBy: string | null;
}

/**
 * An image's tags for a hint: the first few (cut to a tag's longest valid length) and how many
 * more, so that a layout or archive that collected thousands of tags does not print them all.
 */
export function someTags(tags: readonly string[], max = 10): string {
  const shown = tags
    .slice(0, max)
    .map((t) => (t.length > 128 ? `${t.slice(0, 128)}…` : t))
    .join(', ');
  return tags.length > max ? `${shown} and ${tags.length - max} more` : shown;
}

export function invalidImage(what: string, why: string): NixociError {
  return new NixociError('IMAGE_INVALID', `read ${what}: ${why}`, {
    hint: 'nixoci reads OCI and Docker schema 2 images; check the reference and what it points at',
  });
}

export function parseJson(bytes: Buffer | string, what: string): unknown {
  try {
    return JSON.parse(bytes.toString()) as unknown;
  } catch {
    throw invalidImage(what, 'not JSON');
  }
}

const IMAGE_TYPES: ReadonlySet<string> = new Set([
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
]);
/** Types a server or a layout may give any JSON document; the document's own mediaType decides. */
const GENERIC_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/octet-stream',
  'text/plain',
]);

/**
 * A manifest or an index, by media type (the server's or the descriptor's, else the document's
 * own) or, when none is given, by shape.
 */
export function parseManifest(bytes: Buffer, mediaType: string | undefined, what: string): ParsedManifest {
  // A type that is none of the image ones and not a generic one (a login page's text/html, a
  // signature, an artifact) is refused, even when its bytes happen to look like a manifest.
  if (mediaType && !IMAGE_TYPES.has(mediaType) && !GENERIC_TYPES.has(mediaType))
    throw invalidImage(
      what,
      /^application\/vnd\.docker\.distribution\.manifest\.v1\+/.test(mediaType)
        ? `a Docker schema 1 manifest (${mediaType}), which nixoci does not read`
        : `served as ${mediaType}, not as an image manifest or index`,
    );
  const json = parseJson(bytes, what);
  const given = mediaType && IMAGE_TYPES.has(mediaType) ? mediaType : undefined;
  const type = given || (json as { mediaType?: string } | null)?.mediaType;
  const isIndex =
    type === MediaType.ociIndex ||
    type === MediaType.dockerManifestList ||
    (type === undefined && indexSchema.safeParse(json).success);
  if (isIndex) {
    const i = indexSchema.safeParse(json);
    if (!i.success) throw invalidImage(what, `not a valid image index: ${i.error.issues[0]?.message}`);
    return { kind: 'index', manifests: i.data.manifests, annotations: i.data.annotations ?? {} };
  }
  const m = manifestSchema.safeParse(json);
  if (!m.success) throw invalidImage(what, `not a valid image manifest (${type ?? 'no media type'})`);
  return {
    kind: 'manifest',
    configDigest: m.data.config.digest,
    layers: m.data.layers.map((l) => ({
      mediaType: l.mediaType ?? MediaType.ociLayer,
      digest: l.digest,
      size: l.size,
      annotations: l.annotations ?? {},
    })),
    annotations: m.data.annotations ?? {},
  };
}

export function parseConfig(bytes: Buffer, what: string): ImageConfig {
  const c = configSchema.safeParse(parseJson(bytes, what));
  if (!c.success) {
    const issue = c.error.issues[0];
    throw invalidImage(what, `not a valid image config: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  return c.data;
}

/** A platform as `--arch` names it: `ARCH`, `ARCH/VARIANT`, `OS/ARCH` or `OS/ARCH/VARIANT`. */
export interface PlatformWanted {
  readonly os?: string;
  readonly architecture: string;
  readonly variant?: string;
}

const OSES = new Set(['linux', 'windows', 'darwin', 'freebsd', 'netbsd', 'openbsd', 'solaris', 'illumos']);

export function parsePlatform(s: string): PlatformWanted {
  const parts = s.split('/');
  const [a, b, c] = parts;
  if (parts.length === 3) return { os: a!, architecture: b!, variant: c! };
  if (parts.length === 2)
    return OSES.has(a!) ? { os: a!, architecture: b! } : { architecture: a!, variant: b! };
  return { architecture: a! };
}

export function platformName(p: { os?: string; architecture?: string; variant?: string }): string {
  return [p.os, p.architecture ?? '?', p.variant].filter(Boolean).join('/');
}

/** Whether an image's platform is the one wanted (an OS or variant not asked for matches any). */
export function platformMatches(
  have: { os?: string; architecture?: string; variant?: string },
  want: PlatformWanted,
): boolean {
  return (
    have.architecture === want.architecture &&
    (want.os === undefined || have.os === want.os) &&
    (want.variant === undefined || have.variant === want.variant)
  );
}

const ATTESTATION = 'attestation-manifest';

/** Whether an index entry is an image, not an attestation (buildkit's `unknown/unknown` entries). */
const isImageEntry = (m: IndexDescriptor): boolean =>
  m.platform?.architecture !== 'unknown' && m.annotations?.['vnd.docker.reference.type'] !== ATTESTATION;

/**
 * The platforms an index lists, as --arch names them (`linux/arm64/v8`), in its order:
 * attestations left out, an entry that names no platform (an index inside) shown as `?`.
 */
export function indexPlatforms(manifests: readonly IndexDescriptor[]): string[] {
  return manifests.filter(isImageEntry).map((m) => platformName(m.platform ?? {}));
}

/**
 * The platform manifest of an index: the one `arch` names (a Linux one first, when the OS is not
 * named), else linux/amd64 if present, else the first Linux one, else the first. Attestations
 * (buildkit's `unknown/unknown` entries) are never chosen. An entry that names no platform (an
 * index inside an index, as some tools write) is followed when it is the only one: the platform is
 * chosen, or checked, where it leads.
 */
export function pickPlatform(
  manifests: readonly IndexDescriptor[],
  arch: string | undefined,
  what: string,
): IndexDescriptor {
  const images = manifests.filter(isImageEntry);
  const linuxFirst = [
    ...images.filter((m) => (m.platform?.os ?? 'linux') === 'linux'),
    ...images.filter((m) => (m.platform?.os ?? 'linux') !== 'linux'),
  ];
  const platform = (m: IndexDescriptor): PlatformWanted & { os?: string } =>
    (m.platform ?? { architecture: '?' }) as PlatformWanted;
  const unnamed = images.filter((m) => m.platform === undefined);
  // Without --arch only linux/amd64 is the default: a windows/amd64 must not win over linux/arm64.
  const want = parsePlatform(arch ?? 'linux/amd64');
  const hit =
    linuxFirst.find((m) => m.platform !== undefined && platformMatches(platform(m), want)) ??
    (arch ? (unnamed.length === 1 ? unnamed[0] : undefined) : linuxFirst[0]);
  if (!hit) {
    const named = images.filter((m) => m.platform !== undefined).map((m) => platformName(platform(m)));
    const have = [
      ...named,
      ...(unnamed.length > 0 ? [`${unnamed.length} entries that name no platform`] : []),
    ];
    throw new NixociError(
      'IMAGE_NOT_FOUND',
      `read ${what}: no ${platformName(want)} image in the index (it has: ${
        have.length > 0 ? have.join(', ') : manifests.length > 0 ? 'attestations only' : 'nothing'
      })`,
      { hint: 'pick one of its platforms with --arch (ARCH, ARCH/VARIANT or OS/ARCH[/VARIANT])' },
    );
  }
  return hit;
}

/** How many indexes a reference may lead through before a manifest (index → index → manifest…). */
export const MAX_INDEX_DEPTH = 4;

export type ImageManifest = Extract<ParsedManifest, { kind: 'manifest' }>;

/**
 * Follows an index down to the manifest of the platform `arch` names, choosing at each level, at
 * most MAX_INDEX_DEPTH indexes deep; `read` fetches and parses what a descriptor names. Returns
 * the manifest, what `read` returned with it, and the descriptor it was reached by (null when
 * `top` is a manifest already).
 */
export async function followIndexes<T>(
  top: { readonly parsed: ParsedManifest; readonly got: T },
  read: (d: IndexDescriptor) => Promise<{ readonly parsed: ParsedManifest; readonly got: T }>,
  arch: string | undefined,
  what: string,
): Promise<{ parsed: ImageManifest; got: T; via: IndexDescriptor | null }> {
  let at = top;
  let via: IndexDescriptor | null = null;
  for (let depth = 0; at.parsed.kind === 'index'; depth++) {
    if (depth === MAX_INDEX_DEPTH)
      throw invalidImage(what, `indexes nested more than ${MAX_INDEX_DEPTH} deep, without a manifest`);
    via = pickPlatform(at.parsed.manifests, arch, what);
    at = await read(via);
  }
  return { parsed: at.parsed, got: at.got, via };
}

/**
 * A source whose image must be of the platform `arch` names: an index was narrowed to it already,
 * but a single image of another platform would otherwise be shown as if it were the one asked for.
 */
export function requirePlatform(source: ImageSource, arch: string | undefined): ImageSource {
  if (arch === undefined) return source;
  const want = parsePlatform(arch);
  let checked: Promise<void> | undefined;
  const check = (signal?: AbortSignal): Promise<void> =>
    (checked ??= source.config(signal).then((c) => {
      if (c.architecture !== undefined && !platformMatches(c, want))
        throw new NixociError(
          'IMAGE_NOT_FOUND',
          `read ${source.description}: the image is ${platformName(c)}, not ${platformName(want)}`,
          { hint: 'it holds one platform only; leave out --arch to read it' },
        );
    }));
  return {
    description: source.description,
    manifest: async (signal) => (await check(signal), source.manifest(signal)),
    config: async (signal) => (await check(signal), source.config(signal)),
    layers: async (signal) => (await check(signal), source.layers(signal)),
  };
}

const STORE_PATH_RE = (): RegExp =>
  new RegExp(
    `${storeDirFromEnv().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\\-._?=]+`,
    'g',
  );

/** Store paths named in a history entry (`nixoci: /nix/store/…`, dockerTools' `store paths: [...]`). */
export function storePathsIn(text: string): string[] {
  return [...new Set(text.match(STORE_PATH_RE()) ?? [])];
}

/**
 * Joins manifest layers, the config's diff_ids and its history (non-empty entries, in order) into
 * one row per layer. Store paths come from nixoci's annotation when present, else from history.
 */
export function layersOf(
  layers: readonly LayerDescriptor[],
  config: ImageConfig,
  what: string,
): ImageLayerInfo[] {
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== layers.length) {
    throw invalidImage(what, `${layers.length} layers but ${diffIds.length} diff_ids in the config`);
  }
  const history = (config.history ?? []).filter((h) => !h.empty_layer);
  // History that does not match the layers one to one says nothing reliable about any of them.
  const byLayer = history.length === layers.length ? history : [];
  return layers.map((l, index) => {
    const h = byLayer[index];
    const createdBy = h ? [h.created_by, h.comment].filter(Boolean).join(' ') : '';
    const annotated = l.annotations[ANNOTATION_STORE_PATHS];
    // Only entries that describe a layer's store paths (nixoci's `nixoci: …`, dockerTools' comment
    // `store paths: [...]`): a `RUN /nix/store/…/bin/sh -c …` only mentions a path it runs.
    const describes =
      h !== undefined && (/^nixoci: /.test(h.created_by ?? '') || /store paths: \[/.test(createdBy));
    const fromHistory = describes ? storePathsIn(createdBy) : [];
    const [storePaths, storePathsFrom] =
      annotated !== undefined
        ? [annotated.split(' ').filter((p) => p !== ''), 'annotation' as const]
        : fromHistory.length > 0
          ? [fromHistory, 'history' as const]
          : [[], 'none' as const];
    return {
      index,
      digest: l.digest,
      diffId: diffIds[index]!,
      size: l.size,
      mediaType: l.mediaType,
      storePaths,
      storePathsFrom,
      // an empty created_by (docker's, for some steps) is none
      createdBy: h?.created_by || null,
    };
  });
}

export interface LoadedImage {
  readonly manifest: SourceManifest;
  readonly config: ImageConfig;
}

/**
 * An ImageSource from a function that reads manifest and config together (every transport reads
 * them in one go); it runs once, on the first call of any method.
 */
export function lazySource(
  description: string,
  load: (signal?: AbortSignal) => Promise<LoadedImage>,
): ImageSource {
  let loaded: Promise<LoadedImage> | undefined;
  const get = (signal?: AbortSignal): Promise<LoadedImage> => (loaded ??= load(signal));
  return {
    description,
    manifest: async (signal) => (await get(signal)).manifest,
    config: async (signal) => (await get(signal)).config,
    layers: async (signal) => {
      const { manifest, config } = await get(signal);
      return layersOf(manifest.layers, config, description);
    },
  };
}
