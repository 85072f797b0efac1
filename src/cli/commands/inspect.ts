import type { Closure } from '../../closure/closure.js';
import { NixociError } from '../../core/errors.js';
import type { StorePath } from '../../closure/store-path.js';
import type { Arch } from '../../image/image.js';
import { DigestCache } from '../../layer/cache.js';
import { defaultLevel } from '../../layer/compress.js';
import type { LayerPlan } from '../../layer/plan.js';
import { imageSettings, Assembly, type ImageFlagValues } from '../assemble.js';
import { applyCustomisation, type CustomiseFlagValues } from '../customise.js';
import { imageOptions, outputOptions, parseFlags, sourceOptions, type OptionSpec } from '../flags.js';
import { checkGraphOut, writeGraph } from '../graph-out.js';
import { HELP_IMAGE_FLAGS, HELP_OUTPUT_FLAGS, HELP_SOURCE_FLAGS } from '../help.js';
import {
  HELP_IMAGE_READ_FLAGS,
  HELP_IMAGE_REFS,
  IMAGE_TRANSPORTS,
  imageReadOptions,
  isImageRef,
  refuseUnusedReadFlags,
} from '../image-ref.js';
import { humanSize, JSON_SCHEMA_VERSION, type Io } from '../output.js';
import { resolveSource, type ResolvedSource, type SourceFlags } from '../source.js';

export const INSPECT_HELP = `Usage: nixoci inspect IMAGE [flags]
       nixoci inspect [SOURCE] [flags]

With IMAGE, read an existing image and print its digests, platform (of an index: also every
platform it lists), run-time settings (entrypoint, cmd, env, user, workdir, ports, volumes, stop
signal, labels; all of them with --json) and the annotations of its manifest and index, then one
row per layer: index, size, digest and the store paths it holds (from nixoci's layer annotations,
else from the config's history; a layer of many paths shows four, --json all), then the totals.
Only manifests and the config are read (an engine's image archive streams by and only its JSON is
kept); never a layer's content.

${HELP_IMAGE_REFS}
${HELP_IMAGE_READ_FLAGS}
With a SOURCE, print the layer plan of a closure: one row per layer with its store paths, NAR size
and the digest cached for it (for the compression given, default none). Reads no file contents.
For a devbox project, first one row per package: its store paths, their layer and NAR size.

  --graph-out FILE.dot|FILE.svg write the closure graph (Graphviz dot; svg needs \`dot\` from
                                graphviz); with several --arch, FILE gets the arch before its suffix

${HELP_SOURCE_FLAGS}
${HELP_IMAGE_FLAGS}
${HELP_OUTPUT_FLAGS}
Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
`;

/** Every flag of `inspect`, both forms (an image, or a closure source). */
export const inspectOptions = {
  ...sourceOptions,
  ...imageOptions,
  ...outputOptions,
  ...imageReadOptions,
  'graph-out': { type: 'string' },
} as const satisfies OptionSpec;

interface PackageRow {
  readonly package: string;
  readonly version: string | null;
  readonly from: 'lock' | 'build';
  readonly storePaths: readonly { path: StorePath; layer: number | null; narSize: number }[];
}

