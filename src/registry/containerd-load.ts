import { Writable } from 'node:stream';
import type { Digest } from '../core/digest.js';
import { NixociError, reason } from '../core/errors.js';
import { layerLabel, type Image } from '../image/image.js';
import type { TargetResult, WriteContext } from '../image/target.js';
import type { EngineClient } from './engine/client.js';
import { engineLoads, recordEngineLoad } from './engine-loads.js';
import { ociArchive, planOciArchive } from './oci-archive-format.js';
import { fullName } from './reference.js';
import { imageReport } from './target-result.js';

export interface ContainerdLoad {
  readonly client: EngineClient;
  /** The engine's ID (`GET /info`), the key of what nixoci recorded loading there. */
  readonly engineId: string | undefined;
  readonly images: readonly Image[];
  readonly name: string;
  readonly tags: readonly string[];
  /** Image IDs the engine has under `NAME:TAG` (asked before). */
  readonly ids: ReadonlyMap<string, string>;
  /** Where `engine-loads.json` lives; null: nothing recorded, nothing omitted. */
  readonly cacheDir: string | null;
  readonly scheme: string;
  readonly notes: string[];
  /**
   * Podman instead (docs/daemon.md): the layer blobs its storage holds (the diffIDs of its images
   * asked for), one name in the archive and the other tags by its own tag call; its image ID is the
   * config digest; nothing is recorded.
   */
  readonly podman?: { readonly held: ReadonlySet<string> };
}

/**
 * Loads into an engine with the containerd image store, or into Podman: an OCI archive
 * (docs/daemon.md) of every platform's image, without the layer blobs the engine still holds.
 */
export async function loadContainerdStore(o: ContainerdLoad, ctx: WriteContext): Promise<TargetResult> {
  const { client, images, name, tags, notes } = o;
  await hashUnknownLayers(images, ctx);
  const { rendered, top } = planOciArchive(images);
  const repoTags = tags.map((t) => `${name}:${t}`);
  // The engine's image ID: containerd's is the manifest (or index) digest, Podman's the config's.
  const imageId = o.podman ? rendered[0]!.config.digest : top.digest;
  const result = (bytes: number[][], omitted: (d: Digest) => boolean, id: Digest): TargetResult => ({
    target: `${o.scheme}:${repoTags[0]!}`,
    manifestDigest: top.digest,
    images: images.map((image, m) =>
      imageReport(image, rendered[m]!, (i) => ({
        action: bytes[m]![i]! > 0 || !omitted(rendered[m]!.layers[i]!.digest) ? 'sent' : 'omitted',
        bytesSent: bytes[m]![i]!,
      })),
    ),
    notes,
    tags: repoTags,
    imageId: id,
  });
  const zero = (): number[][] => images.map((i) => i.layers.map(() => 0));

  if (repoTags.every((r) => sameId(o.ids.get(r), imageId))) {
    notes.push('unchanged: every tag already names this image in the engine; nothing sent');
    tellOmitted(images, () => true, ctx);
    return result(zero(), () => true, imageId);
  }

  const held = o.podman ? new Set(o.podman.held) : await heldBlobs(o, ctx);
  if (held.size > 0) ctx.log?.(`the engine holds ${held.size} of the layer blob(s)`);
  // before the archive is sent: a load that omits most layers shows them done from the start
  tellOmitted(images, (d) => held.has(d), ctx);
  // Podman takes one image per archive, and names it as written (a short name as localhost/NAME);
  // containerd keeps a name as written, so it gets full references.
  const refs = o.podman ? [repoTags[0]!] : tags.map((t) => `${fullName(name)}:${t}`);
  let bytes = zero();
  const load = async (omit: ReadonlySet<string>): Promise<void> => {
    bytes = zero();
    const { stream } = ociArchive({
      images,
      refs,
      include: (d) => !omit.has(d),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onLayerBytes: (m, i, n) => {
        if (bytes[m]![i] === 0)
          ctx.onProgress?.({
            kind: 'layer-start',
            id: `${m}:${i}`,
            label: layerLabel(images[m]!.layers[i]!),
            total: images[m]!.layers[i]!.tarSize(),
          });
        bytes[m]![i]! += n;
        ctx.onProgress?.({ kind: 'layer-bytes', id: `${m}:${i}`, bytes: n });
      },
      onLayerDone: (m, i) => ctx.onProgress?.({ kind: 'layer-done', id: `${m}:${i}`, action: 'sent' }),
    });
    const { messages } = await client.loadImage(stream, ctx.signal);
    for (const m of messages) ctx.log?.(m);
  };
  let omitted: ReadonlySet<string> = held;
  try {
    await load(held);
  } catch (e) {
    if (held.size === 0 || !(e instanceof NixociError) || e.code !== 'DAEMON') throw e;
    // The guess was wrong (the engine lost a blob since): send every blob.
    notes.push(
      `the engine refused the archive without the blobs it held before (${e.message}); retried with every blob`,
    );
    ctx.log?.(`retrying the load with every blob: ${reason(e)}`);
    omitted = new Set();
    await load(omitted);
  }
  const sentLayers = bytes.flat().filter((b) => b > 0).length;
  const total = images.reduce((n, i) => n + i.layers.length, 0);
  if (sentLayers < total)
    notes.push(
      `${total - sentLayers} layer blob${total - sentLayers === 1 ? '' : 's'} omitted: the engine holds them`,
    );
  if (images.length > 1)
    notes.push(
      `loaded ${images.map((i) => `linux/${i.platform.architecture}`).join(', ')} as one image (an index)`,
    );

  if (o.podman) {
    await Promise.all(tags.slice(1).map((t) => client.tagPodmanImage(imageId, name, t, ctx.signal)));
    return result(bytes, (d) => omitted.has(d), imageId);
  }
  const id = (await client.imageInspect(repoTags[0]!, ctx.signal))?.id ?? top.digest;
  if (o.cacheDir !== null && o.engineId) {
    const blobs = [...new Set(rendered.flatMap((r) => r.layers.map((l) => l.digest)))];
    try {
      await recordEngineLoad(o.cacheDir, o.engineId, { id: top.digest, blobs }, ctx.signal);
    } catch (e) {
      ctx.log?.(`cannot record the load in ${o.cacheDir}: ${reason(e)}`);
    }
  }
  return result(bytes, (d) => omitted.has(d), id as Digest);
}

