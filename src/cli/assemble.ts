import { existsSync } from 'node:fs';
import type { Closure } from '../closure/closure.js';
import { NixociError } from '../core/errors.js';
import {
  ANNOTATION_PREFIX,
  ARCHES,
  DEFAULT_CREATED,
  type Arch,
  type Image,
  type ImageAnnotations,
  type RunConfig,
} from '../image/image.js';
import type { ImageTarget, TargetResult, WriteContext } from '../image/target.js';
import { BlobCopies } from '../layer/blob-copy.js';
import { DigestCache, cacheDirOf } from '../layer/cache.js';
import { COMPRESSIONS, type Compression } from '../layer/compress.js';
import { LayerWorkerPool } from '../layer/worker-pool.js';
import { makeLayers, type Layer, type LayerProgress } from '../layer/layer.js';
import { DEFAULT_MAX_LAYERS, planLayers, type ExtraEntry, type LayerPlan } from '../layer/plan.js';
import type { ReadStats } from '../layer/tar-stream.js';
import { intFlag, usage } from './flags.js';
import { mergeEnv } from './customise.js';
import { archSuggestion } from './suggest.js';

/** Image flags after validation. */
export interface ImageSettings {
  readonly arches: readonly Arch[];
  readonly maxLayers: number;
  /** The user's choice; undefined means the target's default (none locally, gzip for registries). */
  readonly compression: Compression | undefined;
  readonly level: number | undefined;
  readonly run: Omit<RunConfig, 'env'> & { readonly env: readonly string[] };
  readonly created: string;
  readonly annotations: ImageAnnotations;
  readonly cache: DigestCache;
  readonly keepSetuid: boolean;
  readonly extra?: readonly ExtraEntry[];
  /** Per-architecture customisation layer and full Env (src/cli/customise.ts); replaces `extra`. */
  readonly perArch?: ReadonlyMap<Arch, ArchCustomisation>;
}

export interface ArchCustomisation {
  readonly extra: readonly ExtraEntry[];
  /** The image's whole Env for this architecture (PATH included). */
  readonly env: readonly string[];
  /** The Cmd when none was given: the shell the layer links (`["/bin/sh"]`). */
  readonly cmd?: readonly string[];
}

export interface ImageFlagValues {
  arch?: string;
  'max-layers'?: string;
  compression?: string;
  'compression-level'?: string;
  entrypoint?: string;
  cmd?: string;
  env?: string[];
  workdir?: string;
  user?: string;
  expose?: string[];
  label?: string[];
  volume?: string[];
  'stop-signal'?: string;
  annotation?: string[];
  created?: string;
  'cache-dir'?: string;
  'no-cache'?: boolean;
  'keep-setuid'?: boolean;
}

