import { randomUUID } from 'node:crypto';
import { familiarName } from './reference.js';
import { storePathName, type StorePath } from '../closure/store-path.js';
import { isDigest, sha256Digest, type Digest } from '../core/digest.js';
import { NixociError, reason } from '../core/errors.js';
import { layerLabel, renderImage, type Image, type Rendered } from '../image/image.js';
import { Prepared, type ImageTarget, type TargetResult, type WriteContext } from '../image/target.js';
import { dockerArchive, type ArchiveResult } from './docker-archive-format.js';
import { EngineClient, type EngineInfo, type EngineVersion, type ImageInspect } from './engine/client.js';
import { connectEngine } from './engine/connect.js';
import { loadContainerdStore } from './containerd-load.js';
import type { EngineKind } from './engine/discover.js';
import { imageReport } from './target-result.js';
import type { LayerDigests } from '../layer/layer.js';
import { TAR_FORMAT_VERSION } from '../layer/tar-header.js';

export interface DaemonTargetOptions {
  readonly engine: EngineKind;
  /** Engine address (`unix://…`, `tcp://…`, `ssh://…`); default: found like the docker CLI does. */
  readonly host?: string;
  /**
   * Repository name, e.g. `hello` or `example.com/team/hello`. Default: the name part of the
   * closure's top-level store path, tagged with its hash (when no tags are given).
   */
  readonly name?: string;
  /** Tags to give the image (default `latest`, or `imageTag` when the name is derived). */
  readonly tags?: readonly string[];
  /** More tags, besides `tags` or the default one (`--tag`). */
  readonly extraTags?: readonly string[];
  /** Other images whose layers the engine holds and this image may share (`--cache-from`). */
  readonly cacheFrom?: readonly string[];
  /** Environment for engine discovery (tests); default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Where nixoci records what it loaded into containerd-store engines (`engine-loads.json`), the
   * digest cache's directory; null or absent: nothing recorded, every blob sent.
   */
  readonly cacheDir?: string | null;
}

/**
 * The default tag: a hash of everything the image is made of (each layer's store paths, their
 * narHashes and added files, the tar format, the run config, the platform), so that two different
 * images of one top-level path get two tags, as with nix2container and dockerTools, and the same
 * image the same tag on every run. Known before any layer is read.
 */
export function imageTag(image: Image): string {
  const layers = image.layers.map((l) => [l.planned.storePaths, l.planned.narHashes, l.planned.extra ?? []]);
  const what = JSON.stringify([TAR_FORMAT_VERSION, image.platform, layers, image.run, image.created]);
  return sha256Digest(what).slice('sha256:'.length, 'sha256:'.length + 32);
}

/** How many other tags of the same repository are asked for their layers. */
const MAX_SIBLINGS = 10;

/**
 * Loads an image into a Docker engine (`docker-daemon:NAME:TAG`) or Podman (`podman:NAME:TAG`) by
 * streaming a docker-archive into `POST /images/load`. With Docker's classic image store, layers of
 * the prefix the engine already holds are left out of the archive: the loader finds their layer
 * chain and never opens their file (docs/daemon.md). No temporary file is written.
 */
export class DaemonTarget implements ImageTarget {
  readonly description: string;
  readonly requiredCompression = 'none' as const;
  private readonly scheme: string;
  /** The engine's answers, asked for by prepare() while the closure is read. */
  private early: Prepared<EngineView> | undefined;

  constructor(private readonly opts: DaemonTargetOptions) {
    this.scheme = opts.engine === 'podman' ? 'podman' : 'docker-daemon';
    this.description = opts.name ? `${this.scheme}:${opts.name}:${opts.tags?.[0] ?? 'latest'}` : this.scheme;
  }

  /**
   * Connects to the engine and, when the image's name is given, asks what it holds under that name,
   * while the caller reads the closure: the answers do not depend on the layers.
   */
  prepare(ctx: WriteContext): void {
    this.early = new Prepared(
      this.look(this.opts.name ? { name: this.opts.name, tags: this.tagsOr(['latest']) } : undefined, ctx),
    );
  }

