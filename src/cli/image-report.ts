import { platformName, type ImageLayerInfo, type ImageSource } from '../registry/read/image-source.js';
import { escapeControls } from '../core/escape-controls.js';
import { isNixociError, NixociError } from '../core/errors.js';
import { humanSize, type Io } from './output.js';

/** One image as `inspect IMAGE --json` and `diff --json` report it (schema: report-schema.ts). */
export interface ImageJson {
  readonly reference: string;
  readonly manifestDigest: string | null;
  readonly indexDigest: string | null;
  readonly mediaType: string | null;
  readonly configDigest: string;
  readonly architecture: string | null;
  readonly os: string | null;
  readonly variant: string | null;
  readonly created: string | null;
  /** The config's run-time `config` (Entrypoint, Env, Volumes, StopSignal, …) as written, or null. */
  readonly runConfig: Readonly<Record<string, unknown>> | null;
  readonly annotations: Readonly<Record<string, string>>;
  readonly indexAnnotations: Readonly<Record<string, string>> | null;
  /** The platforms of the index the reference named (`linux/arm64/v8`), or null. */
  readonly indexPlatforms: readonly string[] | null;
  readonly layerCount: number;
  readonly totalSize: number;
  readonly layers: readonly ImageLayerInfo[];
}

export async function readImage(source: ImageSource, signal?: AbortSignal): Promise<ImageJson> {
  const [manifest, config, layers] = await Promise.all([
    source.manifest(signal),
    source.config(signal),
    source.layers(signal),
  ]).catch((e: unknown) => {
    throw readError(source.description, e);
  });
  return {
    reference: source.description,
    manifestDigest: manifest.digest,
    indexDigest: manifest.indexDigest,
    mediaType: manifest.mediaType,
    configDigest: manifest.configDigest,
    architecture: config.architecture ?? null,
    os: config.os ?? null,
    variant: config.variant ?? null,
    created: config.created ?? null,
    runConfig: config.config ?? null,
    annotations: manifest.annotations,
    indexAnnotations: manifest.indexAnnotations,
    indexPlatforms: manifest.indexPlatforms,
    layerCount: layers.length,
    totalSize: layers.reduce((n, l) => n + l.size, 0),
    layers,
  };
}

/**
 * Every failure to read an image begins with `read IMAGE:` (of two in a diff, which one failed):
 * the sources say so themselves, but a registry or engine that cannot be reached at all is told by
 * the transport, which knows no image.
 */
function readError(description: string, e: unknown): unknown {
  if (!isNixociError(e) || e.code === 'ABORTED' || e.message.startsWith(`read ${description}`)) return e;
  return new NixociError(e.code, `read ${description}: ${e.message}`, {
    ...(e.hint !== undefined ? { hint: e.hint } : {}),
    cause: e,
  });
}

