import { Writable } from 'node:stream';
import type { Digest } from '../core/digest.js';
import type { Blob } from '../image/image.js';
import type { ProgressEvent } from '../image/target.js';
import type { Layer, LayerDigests } from '../layer/layer.js';
import type { RegistryClient } from './client.js';
import type { TakeTurn } from '../core/turns.js';
import type { BlobHolders } from './holders.js';
import { completeUploadConfirmed, sessionLost, uploadBlob } from './upload.js';

export type BlobAction = 'skipped' | 'mounted' | 'uploaded' | 'reused';

export interface PushedLayer {
  readonly digests: LayerDigests;
  readonly action: BlobAction;
  readonly bytesSent: number;
}

export interface PushContext {
  readonly client: RegistryClient;
  readonly repository: string;
  /** Repositories on the same registry to try mounting from, in order (after those known). */
  readonly mountFrom: readonly string[];
  /** Repositories of this registry known to hold each blob (earlier pushes): mount sources. */
  readonly holders: BlobHolders;
  /**
   * Blobs the repository is known to hold (named by its current manifests), with the size their
   * descriptors give: no HEAD needed for a layer of that size.
   */
  readonly present?: ReadonlyMap<Digest, number>;
  readonly signal?: AbortSignal;
  readonly onProgress?: (e: ProgressEvent) => void;
  /**
   * A turn to read the store (hash for a mount, make a blob for an upload), given back as soon as
   * the blob is made: the upload's last bytes and the registry's answers do not hold a core.
   */
  readonly takeTurn?: TakeTurn;
  /**
   * Told the layer's digests as soon as they are known (up front, or once its blob has been made),
   * which for an upload is before the registry has confirmed it: the config can go out then.
   */
  readonly onDigests?: (d: LayerDigests) => void;
}

/**
 * One layer, in the order that sends the fewest bytes: HEAD (the repository has it) → mount from
 * another repository of the same registry → upload. `reusedFrom` is the repository whose manifest
 * annotations gave the digests (stateless skip), so the store was not read for them.
 */
export async function pushLayer(
  ctx: PushContext,
  layer: Layer,
  id: string,
  reusedFrom: string | undefined,
): Promise<PushedLayer> {
  const { client, repository, signal } = ctx;
  const takeTurn: TakeTurn = ctx.takeTurn ?? (() => Promise.resolve(() => undefined));
  const candidates = (d: Digest): string[] =>
    [...new Set([...(reusedFrom ? [reusedFrom] : []), ...ctx.holders.get(d), ...ctx.mountFrom])].filter(
      (r) => r !== repository,
    );

  let d = layer.known;
  if (d) {
    ctx.onDigests?.(d);
    // A cached size that the repository's manifest contradicts is settled by the HEAD below.
    if (ctx.present?.get(d.digest) === d.size) return done(ctx, id, d, reusedFrom ? 'reused' : 'skipped', 0);
    const size = await client.blobExists(repository, d.digest, signal);
    if (size !== undefined) {
      // A digest names its bytes, and the registry checked them when they came: a cached size that
      // differs (an entry edited or damaged) would give the manifest a descriptor pulls refuse. (A
      // reused layer's size comes from the registry's own manifest.)
      if (!reusedFrom && Number.isFinite(size) && size !== d.size) throw layer.wrongSize(size);
      return done(ctx, id, d, reusedFrom ? 'reused' : 'skipped', 0);
    }
  } else if (ctx.mountFrom.length > 0) {
    // A mount needs the digest: hash the layer without sending it, then look again.
    const giveBack = await takeTurn(signal);
    try {
      d = await layer.writeTo(new Writable({ write: (_c, _e, cb) => cb() }), signal);
    } finally {
      giveBack();
    }
    ctx.onDigests?.(d);
    if ((await client.blobExists(repository, d.digest, signal)) !== undefined)
      return done(ctx, id, d, 'skipped', 0);
  }

  let session: URL | undefined;
  if (d) {
    for (const from of candidates(d.digest)) {
      if (session) await client.cancelUpload(session);
      const m = await client.mountBlob(repository, d.digest, from, signal);
      // A mount is by digest alone and its answer gives no size: a cached size is not checked here
      // (a HEAD per mounted layer would cost a round trip each, for a cache edited by hand).
      if (m.mounted) return done(ctx, id, d, 'mounted', 0);
      session = m.location;
    }
  }

  const opened = session;
  const r = await uploadBlob(
    client,
    repository,
    {
      known: () => (layer.known ? { digest: layer.known.digest, size: layer.known.size } : undefined),
      open: async (s) => {
        const giveBack = await takeTurn(s);
        const o = layer.open(s);
        void o.produced.then(giveBack);
        if (ctx.onDigests) o.digests.then(ctx.onDigests, () => undefined);
        o.stream.once('close', giveBack);
        return o;
      },
    },
    {
      ...(signal ? { signal } : {}),
      ...(opened ? { session: opened } : {}),
      onBytes: (n) => ctx.onProgress?.({ kind: 'layer-bytes', id, bytes: n }),
    },
  );
  return done(ctx, id, layer.known!, 'uploaded', r.bytesSent);
}

function done(
  ctx: PushContext,
  id: string,
  digests: LayerDigests,
  action: BlobAction,
  bytesSent: number,
): PushedLayer {
  ctx.holders.add(digests.digest, ctx.repository);
  ctx.onDigests?.(digests);
  ctx.onProgress?.({ kind: 'layer-done', id, action });
  return { digests, action, bytesSent };
}

/**
 * A small JSON blob (config): HEAD, else one POST + PUT with the body; a session the registry
 * dropped after a failed PUT (see `sessionLost`) is replaced by a new one.
 */
export async function pushSmallBlob(
  client: RegistryClient,
  repository: string,
  blob: Blob,
  signal?: AbortSignal,
): Promise<boolean> {
  if ((await client.blobExists(repository, blob.digest, signal)) !== undefined) return false;
  for (let attempt = 1; ; attempt++) {
    const location = await client.startUpload(repository, signal);
    try {
      await completeUploadConfirmed(client, repository, location, blob.digest, blob.bytes, signal);
      return true;
    } catch (e) {
      await client.cancelUpload(location);
      if (signal?.aborted || !sessionLost(e) || attempt >= client.transport.retry.attempts) throw e;
    }
  }
}