export function imageSettings(command: string, v: ImageFlagValues): ImageSettings {
  const arches = (v.arch ?? 'amd64').split(',').map((a) => a.trim());
  for (const a of arches) {
    if (!(ARCHES as readonly string[]).includes(a))
      throw new NixociError(
        'USAGE',
        `nixoci ${command}: --arch ${v.arch ?? ''}: ${a === '' ? 'an empty item' : a} is not an architecture; expected amd64, arm64 or amd64,arm64`,
        { hint: archSuggestion(v.arch ?? '') ?? `run \`nixoci ${command} --help\` for usage` },
      );
  }
  if (new Set(arches).size !== arches.length) throw usage(command, '--arch lists an architecture twice');
  const compression = v.compression;
  if (compression !== undefined && !(COMPRESSIONS as readonly string[]).includes(compression)) {
    throw usage(command, `--compression ${compression}: expected none, gzip or zstd`);
  }
  const level = intFlag(
    command,
    'compression-level',
    v['compression-level'],
    1,
    compression === 'gzip' ? 9 : 19,
  );
  if (v.workdir !== undefined && !v.workdir.startsWith('/'))
    throw usage(
      command,
      `--workdir ${v.workdir}: must be an absolute path (the runtime refuses a relative one)`,
    );
  if (!isRfc3339(v.created ?? DEFAULT_CREATED)) {
    throw usage(command, `--created ${v.created}: expected an RFC 3339 time such as 2024-01-31T12:00:00Z`);
  }
  // RFC 3339 allows a lower-case t and z; Go's time.RFC3339 (Docker, containerd, skopeo, umoci)
  // does not, and refuses the whole config.
  const created = (v.created ?? DEFAULT_CREATED).toUpperCase();
  const env = (v.env ?? []).map((e) => {
    if (!/^[^=]+=/.test(e)) throw usage(command, `--env ${e}: expected KEY=VALUE`);
    return e;
  });
  const labels: Record<string, string> = {};
  for (const l of v.label ?? []) {
    const i = l.indexOf('=');
    if (i <= 0) throw usage(command, `--label ${l}: expected KEY=VALUE`);
    labels[l.slice(0, i)] = l.slice(i + 1);
  }
  const exposedPorts = (v.expose ?? []).map((p) => {
    // 1–65535 as written (no leading zero); the protocol in any case, stored lower case as Docker does
    const m = /^([1-9]\d{0,4})(?:\/(tcp|udp|sctp))?$/i.exec(p);
    if (!m || Number(m[1]) > 65535)
      throw usage(command, `--expose ${p}: expected PORT (1–65535) or PORT/tcp|udp|sctp`);
    return `${m[1]}/${(m[2] ?? 'tcp').toLowerCase()}`;
  });
  const volumes = (v.volume ?? []).map((d) => volumeFlag(command, d));
  return {
    arches: arches as Arch[],
    maxLayers: intFlag(command, 'max-layers', v['max-layers'], 1, 125) ?? DEFAULT_MAX_LAYERS,
    compression: compression as Compression | undefined,
    level,
    run: {
      entrypoint: v.entrypoint !== undefined ? parseCommand(command, 'entrypoint', v.entrypoint) : undefined,
      cmd: v.cmd !== undefined ? parseCommand(command, 'cmd', v.cmd) : undefined,
      env,
      workdir: v.workdir,
      user: v.user,
      exposedPorts,
      labels,
      ...(volumes.length > 0 ? { volumes: [...new Set(volumes)] } : {}),
      ...(v['stop-signal'] !== undefined ? { stopSignal: stopSignalFlag(command, v['stop-signal']) } : {}),
    },
    created,
    annotations: annotationFlags(command, v.annotation ?? [], arches.length),
    cache: new DigestCache(cacheDirOf(v)),
    keepSetuid: v['keep-setuid'] ?? false,
  };
}

/**
 * --compression gzip|zstd where every destination takes uncompressed layers only is a usage error.
 * gzip has levels 1–9 only: a higher --compression-level (accepted for zstd) is a usage error as
 * soon as a destination would be gzipped, which a registry is by default when --compression is not
 * given. Checked before anything is written, not left to zlib in the middle of a push.
 */
export function checkCompressionLevel(
  command: string,
  settings: ImageSettings,
  targets: readonly { target: ImageTarget; defaultCompression: Compression }[],
): void {
  const level = settings.level;
  const compression = (t: (typeof targets)[number]): Compression =>
    t.target.requiredCompression ?? settings.compression ?? t.defaultCompression;
  // Engines and docker-archives take uncompressed layers whatever --compression says: a gzip or zstd
  // asked for where no destination can have it would be dropped without a word.
  const asked = settings.compression;
  if (asked !== undefined && asked !== 'none' && targets.length > 0) {
    if (targets.every((t) => compression(t) !== asked))
      throw usage(
        command,
        `--compression ${asked}: ${targets[0]!.target.description} takes uncompressed layers only (an engine or a docker-archive); leave --compression out`,
      );
  }
  if (level !== undefined && settings.compression === 'none')
    throw usage(
      command,
      `--compression-level ${level}: --compression none compresses nothing (give gzip or zstd)`,
    );
  if (level === undefined) return;
  // no --compression, and every destination's default is none (oci:, docker-archive:, engines): the
  // level was taken and nothing was compressed
  if (targets.length > 0 && targets.every((t) => compression(t) === 'none'))
    throw usage(
      command,
      `--compression-level ${level}: ${targets[0]!.target.description} gets uncompressed layers (give --compression gzip or zstd)`,
    );
  if (level <= 9) return;
  for (const t of targets) {
    if (compression(t) !== 'gzip') continue;
    throw usage(
      command,
      `--compression-level ${level}: gzip takes 1–9, and ${t.target.description} gets gzip layers (give --compression zstd for levels up to 19)`,
    );
  }
}