  async write(images: readonly Image[], ctx: WriteContext): Promise<TargetResult> {
    let view = await (this.early?.result ?? this.look(undefined, ctx));
    const { client, version } = view;
    // Podman's service answers on DOCKER_HOST too (Podman's docs suggest it for Docker tools): its
    // loader needs every layer in every archive, whichever API path it is reached by.
    const podman = this.opts.engine === 'podman' || EngineClient.isPodman(version);
    ctx.log?.(
      `${podman ? 'podman' : 'docker'} engine ${version.Version} (API ${client.apiVersion}) at ${client.endpoint.address}`,
    );
    const notes: string[] = [];
    const picked: string[] = [];
    const image = pickImage(images, version.Arch, picked);
    const { name, tags } = this.names(image);
    // Asked again when not asked yet (name derived from the closure), or when reading the closure
    // took long enough (a Nix build) for the engine's images to have changed meanwhile.
    if (!view.held || !this.early?.fresh) view = await this.look({ name, tags }, ctx, view);
    if (podman) {
      const held = podmanHeld(image, view.held!);
      // Nothing to leave out: the docker-archive below needs no digests before the content (a
      // cold cache would read every layer twice for an OCI archive).
      if (held.size > 0 || this.unchanged(image, name, tags, podmanIds(view.held!)))
        return loadContainerdStore(
          {
            client,
            engineId: undefined,
            images: [image],
            name,
            tags,
            ids: podmanIds(view.held!),
            cacheDir: null,
            scheme: this.scheme,
            notes: [...notes, ...picked],
            podman: { held },
          },
          ctx,
        );
    }
    if (!podman && view.held!.info && EngineClient.usesContainerdStore(view.held!.info)) {
      // One image with every platform (an index), and an OCI archive without the blobs it holds.
      const ids = new Map([...view.held!.inspected].flatMap(([ref, i]) => (i ? [[ref, i.id] as const] : [])));
      return loadContainerdStore(
        {
          client,
          engineId: view.held!.info.ID,
          images,
          name,
          tags,
          ids,
          cacheDir: this.opts.cacheDir ?? null,
          scheme: this.scheme,
          notes,
        },
        ctx,
      );
    }
    notes.push(...picked);

    let prefix = 0;
    // Several archives in a row: only Docker's classic store looks earlier layers up by chain ID.
    let grouped = false;
    if (!podman) {
      const found = this.sharedPrefix(image, view.held!, ctx);
      grouped = true;
      prefix = found.length;
      const unchanged =
        prefix === image.layers.length ? this.unchanged(image, name, tags, found.ids) : undefined;
      if (unchanged) {
        notes.push('unchanged: every tag already names this image in the engine; nothing sent');
        for (const [i, layer] of image.layers.entries())
          ctx.onProgress?.({ kind: 'layer-done', id: String(i), action: 'omitted', layer });
        return {
          target: `${this.scheme}:${name}:${tags[0]!}`,
          manifestDigest: unchanged.manifest.digest,
          images: [imageReport(image, unchanged, () => ({ action: 'omitted', bytesSent: 0 }))],
          notes,
          tags: tags.map((t) => `${name}:${t}`),
          imageId: await this.imageId(view, `${name}:${tags[0]!}`, unchanged.config.digest, ctx),
        };
      }
      if (prefix > 0)
        notes.push(
          `${prefix} layer${prefix === 1 ? '' : 's'} omitted: the engine has them (from ${found.from})`,
        );
    }

    const repoTags = tags.map((t) => `${name}:${t}`);
    let sent: { result: ArchiveResult; bytes: number[] };
    try {
      sent = await this.load(client, image, repoTags, prefix, grouped, ctx);
    } catch (e) {
      if (prefix === 0 || !(e instanceof NixociError) || e.code !== 'DAEMON') throw e;
      // The guess was wrong (the engine dropped those layers since we asked): send everything.
      notes.push(
        `the engine refused the archive without ${prefix} layer${prefix === 1 ? '' : 's'} (${e.message}); retried with every layer`,
      );
      ctx.log?.(`retrying the load with every layer: ${reason(e)}`);
      prefix = 0;
      sent = await this.load(client, image, repoTags, prefix, grouped, ctx);
    }

    const { rendered } = sent.result;
    // The archive's RepoTags tag the image already; tagging again is idempotent and covers engines
    // that take only the first RepoTag (so with one tag there is nothing to do). Not for Podman:
    // its loader applies every RepoTag (short names as localhost/NAME), while its compat tag call
    // would add docker.io/NAME duplicates.
    if (!podman && tags.length > 1)
      await Promise.all(tags.map((t) => client.tagImage(rendered.config.digest, name, t, ctx.signal)));

    return {
      target: `${this.scheme}:${repoTags[0]!}`,
      manifestDigest: rendered.manifest.digest,
      images: [
        imageReport(image, rendered, (i) => ({
          action: i < prefix ? 'omitted' : 'sent',
          bytesSent: sent.bytes[i]!,
        })),
      ],
      notes,
      tags: repoTags,
      imageId: await this.imageId(view, repoTags[0]!, rendered.config.digest, ctx),
    };
  }

