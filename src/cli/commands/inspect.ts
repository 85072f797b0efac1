import { DigestCache } from '../../layer/cache.js';
import { defaultLevel } from '../../layer/compress.js';
import { imageSettings, Assembly, type ImageFlagValues } from '../assemble.js';
import { imageOptions, outputOptions, parseFlags, sourceOptions } from '../flags.js';
import { HELP_IMAGE_FLAGS, HELP_OUTPUT_FLAGS, HELP_SOURCE_FLAGS } from '../help.js';
import { humanSize, JSON_SCHEMA_VERSION, type Io } from '../output.js';
import { resolveClosures, type SourceFlags } from '../source.js';

export const INSPECT_HELP = `Usage: nixoci inspect [SOURCE] [flags]

Print the layer plan of a closure: one row per layer with its store paths, NAR size and the
digest cached for it (for the compression given, default none). Reads no file contents.

${HELP_SOURCE_FLAGS}
${HELP_IMAGE_FLAGS}
${HELP_OUTPUT_FLAGS}`;

export async function inspectCommand(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags('inspect', argv, {
    ...sourceOptions,
    ...imageOptions,
    ...outputOptions,
  });
  if (values.help) {
    io.out(INSPECT_HELP);
    return 0;
  }
  const log = (l: string): void => {
    if (values.verbose) io.err(l + '\n');
  };
  const settings = imageSettings('inspect', values as ImageFlagValues);
  const closures = await resolveClosures('inspect', values as SourceFlags, positionals, settings.arches, log);
  const assembly = new Assembly(closures, settings);
  const compression = settings.compression ?? 'none';
  const level = settings.level ?? defaultLevel(compression);
  const report = [...assembly.plans].map(([arch, plan]) => ({
    architecture: arch,
    planVersion: plan.version,
    layers: plan.layers.map((l, i) => {
      const cached = settings.cache.get(DigestCache.key(l, compression, level));
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
  for (const r of report) {
    io.out(`${r.architecture}: ${r.layers.length} layers\n`);
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
