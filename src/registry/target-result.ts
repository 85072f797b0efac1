import { NixociError, reason } from '../core/errors.js';
import type { Image, Rendered } from '../image/image.js';
import type { ImageReport, LayerAction, LayerReport } from '../image/target.js';

/** The report of one rendered image, each layer with the action and bytes its target gives it. */
export function imageReport(
  image: Image,
  rendered: Rendered,
  layer: (i: number) => { action: LayerAction; bytesSent: number },
): ImageReport {
  const layers: LayerReport[] = image.layers.map((l, i) => ({
    storePaths: l.planned.storePaths,
    diffId: rendered.diffIds[i]!,
    digest: rendered.layers[i]!.digest,
    size: rendered.layers[i]!.size,
    mediaType: l.mediaType,
    ...layer(i),
  }));
  return {
    architecture: image.platform.architecture,
    manifestDigest: rendered.manifest.digest,
    configDigest: rendered.config.digest,
    layers,
  };
}

/** A failure while writing a file target, as a typed error (aborts become ABORTED). */
export function writeError(description: string, e: unknown, hint: string): NixociError {
  if (e instanceof NixociError) return e;
  if ((e as Error).name === 'AbortError')
    return new NixociError('ABORTED', `writing ${description} was interrupted`);
  return new NixociError('TARGET_WRITE', `cannot write ${description}: ${reason(e)}`, { hint, cause: e });
}
