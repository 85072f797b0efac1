import pLimit from 'p-limit';
import type { Digest } from '../core/digest.js';
import { NixociError, isNixociError } from '../core/errors.js';
import { turns } from '../core/turns.js';
import {
  layerLabel,
  renderImage,
  renderIndex,
  type Blob,
  type Image,
  type Rendered,
} from '../image/image.js';
import {
  Prepared,
  type ImageReport,
  type ImageTarget,
  type PrepareContext,
  type TargetResult,
  type WriteContext,
} from '../image/target.js';
import type { Layer, LayerDigests } from '../layer/layer.js';
import { RegistryClient } from './client.js';
import { BlobHolders } from './holders.js';
import { pushLayer, pushSmallBlob, type PushContext, type PushedLayer } from './push-blob.js';
import { formatReference, type ImageReference } from './reference.js';
import { registryCodes } from './registry-error.js';
import { imageReport } from './target-result.js';
import type { RetryPolicy } from './retry.js';
import { applyReuse, findReusableLayers, type ReusableLayer } from './reuse.js';

export interface RegistryTargetOptions {
  /** More tags for the same manifest (one upload). */
  readonly tags?: readonly string[];
  /** Repositories on the same registry that may hold the layers, for cross-repository mounts. */
  readonly mountFrom?: readonly string[];
  /**
   * The digest cache's directory, where the repositories known to hold each blob are kept for the
   * mounts of later pushes (null or unset: for this process only).
   */
  readonly cacheDir?: string | null;
  /** Images whose annotated layers may be reused without reading the store (besides the target tag). */
  readonly cacheFrom?: readonly ImageReference[];
  readonly creds?: { readonly username: string; readonly password: string };
  readonly insecureRegistries?: readonly string[];
  readonly caFile?: string;
  /** --cert-dir: the registry's CAs and client certificate, instead of its certs.d directory. */
  readonly certDir?: string;
  /** How long the registry may stay silent before a request is retried (see TransportOptions). */
  readonly timeoutMs?: number;
  /** Blobs in flight at once (default 4). */
  readonly concurrency?: number;
  /** Environment for credential lookup (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
  readonly retry?: Partial<RetryPolicy>;
}

export const DEFAULT_CONCURRENCY = 4;

/**
 * Layers whose bytes are made (tar + hash + compress) at once while uploading: one per layer
 * worker. More would only interleave two layers on one core, holding two compressors' memory
 * (measured on the bench closure, zstd: 300 MB and no faster with 4; 215 MB with 2).
 */
const PRODUCERS = 2;

/** What the registry's manifests offer: annotated layers, the blobs it holds, the tag's digest. */
interface Reusable {
  readonly layers: readonly ReusableLayer[];
  readonly present: ReadonlyMap<Digest, number>;
  readonly topDigest: Digest | undefined;
}

/** Unknown layers up to this size (of their files) are made in memory before the push starts. */
const IN_MEMORY_MAX = 256 << 10;

/** Pushes images to a registry: stateless skip, HEAD, mount, streamed upload, manifest last. */
export class RegistryTarget implements ImageTarget {
  readonly description: string;
  readonly keepsManifest = true;
  private early:
    | Prepared<{ client: RegistryClient; architectures: readonly string[]; notes: string[]; found: Reusable }>
    | undefined;

  constructor(
    readonly ref: ImageReference,
    private readonly options: RegistryTargetOptions = {},
  ) {
    this.description = `docker://${formatReference(ref)}`;
  }

  /**
   * Reads what the registry holds at the tag (and `--cache-from`) while the closure is read: the
   * token and the manifests do not depend on the layers.
   */
  prepare(ctx: PrepareContext): void {
    if (!ctx.architectures) return;
    const architectures = [...ctx.architectures];
    this.early = new Prepared(
      (async () => {
        const client = this.pushClient(ctx);
        const notes: string[] = [];
        return {
          client,
          architectures,
          notes,
          found: await this.fetchReusable(architectures, client, ctx, notes),
        };
      })(),
    );
  }