  /**
   * The image's ID in the engine: its config digest in Docker's classic store and in Podman; the
   * containerd image store names an image by its own manifest digest, which only the engine knows.
   */
  private async imageId(view: EngineView, ref: string, config: Digest, ctx: WriteContext): Promise<Digest> {
    if (
      this.opts.engine === 'podman' ||
      !view.held?.info ||
      !EngineClient.usesContainerdStore(view.held.info)
    )
      return config;
    const id = (await view.client.imageInspect(ref, ctx.signal))?.id;
    return id && isDigest(id) ? id : config;
  }

  private tagsOr(fallback: readonly string[]): readonly string[] {
    const first = this.opts.tags && this.opts.tags.length > 0 ? this.opts.tags : fallback;
    return [...new Set([...first, ...(this.opts.extraTags ?? [])])];
  }

  /**
   * Connects (unless `connected` is given) and, for Docker and a known name, asks at once which
   * image store the engine uses, which images the repository has, and their layers.
   */
  private async look(
    names: { name: string; tags: readonly string[] } | undefined,
    ctx: WriteContext,
    connected?: EngineView,
  ): Promise<EngineView> {
    const { engine, host, env } = this.opts;
    // Podman's GET /info (seconds on a busy service) says nothing nixoci needs: not asked.
    const ask = names
      ? async (c: EngineClient): Promise<HeldImages> => {
          const [info, held] = await Promise.all([
            engine === 'podman' ? undefined : c.info(ctx.signal),
            this.held(c, names.name, names.tags, ctx),
          ]);
          return { ...names, info, ...held };
        }
      : undefined;
    if (connected) return ask ? { ...connected, held: await ask(connected.client) } : connected;
    // The questions go out with GET /version (they need no negotiated API version), to the endpoint
    // being tried; an endpoint that does not answer fails both, and connectEngine reports it.
    let early: { client: EngineClient; held: Promise<HeldImages> } | undefined;
    const { client, version } = await connectEngine({
      engine,
      host,
      env,
      signal: ctx.signal,
      ...(ask && {
        early: (c: EngineClient) => {
          early = { client: c, held: ask(c) };
          early.held.catch(() => undefined);
        },
      }),
    });
    if (!ask) return { client, version };
    return { client, version, held: await (early?.client === client ? early.held : ask(client)) };
  }

  /** The repository and tags; derived from the closure's first top-level store path if not given. */
  private names(image: Image): { name: string; tags: readonly string[] } {
    if (this.opts.name) return { name: this.opts.name, tags: this.tagsOr(['latest']) };
    const root = image.closure.roots[0];
    if (!root)
      throw new NixociError(
        'TARGET_INVALID',
        `${this.scheme}: no image name given and the closure has no top-level path`,
      );
    return { name: repositoryFromStorePath(root), tags: this.tagsOr([imageTag(image)]) };
  }

