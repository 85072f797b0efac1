import { sha256Digest, type Digest } from '../core/digest.js';
import { MediaType } from '../core/media-types.js';
import type { Closure } from '../closure/closure.js';
import { defaultLevel } from '../layer/compress.js';
import type { LayerDigests, Layer } from '../layer/layer.js';

export type Arch = 'amd64' | 'arm64';
export const ARCHES: readonly Arch[] = ['amd64', 'arm64'];
export const DEFAULT_CREATED = '1970-01-01T00:00:01Z';

/** The run-time configuration users set with flags (the `config` object of the OCI image config). */
export interface RunConfig {
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  readonly env: readonly string[];
  readonly workdir?: string;
  readonly user?: string;
  readonly exposedPorts: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** Mount points for anonymous volumes (Volumes); absent or empty: none. */
  readonly volumes?: readonly string[];
  /** The signal `docker stop` sends (StopSignal), as SIGNAME or a number. */
  readonly stopSignal?: string;
}

export interface Platform {
  readonly architecture: Arch;
  readonly os: 'linux';
  readonly variant?: string;
}

/** One platform's image before its blobs are written: layers (recipes) plus what goes in the config. */
export interface Image {
  readonly platform: Platform;
  readonly closure: Closure;
  readonly layers: readonly Layer[];
  readonly run: RunConfig;
  readonly created: string;
  /** The user's annotations of this platform's manifest, and of the index over all platforms. */
  readonly annotations?: ImageAnnotations;
}

export interface ImageAnnotations {
  readonly manifest: Readonly<Record<string, string>>;
  readonly index: Readonly<Record<string, string>>;
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
}

/** A serialised JSON blob (config, manifest, index) with its digest. */
export interface Blob {
  readonly bytes: Buffer;
  readonly digest: Digest;
  readonly mediaType: string;
}

export interface Rendered {
  readonly config: Blob;
  readonly manifest: Blob;
  readonly layers: readonly Descriptor[];
  readonly diffIds: readonly Digest[];
}

/** The prefix of nixoci's own annotation keys, which users cannot set. */
export const ANNOTATION_PREFIX = 'dev.nixoci.';
export const ANNOTATION_STORE_PATHS = 'dev.nixoci.store-paths';
export const ANNOTATION_NAR_HASHES = 'dev.nixoci.nar-hashes';
export const ANNOTATION_DIFF_ID = 'dev.nixoci.diff-id';
/** Size of the uncompressed tar, so that a reused layer needs no walk of its store paths. */
export const ANNOTATION_TAR_SIZE = 'dev.nixoci.tar-size';
/**
 * The compression level of a layer compressed at another level than the default: the media type
 * alone does not tell a level-9 gzip blob from a level-1 one, and a push must not reuse either for
 * the other. Absent at the default level, so that those manifests keep their digests.
 */
export const ANNOTATION_COMPRESSION_LEVEL = 'dev.nixoci.compression-level';

export function jsonBlob(value: unknown, mediaType: string): Blob {
  const bytes = Buffer.from(JSON.stringify(value));
  return { bytes, digest: sha256Digest(bytes), mediaType };
}

/** Store paths a layer holds, for history and annotations; the customisation layer has none. */
export function layerLabel(layer: Layer): string {
  return layer.planned.storePaths.length > 0
    ? layer.planned.storePaths.join(' ')
    : 'nixoci customisation layer';
}

/** The value of the compression level annotation of `layer`'s descriptor (none at the default level). */
export function compressionLevelAnnotation(layer: Layer): string | undefined {
  return layer.level === defaultLevel(layer.compression) ? undefined : String(layer.level);
}

export function layerDescriptor(layer: Layer, d: LayerDigests): Descriptor {
  const level = compressionLevelAnnotation(layer);
  return {
    mediaType: layer.mediaType,
    digest: d.digest,
    size: d.size,
    annotations: {
      [ANNOTATION_STORE_PATHS]: layer.planned.storePaths.join(' '),
      [ANNOTATION_NAR_HASHES]: layer.planned.narHashes.join(' '),
      [ANNOTATION_DIFF_ID]: d.diffId,
      [ANNOTATION_TAR_SIZE]: String(d.tarSize),
      ...(level !== undefined ? { [ANNOTATION_COMPRESSION_LEVEL]: level } : {}),
    },
  };
}

/** Renders config and manifest once every layer's digests are known (given in layer order). */
export function renderImage(image: Image, digests: readonly LayerDigests[]): Rendered {
  if (digests.length !== image.layers.length) throw new Error('internal: one digest set per layer expected');
  const diffIds = digests.map((d) => d.diffId);
  const run = image.run;
  const cfg: Record<string, unknown> = {};
  if (run.user) cfg.User = run.user;
  if (run.exposedPorts.length > 0)
    // A set, like Labels: in key order (as Docker's and Nix's JSON writers put it), so that the
    // order of the --expose flags does not change the digest.
    cfg.ExposedPorts = Object.fromEntries([...run.exposedPorts].sort(byKey).map((p) => [p, {}]));
  if (run.env.length > 0) cfg.Env = [...run.env];
  if (run.entrypoint) cfg.Entrypoint = [...run.entrypoint];
  if (run.cmd) cfg.Cmd = [...run.cmd];
  if (run.workdir) cfg.WorkingDir = run.workdir;
  if (Object.keys(run.labels).length > 0) cfg.Labels = sortedRecord(run.labels);
  // A set as well, in key order; both only when given, so that other images keep their digests.
  if (run.volumes && run.volumes.length > 0)
    cfg.Volumes = Object.fromEntries([...run.volumes].sort(byKey).map((v) => [v, {}]));
  if (run.stopSignal) cfg.StopSignal = run.stopSignal;
  const config = {
    created: image.created,
    architecture: image.platform.architecture,
    ...(image.platform.variant ? { variant: image.platform.variant } : {}),
    os: image.platform.os,
    config: cfg,
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: image.layers.map((l) => ({
      created: image.created,
      created_by: `nixoci: ${layerLabel(l)}`,
      comment:
        l.planned.storePaths.length > 0
          ? 'store paths copied by nixoci'
          : 'files made by nixoci: links, users, copied project files',
    })),
  };
  const configBlob = jsonBlob(config, MediaType.ociConfig);
  const layers = image.layers.map((l, i) => layerDescriptor(l, digests[i]!));
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.bytes.length },
    layers,
    ...annotationsField(image.annotations?.manifest),
  };
  return { config: configBlob, manifest: jsonBlob(manifest, MediaType.ociManifest), layers, diffIds };
}

/** An OCI index over several platforms' manifests, with the user's index annotations. */
export function renderIndex(
  entries: readonly { manifest: Blob; platform: Platform }[],
  annotations?: Readonly<Record<string, string>>,
): Blob {
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: entries.map((e) => ({
      mediaType: e.manifest.mediaType,
      digest: e.manifest.digest,
      size: e.manifest.bytes.length,
      platform: e.platform,
    })),
    ...annotationsField(annotations),
  };
  return jsonBlob(index, MediaType.ociIndex);
}

/** `annotations` in key order, or nothing at all when there are none (the digest stays as it was). */
function annotationsField(a: Readonly<Record<string, string>> | undefined): {
  annotations?: Record<string, string>;
} {
  return a && Object.keys(a).length > 0 ? { annotations: sortedRecord(a) } : {};
}

const byKey = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function sortedRecord(r: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => byKey(a, b)));
}