  async write(images: readonly Image[], ctx: WriteContext): Promise<TargetResult> {
    if (images.length === 0) throw new NixociError('INTERNAL', 'registry target: no image to push');
    const { ref } = this;
    const repo = ref.repository;
    const signal = ctx.signal;
    const early = this.early;
    this.early = undefined;
    const mountFrom = [...(this.options.mountFrom ?? [])];
    const holders = BlobHolders.for(ref.registry, this.options.cacheDir);

    try {
      const prepared = early ? await early.result : undefined;
      const client = prepared?.client ?? this.pushClient(ctx);
      // (1) Stateless skip, before any layer is read. What prepare() read is used unless reading
      // the closure took over a second (a Nix build: another push may have moved the tag since).
      const architectures = images.map((i) => i.platform.architecture);
      const fresh =
        prepared && early!.fresh && architectures.every((a) => prepared.architectures.includes(a));
      const notes: string[] = fresh ? [...prepared.notes] : [];
      const found = fresh ? prepared.found : await this.fetchReusable(architectures, client, ctx, notes);
      const { matched: reused, present, topDigest } = this.reuse(images, found);
      if (reused.size > 0)
        ctx.log?.(
          `${this.description}: ${reused.size} layer${reused.size === 1 ? '' : 's'} reused from registry annotations`,
        );

      const multi = images.length > 1;

      // (2) Layers, each distinct one once (architectures share most of them).
      const concurrency = Math.max(1, this.options.concurrency ?? DEFAULT_CONCURRENCY);
      const limit = pLimit(concurrency);
      // The first layer that fails stops the others: the push has failed, and the bytes they would
      // still send (and the queued ones would start) are lost time. Its own error is what the push
      // reports; the others end ABORTED, their sessions cancelled.
      const stop = new AbortController();
      const layerSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
      const pushCtx: PushContext = {
        client,
        repository: repo,
        mountFrom,
        holders,
        present,
        takeTurn: turns(Math.min(concurrency, PRODUCERS)),
        signal: layerSignal,
        ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
      };
      const byLayer = new Map<string, Promise<PushedLayer>>();
      // Each layer's digests, as soon as they are known: before the registry confirmed its blob.
      const digestsOf = new Map<string, Promise<LayerDigests>>();
      const pushOnce = (layer: Layer): Promise<PushedLayer> => {
        const key = layerKey(layer);
        let p = byLayer.get(key);
        if (!p) {
          const id = `${byLayer.size}`;
          let onDigests!: (d: LayerDigests) => void;
          digestsOf.set(key, new Promise<LayerDigests>((resolve) => (onDigests = resolve)));
          p = limit(() => {
            if (layerSignal.aborted) throw new NixociError('ABORTED', 'aborted');
            ctx.onProgress?.({
              kind: 'layer-start',
              id,
              label: layerLabel(layer),
              ...(layer.known ? { total: layer.known.size } : {}),
            });
            // Stopped before this turn is given back, so that no queued layer starts in between.
            return pushLayer({ ...pushCtx, onDigests }, layer, id, reused.get(layer)?.repository).catch(
              (e: unknown) => {
                stop.abort();
                throw e;
              },
            );
          });
          byLayer.set(key, p);
        }
        return p;
      };
      // Small layers not known yet (the app of an inner loop) are made in memory first: a few KB,
      // and with every digest known the config goes out with the layers below.
      const all = images.flatMap((img) => img.layers);
      await Promise.all(
        all.filter((l) => !l.known && l.planned.narSize <= IN_MEMORY_MAX).map((l) => l.inMemory(signal)),
      );
      // Pull on every repository a known layer may be mounted from, asked for now: one token for
      // all the mounts, instead of a new one each time a concurrent mount meets a missing scope.
      for (const l of all)
        if (l.known && !present.has(l.known.digest))
          for (const from of holders.get(l.known.digest))
            if (from !== repo) client.auth.addScope(from, 'pull');
      // Started biggest first (results stay in layer order): the last layer to be made is then a
      // small one, and both cores stay busy to the end.
      for (const l of all.sort((a, b) => b.planned.narSize - a.planned.narSize)) void pushOnce(l);
      // Each config goes out as soon as its layers' digests are known (up front from the cache or
      // annotations, else once each blob is made), not after the registry has confirmed the last
      // layer: its HEAD, POST and PUT then overlap the layers' last round trips. Each resolves
      // with the config digest it made sure of (undefined: nothing to send).
      const configs = new Map<Digest, Promise<Digest>>();
      const configOf = images.map((image) =>
        Promise.all(image.layers.map((l) => digestsOf.get(layerKey(l))!)).then((digests) => {
          const r = renderImage(image, digests);
          if (present.has(r.config.digest)) return r.config.digest;
          if (!multi && r.manifest.digest === topDigest) return undefined; // unchanged: nothing to send
          let p = configs.get(r.config.digest);
          if (!p) {
            p = pushSmallBlob(client, repo, r.config, signal).then(() => r.config.digest);
            configs.set(r.config.digest, p);
          }
          return p;
        }),
      );
      for (const p of configOf) p.catch(() => undefined); // awaited below, where its failure is reported
      let perImage: PushedLayer[][];
      try {
        perImage = await Promise.all(images.map((img) => Promise.all(img.layers.map(pushOnce))));
      } catch (e) {
        // The other layers stop (above); they and a config already on its way are let finish
        // cancelling their sessions before the push reports the failure.
        stop.abort();
        await Promise.allSettled([...byLayer.values(), ...configs.values()]);
        throw e;
      }

      // (3) Config, then manifest once every blob it names is confirmed.
      const reports: ImageReport[] = [];
      const reported = new Set<Digest>();
      const manifests: { manifest: Blob; platform: Image['platform'] }[] = [];
      // `--tag v1 --tag v1`, or a --tag equal to the reference's own: one PUT and one name each
      const tags = [
        ...new Set([ref.tag, ...(this.options.tags ?? [])].filter((t): t is string => t !== undefined)),
      ];
      const rendered = images.map((image, i) =>
        renderImage(
          image,
          perImage[i]!.map((p) => p.digests),
        ),
      );
      if (!multi) this.checkPinned(rendered[0]!.manifest.digest);
      // Each platform's config and manifest go at once (the index waits for all of them below).
      await Promise.all(
        images.map(async (image, i) => {
          const r = rendered[i]!;
          const reference = multi || tags.length === 0 ? r.manifest.digest : tags[0]!;
          // The tag already points at exactly this manifest, or the index at it names this one and
          // it was read: nothing to send (an unchanged re-push).
          if (multi ? present.has(r.manifest.digest) : r.manifest.digest === topDigest) return;
          // The config sent early was rendered from the same digests; a mismatch would be a bug,
          // and is made good rather than named in a manifest.
          if ((await configOf[i]) !== r.config.digest && !present.has(r.config.digest))
            await pushSmallBlob(client, repo, r.config, signal);
          await this.putManifestChecked(client, image, r, reference, signal);
        }),
      );
      for (const [i, image] of images.entries()) {
        const pushed = perImage[i]!;
        const r = rendered[i]!;
        manifests.push({ manifest: r.manifest, platform: image.platform });
        reports.push(
          imageReport(image, r, (i) => {
            const p = pushed[i]!;
            // A blob shared with an earlier platform's image went once: it is told there; here
            // the registry already has it (as an OCI layout reports a second copy).
            const again = reported.has(p.digests.digest);
            reported.add(p.digests.digest);
            return again && (p.action === 'uploaded' || p.action === 'mounted')
              ? { action: 'skipped', bytesSent: 0 }
              : { action: p.action, bytesSent: p.bytesSent };
          }),
        );
      }

      // (4) Several platforms: an index over the manifests pushed by digest.
      const top: Blob = multi
        ? renderIndex(manifests, images[0]?.annotations?.index)
        : manifests[0]!.manifest;
      if (multi) this.checkPinned(top.digest);
      if (multi && tags.length > 0) {
        if (top.digest !== topDigest) await client.putManifest(repo, tags[0]!, top, signal);
      } else if (multi) await client.putManifest(repo, top.digest, top, signal);
      // (5) Extra tags: the same bytes under each, all at once once the first tag holds them.
      await Promise.all(tags.slice(1).map((t) => client.putManifest(repo, t, top, signal)));
      return {
        target: this.description,
        manifestDigest: top.digest,
        images: reports,
        notes,
        tags: tags.map((t) => `${ref.registry}/${ref.repository}:${t}`),
      };
    } catch (e) {
      if (signal?.aborted)
        throw isNixociError(e) && e.code === 'ABORTED'
          ? e
          : new NixociError('ABORTED', `${this.description}: aborted`, { cause: e });
      throw e;
    } finally {
      // What this push found or sent is kept for the mounts of the next, even if it failed later.
      await holders.save();
    }
  }

