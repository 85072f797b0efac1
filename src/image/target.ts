import type { Digest } from '../core/digest.js';
import type { Compression } from '../layer/compress.js';
import type { Layer } from '../layer/layer.js';
import type { Image } from './image.js';

/**
 * What happened to a layer at a target: `written` (blob written), `skipped` (target already had
 * it), `cached` (digests from the cache, blob written without re-hashing), `uploaded`, `mounted`
 * (cross-repository mount), `reused` (digests from the registry's annotations, store not read),
 * `sent` / `omitted` (in a docker load archive or not).
 */
export type LayerAction = 'written' | 'skipped' | 'uploaded' | 'mounted' | 'reused' | 'sent' | 'omitted';

export interface LayerReport {
  readonly storePaths: readonly string[];
  readonly diffId: Digest;
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
  readonly action: LayerAction;
  /** Bytes of this layer sent over the wire / written to disk by this target. */
  readonly bytesSent: number;
}

export interface ImageReport {
  readonly architecture: string;
  readonly manifestDigest: Digest;
  readonly configDigest: Digest;
  readonly layers: readonly LayerReport[];
}

export interface TargetResult {
  /** The target as the user named it, with credentials removed. */
  readonly target: string;
  /** Digest of what the tag points at: the manifest, or the index for several platforms. */
  readonly manifestDigest: Digest;
  readonly images: readonly ImageReport[];
  readonly notes: readonly string[];
  /** Every tag the destination now has for the image (`REGISTRY/REPO:TAG`), where it has tags. */
  readonly tags?: readonly string[];
  /** Engines: the ID the engine gives the image, as `docker images` shows it. */
  readonly imageId?: Digest;
}

export type ProgressEvent =
  | { readonly kind: 'layer-start'; readonly id: string; readonly label: string; readonly total?: number }
  | { readonly kind: 'layer-bytes'; readonly id: string; readonly bytes: number }
  | {
      readonly kind: 'layer-done';
      readonly id: string;
      readonly action: LayerAction;
      /**
       * With `omitted`: the layer the destination already holds, told as soon as that is known, so
       * that progress counts it as done though it is never read.
       */
      readonly layer?: Layer;
    };

export interface WriteContext {
  readonly signal?: AbortSignal;
  readonly onProgress?: (e: ProgressEvent) => void;
  /** Called with a line of `--verbose` detail; never receives credentials. */
  readonly log?: (line: string) => void;
}

/**
 * How long what prepare() learned is trusted. Past it (reading the closure ran a Nix build) a
 * target asks again: another run may have changed what the other side holds meanwhile.
 */
export const PREPARED_FRESH_MS = 1000;

/** Work prepare() started for write(); its failure is reported when write() awaits `result`. */
export class Prepared<T> {
  private readonly at = Date.now();

  constructor(readonly result: Promise<T>) {
    result.catch(() => undefined); // not unhandled before write() awaits it
  }

  /** Whether the answers are recent enough to act on. */
  get fresh(): boolean {
    return Date.now() - this.at <= PREPARED_FRESH_MS;
  }
}

export interface PrepareContext extends WriteContext {
  /** The architectures the images will be built for. */
  readonly architectures?: readonly string[];
}

/** Where an image goes: a registry, a Docker engine, Podman, an OCI layout, a docker-archive. */
export interface ImageTarget {
  /** The target as the user named it, without credentials. */
  readonly description: string;
  /**
   * Whether the image's manifest (and index) reach the target as written, with their annotations:
   * a registry's and an OCI layout's do; an engine and a docker-archive keep no manifest.
   */
  readonly keepsManifest?: boolean;
  /** Compression this target requires whatever the user asked for (archives and engines: none). */
  readonly requiredCompression?: Compression;
  /**
   * Starts what needs no image (connecting, asking what the other side holds) while the closure
   * is still being read; write() then uses the answers. Must not throw: failures surface in write().
   */
  prepare?(ctx: PrepareContext): void;
  /**
   * Fails (a NixociError) on what can be known wrong before anything is written to any target,
   * such as a file target's missing directory; write() still reports what changes meanwhile.
   */
  check?(): void;
  /** Writes one image, or an index over several (one per platform). */
  write(images: readonly Image[], ctx: WriteContext): Promise<TargetResult>;
}