  /**
   * Streams the archive (layers from `prefix` on) into the engine. With `grouped` (Docker's classic
   * image store), a big load goes as several archives in a row (`loadGroups`), so that the engine
   * imports one group of layers while the next one streams: its loader writes a whole archive to
   * disk before it imports the first layer.
   */
  private async load(
    client: EngineClient,
    image: Image,
    repoTags: readonly string[],
    prefix: number,
    grouped: boolean,
    ctx: WriteContext,
  ): Promise<{ result: ArchiveResult; bytes: number[] }> {
    const bytes = image.layers.map(() => 0);
    const progress = sentProgress(image, bytes, ctx);
    // before the archive is sent: a load that omits most layers shows them done from the start
    for (const [i, layer] of image.layers.slice(0, prefix).entries())
      ctx.onProgress?.({ kind: 'layer-done', id: String(i), action: 'omitted', layer });
    const groups = grouped
      ? loadGroups(
          image.layers.map((l) => l.tarSize()),
          prefix,
        )
      : [[prefix, image.layers.length] as const];
    if (groups.length > 1)
      ctx.log?.(
        `loading in ${groups.length} archives: layers ${groups.map(([s, e]) => `${s}-${e - 1}`).join(', ')}`,
      );
    const loads: Promise<ArchiveResult>[] = [];
    const steps: Digest[] = [];
    const run = randomUUID();
    try {
      for (const [g, [start, end]] of groups.entries()) {
        const last = g === groups.length - 1;
        const before = loads[g - 1];
        let streamed!: () => void;
        const layersStreamed = new Promise<void>((resolve) => (streamed = resolve));
        const archive = dockerArchive({
          image: last ? image : loadStep(image, end, run),
          repoTags: last ? repoTags : [],
          include: image.layers.slice(0, end).map((_, i) => i >= start),
          signal: ctx.signal,
          // The engine looks the earlier groups' layers up once this archive has ended: it must
          // not end before the previous load has registered them.
          beforeConfig: async () => {
            streamed();
            await before;
          },
          ...progress,
        });
        // A step whose archive is all out is imported by the engine whatever we do: an interruption
        // then waits for its answer, so that the step image it makes can be removed below.
        const signal = last ? ctx.signal : untilSent(ctx.signal, archive.result);
        const loaded = client.loadImage(archive.stream, signal).then(async ({ messages }) => {
          for (const m of messages) ctx.log?.(m);
          const r = await archive.result;
          if (!last) steps.push(r.rendered.config.digest);
          return r;
        });
        loaded.catch(() => undefined);
        loads.push(loaded);
        // One group streams at a time: the next starts once this one's layers are out.
        await Promise.race([layersStreamed, loaded]);
      }
      const results = await Promise.all(loads);
      return { result: results[results.length - 1]!, bytes };
    } catch (e) {
      // The first group that failed says why; a later one only failed with it.
      const settled = await Promise.allSettled(loads);
      const first = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      throw first ? first.reason : e;
    } finally {
      // The steps' images only carried layers that now belong to the image (or, after a failure,
      // to nothing): they go, whatever happened. Not with ctx.signal, which may be what ended the
      // load.
      if (steps.length > 0) {
        const signal = AbortSignal.timeout(10_000);
        await Promise.all(
          steps.map((id) =>
            client.removeImage(id, signal).catch((e: unknown) => {
              ctx.log?.(`cannot remove the intermediate image ${id}: ${reason(e)}`);
            }),
          ),
        );
      }
    }
  }

  /**
   * The rendered image when the engine already has exactly it (same config digest, i.e. image ID)
   * under every requested tag, so that a re-load of an unchanged image sends nothing at all.
   */
  private unchanged(
    image: Image,
    name: string,
    tags: readonly string[],
    ids: ReadonlyMap<string, string>,
  ): Rendered | undefined {
    const digests = image.layers.map((l) => l.known);
    if (digests.some((d) => d === undefined)) return undefined;
    const rendered = renderImage(image, digests as LayerDigests[]);
    return tags.every((t) => ids.get(`${name}:${t}`) === rendered.config.digest) ? rendered : undefined;
  }