  /**
   * A reference that pins a digest (`REPO[:TAG]@sha256:…`) is a promise about what lands there:
   * another manifest (or index) is not pushed under its tag, as skopeo and crane refuse it too.
   */
  private checkPinned(digest: Digest): void {
    const pinned = this.ref.digest;
    if (pinned === undefined || pinned === digest) return;
    throw new NixociError(
      'TARGET_INVALID',
      `${this.description}: the image's manifest is ${digest}, not the ${pinned} the reference pins`,
      { hint: 'leave @sha256:… out of the reference to push this image' },
    );
  }

  private client(ref: ImageReference, what: string, ctx: WriteContext): RegistryClient {
    const o = this.options;
    return new RegistryClient(
      ref.registry,
      ref.host,
      {
        what,
        ...(o.creds ? { creds: o.creds } : {}),
        ...(o.env ? { env: o.env } : {}),
        ...(o.insecureRegistries ? { insecureRegistries: o.insecureRegistries } : {}),
        ...(o.caFile ? { caFile: o.caFile } : {}),
        ...(o.certDir ? { certDir: o.certDir } : {}),
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
        ...(o.retry ? { retry: o.retry } : {}),
        ...(ctx.log ? { log: ctx.log } : {}),
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      },
      ref.repository,
    );
  }