export async function inspectCommand(argv: readonly string[], io: Io, signal?: AbortSignal): Promise<number> {
  const { values, positionals } = parseFlags('inspect', argv, inspectOptions);
  if (values.help) {
    io.out(INSPECT_HELP);
    return 0;
  }
  if (positionals.some(isImageRef)) {
    const { inspectImage } = await import('./inspect-image.js');
    return inspectImage(values, positionals, io, signal);
  }
  const stray = positionals.find((p) => !p.startsWith('/'));
  if (stray !== undefined)
    throw new NixociError('USAGE', `nixoci inspect: unexpected argument ${JSON.stringify(stray)}`, {
      hint: `an image is named with its transport (${IMAGE_TRANSPORTS}), a store path by its /nix/store path`,
    });
  refuseUnusedReadFlags('inspect', [], values);
  if (values['graph-out'] !== undefined) checkGraphOut('inspect', values['graph-out']);
  const log = (l: string): void => {
    if (values.verbose) io.err(l + '\n');
  };
  const base = imageSettings('inspect', values as ImageFlagValues);
  const source = await resolveSource('inspect', values as SourceFlags, positionals, base.arches, log, signal);
  if (!values.quiet) for (const w of source.warnings ?? []) io.err(`nixoci: warning: ${w}\n`);
  if (!values.quiet && !values.verbose) for (const w of source.nixWarnings ?? []) io.err(`${w}\n`);
  const settings = applyCustomisation('inspect', base, source, values as CustomiseFlagValues);
  const assembly = new Assembly(source.closures, settings);
  if (values['graph-out'] !== undefined) await writeGraph(values['graph-out'], source.closures, log);
  const compression = settings.compression ?? 'none';
  const level = settings.level ?? defaultLevel(compression);
  const report = [...assembly.plans].map(([arch, plan]) => ({
    architecture: arch,
    planVersion: plan.version,
    ...(source.devbox
      ? { packages: packageRows(source, arch, plan), excluded: excludedOf(source, arch) }
      : {}),
    layers: plan.layers.map((l, i) => {
      const cached = settings.cache.get(DigestCache.key(l, compression, level, settings.keepSetuid));
      return {
        index: i,
        storePaths: l.storePaths,
        narHashes: l.narHashes,
        narSize: l.narSize,
        cached: cached ?? null,
      };
    }),
  }));
  if (values.json) {
    io.out(
      JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, command: 'inspect', compression, plans: report }) +
        '\n',
    );
    return 0;
  }
  if (values.quiet) return 0;
  for (const r of report) {
    if (r.packages) printPackages(io, r.architecture, r.packages, r.excluded ?? []);
    io.out(`${r.architecture}: ${r.layers.length} layer${r.layers.length === 1 ? '' : 's'}\n`);
    io.out(`${'LAYER'.padEnd(6)}${'SIZE'.padStart(11)}  ${'CACHED DIGEST'.padEnd(19)}  STORE PATHS\n`);
    for (const l of r.layers) {
      const digest = l.cached ? l.cached.digest.slice(0, 19) : '-';
      const paths = l.storePaths.length > 0 ? l.storePaths.join(' ') : '(customisation layer)';
      io.out(
        `${String(l.index).padEnd(6)}${humanSize(l.narSize).padStart(11)}  ${digest.padEnd(19)}  ${paths}\n`,
      );
    }
  }
  return 0;
}

function packageRows(source: ResolvedSource, arch: Arch, plan: LayerPlan): PackageRow[] {
  const d = source.devbox!.perArch.get(arch)!;
  const layerOf = new Map<StorePath, number>();
  plan.layers.forEach((l, i) => l.storePaths.forEach((p) => layerOf.set(p, i)));
  return d.packages.map((p) => ({
    package: p.spec,
    version: p.version ?? null,
    from: p.from,
    storePaths: p.storePaths.map((path) => ({
      path,
      layer: layerOf.get(path) ?? null,
      narSize: narSizeOf(d.closure, path),
    })),
  }));
}

const excludedOf = (source: ResolvedSource, arch: Arch): readonly string[] =>
  source.devbox!.perArch.get(arch)!.excluded;

const narSizeOf = (c: Closure, p: StorePath): number => c.paths.get(p)?.narSize ?? 0;

function printPackages(io: Io, arch: Arch, rows: readonly PackageRow[], excluded: readonly string[]): void {
  io.out(`${arch}: ${rows.length} devbox package${rows.length === 1 ? '' : 's'}\n`);
  // columns as wide as their longest entry (flake references can be long), plus two spaces
  const pw = Math.max(22, ...rows.map((r) => r.package.length), ...excluded.map((e) => e.length)) + 2;
  const vw = Math.max(10, ...rows.map((r) => (r.version ?? '-').length)) + 2;
  io.out(
    `${'PACKAGE'.padEnd(pw)}${'VERSION'.padEnd(vw)}${'LAYER'.padEnd(7)}${'SIZE'.padStart(11)}  STORE PATH\n`,
  );
  for (const r of rows) {
    r.storePaths.forEach((s, i) => {
      const name = i === 0 ? r.package : '';
      const version = i === 0 ? (r.version ?? '-') : '';
      const layer = s.layer === null ? '-' : String(s.layer);
      io.out(
        `${name.padEnd(pw)}${version.padEnd(vw)}${layer.padEnd(7)}${humanSize(s.narSize).padStart(11)}  ${s.path}\n`,
      );
    });
  }
  for (const e of excluded) io.out(`${e.padEnd(pw)}(excluded on this platform)\n`);
  io.out('\n');
}