  /**
   * The longest prefix of the image's layers that an image in the engine shares: the previous image
   * under our tags, other tags of the same repository, and `cacheFrom`. Only layers whose digests
   * are already known (from the cache) can match; the first unknown one ends the prefix.
   */
  private sharedPrefix(
    image: Image,
    held: HeldImages,
    ctx: WriteContext,
  ): { length: number; from: string; ids: Map<string, string> } {
    let best = { length: 0, from: '' };
    const ids = new Map<string, string>();
    for (const [ref, found] of held.inspected) {
      if (!found) continue;
      ids.set(ref, found.id);
      let n = 0;
      while (
        n < image.layers.length &&
        n < found.layers.length &&
        image.layers[n]!.known?.diffId === found.layers[n]
      )
        n++;
      ctx.log?.(`${ref}: ${n} leading layer${n === 1 ? '' : 's'} shared`);
      if (n > best.length) best = { length: n, from: found.repoTags[0] ?? ref };
    }
    return { ...best, ids };
  }

  /** The images under our tags, the repository's newest other images and `cacheFrom`, inspected. */
  private async held(
    client: EngineClient,
    name: string,
    tags: readonly string[],
    ctx: WriteContext,
  ): Promise<Pick<HeldImages, 'inspected'>> {
    // Our tags and --cache-from are inspected while the repository's other images are listed.
    const inspect = (refs: Iterable<string>): Map<string, Promise<ImageInspect | undefined>> =>
      new Map([...refs].map((ref) => [ref, client.imageInspect(ref, ctx.signal)]));
    const named = inspect(new Set([...tags.map((t) => `${name}:${t}`), ...(this.opts.cacheFrom ?? [])]));
    for (const p of named.values()) p.catch(() => undefined); // awaited below, after the listing
    let siblings = new Map<string, Promise<ImageInspect | undefined>>();
    try {
      // Docker's reference filter matches the name as it shows it: docker.io/library/app is app.
      const listed = await client.listImages(familiarName(name), ctx.signal);
      listed.sort((a, b) => (b.Created ?? 0) - (a.Created ?? 0));
      siblings = inspect(
        listed
          .slice(0, MAX_SIBLINGS)
          .map((s) => s.Id)
          .filter((id) => !named.has(id)),
      );
    } catch (e) {
      ctx.log?.(`cannot list images of ${name}: ${reason(e)}`);
    }
    const all = [...named, ...siblings];
    const inspected = await Promise.all(all.map(([, p]) => p));
    return { inspected: new Map(all.map(([ref], i) => [ref, inspected[i]])) };
  }
}

interface HeldImages {
  readonly name: string;
  readonly tags: readonly string[];
  /** Not asked of Podman named as such. */
  readonly info: EngineInfo | undefined;
  readonly inspected: ReadonlyMap<string, ImageInspect | undefined>;
}

interface EngineView {
  readonly client: EngineClient;
  readonly version: EngineVersion;
  /** What the engine holds under the image's name (Docker only). */
  readonly held?: HeldImages;
}

/**
 * The image's layer blobs that Podman's storage holds: its loader reuses a stored layer with the
 * same uncompressed digest (a layer blob here) wherever it sits in its image, so every layer of the
 * images asked for counts, not a prefix.
 */
function podmanHeld(image: Image, held: HeldImages): Set<string> {
  const has = new Set([...held.inspected.values()].flatMap((i) => i?.layers ?? []));
  return new Set(image.layers.flatMap((l) => (l.known && has.has(l.known.digest) ? [l.known.digest] : [])));
}

function podmanIds(held: HeldImages): Map<string, string> {
  return new Map([...held.inspected].flatMap(([ref, i]) => (i ? [[ref, i.id] as const] : [])));
}

/** Aborted when `outer` is, but only until `sent` settles. */
function untilSent(outer: AbortSignal | undefined, sent: Promise<unknown>): AbortSignal | undefined {
  if (!outer) return undefined;
  const inner = new AbortController();
  let done = false;
  const onAbort = (): void => {
    if (!done) inner.abort(outer.reason);
  };
  sent.then(
    () => {
      done = true;
      outer.removeEventListener('abort', onAbort);
    },
    () => undefined,
  );
  if (outer.aborted) onAbort();
  else outer.addEventListener('abort', onAbort, { once: true });
  return inner.signal;
}