/** `1 layer`, `2 layers`. */
export const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`;

export const shortDigest = (d: string | null): string => (d ? d.slice(0, 19) : '-');

/**
 * Text from an image (its history, annotations, platform) for one table cell: line breaks and tabs
 * become spaces and other control characters are escaped, so that an image cannot break the table
 * or send escape sequences to the terminal.
 */
export function cell(s: string): string {
  return escapeControls(s, (c) => (c === '\n' || c === '\r' || c === '\t' ? ' ' : undefined));
}

/** Store paths shown in a layer's row; a bucket of hundreds is cut (all of them are in --json). */
const SHOWN_PATHS = 4;

/** A layer's store paths, or (without any) what its history says it is. */
export function pathsLabel(l: ImageLayerInfo): string {
  const n = l.storePaths.length;
  if (n > SHOWN_PATHS + 1)
    return `${cell(l.storePaths.slice(0, SHOWN_PATHS).join(' '))} … +${n - SHOWN_PATHS} more (--json lists all)`;
  if (n > 0) return cell(l.storePaths.join(' '));
  return l.createdBy ? `(${cell(l.createdBy).slice(0, 60)})` : '(no store paths)';
}

/** A layer's compression, by its media type (`…tar+gzip`, Docker's `…tar.gzip`, `…tar+zstd`). */
export const compressionOf = (mediaType: string): 'gzip' | 'zstd' | 'none' =>
  /gzip$/.test(mediaType) ? 'gzip' : /zstd$/.test(mediaType) ? 'zstd' : 'none';

/**
 * A size of layers and what it counts: `2.1 MiB compressed (gzip)`, `4.0 MiB uncompressed`, or
 * `partly compressed (gzip)` when some are stored as plain tars; a registry's and an archive's
 * sizes of one image differ by this much, so a figure without it misleads.
 */
export function sizeOf(layers: readonly { size: number; mediaType: string }[]): string {
  const size = humanSize(layers.reduce((n, l) => n + l.size, 0));
  const kinds = [...new Set(layers.map((l) => compressionOf(l.mediaType)))].sort();
  const packed = kinds.filter((k) => k !== 'none');
  if (kinds.length === 0) return size;
  if (packed.length === 0) return `${size} uncompressed`;
  return `${size} ${packed.length < kinds.length ? 'partly ' : ''}compressed (${packed.join(', ')})`;
}

/** OS/ARCH[/VARIANT] as an index names it (linux/arm64/v8), `?` for what the config leaves out. */
export const platformOf = (img: ImageJson): string =>
  platformName({
    os: img.os ?? '?',
    architecture: img.architecture ?? '?',
    variant: img.variant ?? undefined,
  });

const isEmpty = (v: unknown): boolean =>
  v === undefined ||
  v === null ||
  v === '' ||
  (Array.isArray(v) ? v.length === 0 : typeof v === 'object' && Object.keys(v).length === 0);

/**
 * The run-time settings, a line each, in the order a user reads them: what runs, in what
 * environment, as whom, where, then what the runtime sets up around it. Env and Labels take a line
 * per entry (sorted labels; Env as written, since a later entry may use an earlier one).
 */
function runConfigLines(c: Readonly<Record<string, unknown>>): [string, string][] {
  const text = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
  const keys = (v: unknown): string => (v && typeof v === 'object' ? Object.keys(v).join(', ') : text(v));
  const each = (v: unknown): string[] => (Array.isArray(v) ? v.map(text) : [text(v)]);
  const pairs = (v: unknown): string[] =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.entries(v)
          .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
          .map(([k, e]) => `${k}=${text(e)}`)
      : [text(v)];
  const fields: [string, string, (v: unknown) => string | string[]][] = [
    ['Entrypoint', 'entrypoint', JSON.stringify],
    ['Cmd', 'cmd', JSON.stringify],
    ['Env', 'env', each],
    ['User', 'user', text],
    ['WorkingDir', 'workdir', text],
    ['ExposedPorts', 'ports', keys],
    ['Volumes', 'volumes', keys],
    ['StopSignal', 'stopsignal', text],
    ['Labels', 'label', pairs],
  ];
  return (
    fields
      // Docker writes "" for an unset User or WorkingDir, and {} or [] for some empty sets: not shown
      .filter(([k]) => !isEmpty(c[k]))
      .flatMap(([k, name, f]) => [f(c[k])].flat().map((v): [string, string] => [name, v]))
  );
}

export function printImage(io: Io, img: ImageJson): void {
  // one column for every label, the longest (entrypoint, stopsignal) included
  const line = (name: string, value: string): void => io.out(cell(`  ${name.padEnd(11)}${value}`) + '\n');
  io.out(`${cell(img.reference)}\n`);
  if (img.indexDigest) line('index', img.indexDigest);
  // what else the index holds, for --arch: the platform line below says which one was read
  if (img.indexPlatforms) line('platforms', img.indexPlatforms.join(', '));
  if (img.manifestDigest) line('manifest', img.manifestDigest);
  line('config', img.configDigest);
  line('platform', `${platformOf(img)}${img.created ? `, created ${img.created}` : ''}`);
  for (const [name, value] of runConfigLines(img.runConfig ?? {})) line(name, value);
  for (const [k, v] of Object.entries(img.indexAnnotations ?? {}))
    io.out(cell(`  index annotation ${k}=${v}`) + '\n');
  for (const [k, v] of Object.entries(img.annotations)) io.out(cell(`  annotation ${k}=${v}`) + '\n');
  io.out(`${'LAYER'.padEnd(6)}${'SIZE'.padStart(11)}  ${'DIGEST'.padEnd(19)}  STORE PATHS\n`);
  for (const l of img.layers) {
    io.out(
      `${String(l.index).padEnd(6)}${humanSize(l.size).padStart(11)}  ${shortDigest(l.digest ?? l.diffId).padEnd(19)}  ${pathsLabel(l)}\n`,
    );
  }
  const from = [...new Set(img.layers.map((l) => l.storePathsFrom))].join(', ');
  const paths = img.layers.reduce((n, l) => n + l.storePaths.length, 0);
  io.out(
    `total: ${count(img.layerCount, 'layer')}, ${sizeOf(img.layers)}, ${count(paths, 'store path')} (from ${from || 'nothing'})\n`,
  );
}