  /** The client for the push, with the scopes it needs asked for up front. */
  private pushClient(ctx: WriteContext): RegistryClient {
    const { ref } = this;
    const client = this.client(ref, `push to ${ref.registry}/${ref.repository}`, ctx);
    client.auth.addScope(ref.repository, 'pull,push');
    for (const m of this.options.mountFrom ?? []) client.auth.addScope(m, 'pull');
    for (const c of this.options.cacheFrom ?? [])
      if (c.registry === ref.registry) client.auth.addScope(c.repository, 'pull');
    return client;
  }

  /** Applies what the manifests at the tag and `--cache-from` say to the layers. */
  private reuse(
    images: readonly Image[],
    found: Reusable,
  ): { matched: Map<Layer, ReusableLayer>; present: Map<Digest, number>; topDigest: Digest | undefined } {
    const matched = new Map<Layer, ReusableLayer>();
    for (const image of images)
      for (const [l, r] of applyReuse(image.layers, found.layers)) matched.set(l, r);
    return { matched, present: new Map(found.present), topDigest: found.topDigest };
  }

  /**
   * Reads the manifests at the target tag and at each `--cache-from` for their annotated layers.
   * Failing to read the target is fatal (pushing would fail the same way); failing to read a cache
   * source is only a note.
   */
  private async fetchReusable(
    arches: readonly string[],
    client: RegistryClient,
    ctx: WriteContext,
    notes: string[],
  ): Promise<Reusable> {
    const found: ReusableLayer[] = [];
    const present = new Map<Digest, number>();
    let topDigest: Digest | undefined;
    const target = this.ref.tag ?? this.ref.digest;
    // The target's and every --cache-from's manifests are read at once: none depends on another,
    // and on a remote registry each one read after the other is a round trip more.
    const fromCache = (this.options.cacheFrom ?? []).map(async (c) => {
      const src =
        c.registry === this.ref.registry ? client : this.client(c, `read ${formatReference(c)}`, ctx);
      try {
        const reference = c.digest ?? c.tag ?? 'latest';
        const { layers, blobs } = await findReusableLayers(src, c.repository, reference, arches, ctx.signal);
        return { c, src, layers, blobs };
      } catch (e) {
        if (ctx.signal?.aborted) throw e;
        return { c, error: e };
      }
    });
    // Awaited below in order; a failure of the target's read must not leave these unobserved.
    for (const p of fromCache) p.catch(() => undefined);
    if (target) {
      const own = await findReusableLayers(client, this.ref.repository, target, arches, ctx.signal);
      found.push(...own.layers);
      for (const [b, size] of own.blobs) present.set(b, size);
      topDigest = own.topDigest;
    }
    for (const r of await Promise.all(fromCache)) {
      const { c } = r;
      if ('error' in r) {
        const e = r.error;
        notes.push(
          `--cache-from ${formatReference(c)} not used: ${isNixociError(e) ? e.message : String(e)}`,
        );
        continue;
      }
      const { src, layers, blobs } = r;
      if (src === client && c.repository === this.ref.repository)
        for (const [b, size] of blobs) present.set(b, size);
      // A descriptor from another registry gives digests but no mount source.
      found.push(
        ...(src === client ? layers : layers.map((l) => ({ ...l, repository: this.ref.repository }))),
      );
    }
    return { layers: found, present, topDigest };
  }

  /** PUT the manifest; on MANIFEST_BLOB_UNKNOWN make sure of every blob once and PUT again. */
  private async putManifestChecked(
    client: RegistryClient,
    image: Image,
    rendered: Rendered,
    reference: string,
    signal: AbortSignal | undefined,
  ): Promise<Digest> {
    const repo = this.ref.repository;
    try {
      return await client.putManifest(repo, reference, rendered.manifest, signal);
    } catch (e) {
      if (!registryCodes(e).includes('MANIFEST_BLOB_UNKNOWN') && !registryCodes(e).includes('BLOB_UNKNOWN'))
        throw e;
    }
    await pushSmallBlob(client, repo, rendered.config, signal);
    for (const layer of image.layers) {
      // pushLayer HEADs first, so only what the registry really lacks is sent again.
      await pushLayer(
        {
          client,
          repository: repo,
          mountFrom: [],
          holders: BlobHolders.for(this.ref.registry, this.options.cacheDir),
          ...(signal ? { signal } : {}),
        },
        layer,
        're-send',
        undefined,
      );
    }
    return client.putManifest(repo, reference, rendered.manifest, signal);
  }
}

/** Layers with the same contents and media type are one blob, whichever image they belong to. */
function layerKey(layer: Layer): string {
  const p = layer.planned;
  return JSON.stringify([layer.mediaType, p.storePaths, p.narHashes, p.extra ?? []]);
}