/** Tells progress of the layers the archive leaves out (their digests are known by now). */
function tellOmitted(images: readonly Image[], omit: (d: Digest) => boolean, ctx: WriteContext): void {
  for (const [m, image] of images.entries())
    for (const [i, layer] of image.layers.entries())
      if (layer.known && omit(layer.known.digest))
        ctx.onProgress?.({ kind: 'layer-done', id: `${m}:${i}`, action: 'omitted', layer });
}

/** Podman answers an image ID without `sha256:`. */
function sameId(engine: string | undefined, id: Digest): boolean {
  return engine !== undefined && (engine === id || `sha256:${engine}` === id);
}

/**
 * An OCI archive names a blob by its digest before its content: a layer whose digests the cache does
 * not know is hashed first (read once more from the store, on a cold cache only).
 */
async function hashUnknownLayers(images: readonly Image[], ctx: WriteContext): Promise<void> {
  const unknown = images.flatMap((i) => i.layers).filter((l) => !l.known);
  if (unknown.length === 0) return;
  ctx.log?.(`hashing ${unknown.length} layer(s) the cache does not know before the archive names them`);
  await Promise.all(
    unknown.map((l) =>
      l.writeTo(
        new Writable({
          write: (_c, _e, cb) => cb(),
        }),
        ctx.signal,
      ),
    ),
  );
}

/** The layer blobs of images nixoci loaded into this engine and that it still has. */
async function heldBlobs(o: ContainerdLoad, ctx: WriteContext): Promise<Set<string>> {
  if (o.cacheDir === null || !o.engineId) return new Set();
  const loads = engineLoads(o.cacheDir, o.engineId);
  const present = await Promise.all(
    loads.map((l) =>
      o.client.imageInspect(l.id, ctx.signal).then(
        (i) => i !== undefined,
        () => false,
      ),
    ),
  );
  return new Set(loads.filter((_, i) => present[i]).flatMap((l) => l.blobs));
}