/** Counts each layer's bytes into `bytes` and reports them as progress events. */
function sentProgress(
  image: Image,
  bytes: number[],
  ctx: WriteContext,
): { onLayerBytes: (i: number, n: number) => void; onLayerDone: (i: number) => void } {
  const started = new Set<number>();
  return {
    onLayerBytes: (i, n) => {
      if (!started.has(i)) {
        started.add(i);
        ctx.onProgress?.({
          kind: 'layer-start',
          id: String(i),
          label: layerLabel(image.layers[i]!),
          total: image.layers[i]!.tarSize(),
        });
      }
      bytes[i]! += n;
      ctx.onProgress?.({ kind: 'layer-bytes', id: String(i), bytes: n });
    },
    onLayerDone: (i) => ctx.onProgress?.({ kind: 'layer-done', id: String(i), action: 'sent' }),
  };
}

/**
 * A load sends its layers as one archive below this many bytes, and as several above
 * (NIXOCI_LOAD_GROUP_BYTES overrides it: tests, tuning).
 */
const GROUPED_LOAD_BYTES = 128 << 20;

/** Label of the images a grouped load makes on the way (removed at its end). */
export const LOAD_STEP_LABEL = 'org.nixoci.load-step';

/**
 * The image of the first `end` layers, loaded as a step of a grouped load. Its label keeps its ID
 * apart from any real image's, so that removing it afterwards can never remove one, and, with the
 * load's `run` id, apart from the steps of other loads of the same image at the same time: a load
 * that removed the step another one had just made (same ID) would take the layers that load's next
 * archive names but does not carry ('layers/0-….tar: no such file or directory').
 */
function loadStep(image: Image, end: number, run: string): Image {
  return {
    ...image,
    layers: image.layers.slice(0, end),
    run: { ...image.run, labels: { ...image.run.labels, [LOAD_STEP_LABEL]: `${end} ${run}` } },
  };
}

/**
 * The layers [start, end) of each archive of a load. Docker's loader writes a whole archive to disk
 * before it imports the first layer, so the first group is small (a twelfth of the bytes: the
 * engine starts importing soon) and the next ones a sixth each: while the engine imports a group
 * the next one streams, and the import (the slower side, ~4× here) never waits. More and smaller
 * groups measured slower: each load has a cost of its own (docs/performance.md).
 */
export function loadGroups(
  sizes: readonly number[],
  prefix: number,
  minBytes = Number(process.env.NIXOCI_LOAD_GROUP_BYTES ?? GROUPED_LOAD_BYTES),
): [number, number][] {
  const total = sizes.reduce((a, b, i) => (i < prefix ? a : a + b), 0);
  if (!(total >= minBytes)) return [[prefix, sizes.length]];
  const groups: [number, number][] = [];
  let start = prefix;
  let acc = 0;
  let share = 1 / 12;
  const maxShare = 1 / 6;
  let left = total;
  for (let i = prefix; i < sizes.length - 1; i++) {
    acc += sizes[i]!;
    left -= sizes[i]!;
    // (a last group of a few bytes would cost a load of its own for nothing)
    if (acc >= share * total && left >= (share * total) / 2) {
      groups.push([start, i + 1]);
      start = i + 1;
      acc = 0;
      share = Math.min(share * 2, maxShare);
    }
  }
  groups.push([start, sizes.length]);
  return groups;
}

/** The store path name as a repository name: lower case, [a-z0-9._-], starting with a letter or digit. */
export function repositoryFromStorePath(p: StorePath): string {
  const n = storePathName(p)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .replace(/[^a-z0-9]+$/, '');
  return n || 'nixoci-image';
}

function pickImage(images: readonly Image[], engineArch: string | undefined, notes: string[]): Image {
  if (images.length === 0) throw new NixociError('INTERNAL', 'no image to load');
  if (images.length === 1) return images[0]!;
  const match = images.find((i) => i.platform.architecture === engineArch);
  if (!match) {
    throw new NixociError(
      'TARGET_INVALID',
      `the engine runs on ${engineArch ?? 'an unknown architecture'}, and no image was built for it`,
      {
        hint: 'an engine holds one platform per tag: pick the image to load with --arch amd64 or --arch arm64',
      },
    );
  }
  notes.push(`loaded linux/${match.platform.architecture} only: an engine holds one platform per tag`);
  return match;
}