/** `--entrypoint` / `--cmd`: a JSON array (`'["/bin/app","--flag"]'`) or a plain string split on spaces. */
function parseCommand(command: string, name: string, v: string): string[] {
  if (v.trim().startsWith('[')) {
    try {
      const a: unknown = JSON.parse(v);
      if (Array.isArray(a) && a.every((x) => typeof x === 'string')) {
        // a NUL cannot be in a program's argument list: the image would be written and never run
        if (a.some((x) => x.includes('\0')))
          throw usage(
            command,
            `--${name} ${v}: a word holds a NUL character (\\u0000), which no program can be given`,
          );
        return a;
      }
    } catch (e) {
      if (e instanceof NixociError) throw e;
      // fall through to the error below
    }
    throw usage(command, `--${name} ${v}: not a JSON array of strings`);
  }
  // Split on spaces only: quotes would end up inside the words (`'echo`, `there'`), an image that
  // fails at run time. A word with spaces in it needs the JSON form.
  if (/["'\\]/.test(v))
    throw usage(
      command,
      `--${name} ${v}: quotes and backslashes are not parsed in the space-separated form; give a JSON array, e.g. --${name} '["sh","-c","echo hi"]'`,
    );
  return v.split(' ').filter((s) => s.length > 0);
}

/**
 * `--volume DIR`: a mount point the runtime makes an anonymous volume at, absolute as Docker and
 * Podman require at run time (they refuse a relative one, and `/`, only when the container starts).
 * A bind mount (`SRC:DEST`) is the runtime's to give (`docker run -v`), not the image's.
 */
function volumeFlag(command: string, d: string): string {
  if (d.includes(':'))
    throw usage(
      command,
      `--volume ${d}: an image declares a mount point only (e.g. --volume /data); a bind mount SRC:DEST is given at run time (docker run -v)`,
    );
  if (!d.startsWith('/') || d.includes('\0'))
    throw usage(command, `--volume ${JSON.stringify(d)}: must be an absolute path (e.g. /data)`);
  if (/^\/+$/.test(d)) throw usage(command, `--volume ${d}: the root directory cannot be a volume`);
  return d;
}

/**
 * `--annotation [manifest:|index:]KEY=VALUE`, as `docker buildx --annotation` writes them: with
 * `manifest:` on each platform's manifest, with `index:` on the index of a multi-platform image,
 * and without a prefix on both (GHCR reads `org.opencontainers.image.source`, `.description` from
 * the one the tag points at: the manifest of a single platform, the index of several). nixoci's
 * own `dev.nixoci.` keys are refused: a later run reads them back.
 */
function annotationFlags(command: string, given: readonly string[], arches: number): ImageAnnotations {
  const manifest: Record<string, string> = {};
  const index: Record<string, string> = {};
  for (const a of given) {
    const eq = a.indexOf('=');
    const colon = a.indexOf(':');
    const typed = colon >= 0 && (eq < 0 || colon < eq);
    const type = typed ? a.slice(0, colon) : '';
    const kv = typed ? a.slice(colon + 1) : a;
    const i = kv.indexOf('=');
    if (typed && type !== 'manifest' && type !== 'index')
      throw usage(
        command,
        `--annotation ${a}: ${JSON.stringify(type)} is not where an annotation goes; prefix manifest: or index:, or none for both`,
      );
    if (i <= 0) throw usage(command, `--annotation ${a}: expected [manifest:|index:]KEY=VALUE`);
    const key = kv.slice(0, i);
    if (key.startsWith(ANNOTATION_PREFIX))
      throw usage(command, `--annotation ${a}: keys starting with ${ANNOTATION_PREFIX} are nixoci's own`);
    if (type === 'index' && arches === 1)
      throw usage(
        command,
        `--annotation ${a}: one --arch makes no index (the tag names the manifest); use manifest: or no prefix`,
      );
    if (type !== 'index') manifest[key] = kv.slice(i + 1);
    if (type !== 'manifest' && arches > 1) index[key] = kv.slice(i + 1);
  }
  return { manifest, index };
}

/** Linux signal names as Docker's `STOPSIGNAL` and `docker stop --signal` accept them (without SIG). */
const SIGNALS: ReadonlySet<string> = new Set([
  ...'ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX'.split(
    ' ',
  ),
  ...Array.from({ length: 15 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 14 }, (_, i) => `RTMAX-${i + 1}`),
]);

/**
 * `--stop-signal`: a signal name with or without SIG, in any case (written SIGNAME, so that
 * `term` and `SIGTERM` give one digest), or a number 1–64, as Docker validates `STOPSIGNAL`. An
 * unknown one would be written and refused by `docker stop` alone, long after the push.
 */
function stopSignalFlag(command: string, s: string): string {
  if (/^\d+$/.test(s)) {
    if (Number(s) >= 1 && Number(s) <= 64) return String(Number(s));
  } else {
    const name = s.toUpperCase().replace(/^SIG/, '');
    if (SIGNALS.has(name)) return `SIG${name}`;
  }
  throw usage(
    command,
    `--stop-signal ${JSON.stringify(s)}: not a signal; expected a name (SIGTERM, TERM, SIGRTMIN+3) or a number 1–64`,
  );
}

/** PATH defaults to the `bin` directories of the closure's top-level paths. */
function envFor(closure: Closure, env: readonly string[]): string[] {
  if (env.some((e) => e.startsWith('PATH='))) return mergeEnv(env);
  const bins = closure.roots.map((r) => `${r}/bin`).filter((b) => existsSync(b));
  return mergeEnv(bins.length > 0 ? [`PATH=${bins.join(':')}`, ...env] : env);
}

/**
 * Everything needed to write the same images to several targets: one plan per architecture, and
 * layers made once per compression so that digests computed for one target serve the next.
 */
export class Assembly {
  readonly stats: ReadStats = { bytesRead: 0 };
  readonly plans: ReadonlyMap<Arch, LayerPlan>;
  private readonly layers = new Map<string, Layer[]>();
  /** Worker threads for big layers, shared by every target of this run. */
  private readonly pool = LayerWorkerPool.create();
  /** Blobs a target wrote to a file, read back by a later target instead of the store. */
  private readonly copies = new BlobCopies();

  constructor(
    readonly closures: ReadonlyMap<Arch, Closure>,
    readonly settings: ImageSettings,
    private readonly onLayerProgress?: (e: LayerProgress) => void,
  ) {
    const plans = new Map<Arch, LayerPlan>();
    for (const [arch, c] of closures) {
      plans.set(
        arch,
        planLayers(c, {
          maxLayers: settings.maxLayers,
          extra: settings.perArch?.get(arch)?.extra ?? settings.extra,
        }),
      );
    }
    this.plans = plans;
  }

  /** Number of layers over all architectures (for progress). */
  get layerCount(): number {
    let n = 0;
    for (const p of this.plans.values()) n += p.layers.length;
    return n;
  }

  imagesFor(target: ImageTarget, defaultCompression: Compression): Image[] {
    const compression = target.requiredCompression ?? this.settings.compression ?? defaultCompression;
    return this.settings.arches.map((arch) => {
      const closure = this.closures.get(arch)!;
      const key = `${arch}/${compression}`;
      let layers = this.layers.get(key);
      if (!layers) {
        layers = makeLayers(this.plans.get(arch)!, {
          compression,
          level: this.settings.level,
          cache: this.settings.cache,
          stats: this.stats,
          storeDir: closure.storeDir,
          keepSetuid: this.settings.keepSetuid,
          onProgress: this.onLayerProgress,
          pool: this.pool,
          copies: this.copies,
        });
        this.layers.set(key, layers);
      }
      return {
        platform: { architecture: arch, os: 'linux', ...(arch === 'arm64' ? { variant: 'v8' } : {}) },
        closure,
        layers,
        run: {
          ...this.settings.run,
          cmd: this.settings.run.cmd ?? this.settings.perArch?.get(arch)?.cmd,
          env: this.settings.perArch?.get(arch)?.env ?? envFor(closure, this.settings.run.env),
        },
        created: this.settings.created,
        annotations: this.settings.annotations,
      };
    });
  }

  /**
   * Writes the targets one after the other (a layer made for one is known to the next, which reads
   * it back from the file the earlier one wrote, if any, else tars it again); `onWritten` hears of each as it is done, before a later one may fail.
   */
  async writeAll(
    targets: readonly { target: ImageTarget; defaultCompression: Compression }[],
    ctx: WriteContext,
    onWritten?: (r: TargetResult) => void,
  ): Promise<TargetResult[]> {
    const results: TargetResult[] = [];
    for (const t of targets) {
      if (ctx.signal?.aborted) throw new NixociError('ABORTED', 'interrupted');
      const r = await t.target.write(this.imagesFor(t.target, t.defaultCompression), ctx);
      results.push(r);
      onWritten?.(r);
    }
    return results;
  }
}

/**
 * An RFC 3339 date-time as image configs hold it (Go's time.RFC3339Nano): a real calendar date, a
 * time, and a `Z` or ±hh:mm offset. `Date.parse` alone takes 2024-02-30 (as March 1st) and a time
 * without an offset, which the Docker engine then refuses to load.
 */
export function isRfc3339(s: string): boolean {
  const m = /^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d{1,9})?([Zz]|[+-](\d\d):(\d\d))$/.exec(s);
  if (!m) return false;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const days = new Date(Date.UTC(y, mo, 0)).getUTCDate(); // days in month `mo` of year `y`
  const offset = m[9] === undefined || (Number(m[9]) <= 23 && Number(m[10]) <= 59);
  return mo >= 1 && mo <= 12 && d >= 1 && d <= days && h <= 23 && mi <= 59 && sec <= 59 && offset;
}
