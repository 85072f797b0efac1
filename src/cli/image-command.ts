import { checkCompressionLevel, imageSettings, Assembly, type ImageFlagValues } from './assemble.js';
import { imageOptions, outputOptions, parseFlags, sourceOptions, usage, type OptionSpec } from './flags.js';
import type { Progress } from './progress.js';
import { StatusLines, statusInterval } from './status-lines.js';
import { jsonReport, summary, type Io } from './output.js';
import { applyCustomisation, type CustomiseFlagValues } from './customise.js';
import { resolveSource, type SourceFlags } from './source.js';
import type { TargetChoice, TargetFlags } from './targets.js';
import type { TargetResult } from '../image/target.js';
import { shellQuote } from '../core/shell-quote.js';
import { checkResultFiles, resultFileOptions, writeResultFiles } from './result-files.js';

export interface ImageCommandSpec {
  readonly name: string;
  readonly help: string;
  /** Flags of this command beyond source, image and output flags. */
  readonly options: OptionSpec;
  /** Turns the parsed flags and the positionals that are not store paths into targets. */
  readonly targets: (values: TargetFlags, positionals: readonly string[]) => TargetChoice[];
}

/** Every flag of an image command: source, image and output flags plus its own. */
export function imageCommandOptions(spec: ImageCommandSpec): OptionSpec {
  return { ...sourceOptions, ...imageOptions, ...resultFileOptions, ...outputOptions, ...spec.options };
}

/**
 * The shape shared by build, push and load: parse flags, resolve the closure(s), plan, write every
 * target, report. Returns the exit code.
 */
export async function runImageCommand(
  spec: ImageCommandSpec,
  argv: readonly string[],
  io: Io,
  signal: AbortSignal,
): Promise<number> {
  const { values, positionals } = parseFlags(spec.name, argv, imageCommandOptions(spec));
  if (values.help) {
    io.out(spec.help);
    return 0;
  }
  const v = values as Record<string, string | boolean | string[] | undefined>;
  const verbose = Boolean(v.verbose);
  const log = (line: string): void => {
    if (verbose) io.err(`${line}\n`);
  };
  // TERM=dumb (Emacs' shell, some CI terminals): a terminal that cannot move the cursor back up
  const showProgress = io.isTTY && !v.quiet && !verbose && process.env.TERM !== 'dumb';
  // elsewhere (a CI log, --verbose), a status line now and then while a long run reads layers
  const interval = showProgress || v.quiet ? 0 : statusInterval(spec.name);
  const baseSettings = imageSettings(spec.name, v as ImageFlagValues);
  const targets = spec.targets(
    v,
    positionals.filter((p) => !p.startsWith('/')),
  );
  checkCompressionLevel(spec.name, baseSettings, targets);
  checkResultFiles(spec.name, v, targets, baseSettings.compression, baseSettings.arches.length);
  // an engine or a docker-archive keeps no manifest: the annotations would be dropped unseen
  if ((v.annotation as string[] | undefined)?.length && !targets.some((t) => t.target.keepsManifest))
    throw usage(
      spec.name,
      `--annotation: ${targets[0]?.target.description ?? 'the destination'} keeps no manifest to annotate (an OCI layout or a registry does); use --label for the image config`,
    );
  // before the closure is built and before any target is written: a later target's missing
  // directory must not fail the run after an earlier one was written
  for (const t of targets) t.target.check?.();
  for (const t of targets) t.target.prepare?.({ signal, log, architectures: baseSettings.arches });
  const source = await resolveSource(
    spec.name,
    v as SourceFlags,
    positionals,
    baseSettings.arches,
    log,
    signal,
  );
  if (!v.quiet) for (const w of source.warnings ?? []) io.err(`nixoci: warning: ${w}\n`);
  if (!v.quiet && !v.verbose) for (const w of source.nixWarnings ?? []) io.err(`${w}\n`);
  const settings = applyCustomisation(spec.name, baseSettings, source, v as CustomiseFlagValues);
  const closures = source.closures;
  let progress: Progress | undefined;
  let status: StatusLines | undefined;
  const assembly = new Assembly(
    closures,
    settings,
    showProgress || interval > 0 ? (e) => (progress ?? status)?.onLayerProgress(e) : undefined,
  );
  // cli-progress is loaded only for a terminal: a few ms of start-up that scripts never need.
  if (showProgress)
    progress = new (await import('./progress.js')).Progress(process.stderr, assembly.layerCount);
  else if (interval > 0) status = new StatusLines((l) => io.err(`${l}\n`), assembly.layerCount, interval);
  let results;
  // The targets are written one after the other: what one read from the store is what the run's
  // count grew by while it was written (a second target may read nothing, or read it all again).
  const readBy = new Map<TargetResult, number>();
  let readBefore = 0;
  const tell = (rs: readonly TargetResult[]): void => {
    if (v.quiet) return;
    for (const r of rs)
      for (const line of summary(r, readBy.get(r) ?? 0, io.isTTY ? runCommand(r, v.host) : undefined))
        io.err(line + '\n');
  };
  const written: TargetResult[] = [];
  const onWritten = (r: TargetResult): void => {
    written.push(r);
    readBy.set(r, assembly.stats.bytesRead - readBefore);
    readBefore = assembly.stats.bytesRead;
  };
  try {
    const onProgress = progress?.onTargetProgress ?? status?.onTargetProgress;
    results = await assembly.writeAll(
      targets,
      { signal, log, ...(onProgress ? { onProgress } : {}) },
      onWritten,
    );
    progress?.finish();
    status?.finish();
  } catch (e) {
    // When a later destination fails, the user still learns which ones were written (with --json
    // too: no report is printed then, and standard error is where the failure is told).
    progress?.stop();
    status?.stop();
    tell(written);
    throw e;
  } finally {
    progress?.stop();
    status?.stop();
  }
  try {
    await writeResultFiles(v, results, io, signal);
  } catch (e) {
    tell(results);
    throw e;
  }
  if (v.json) io.out(JSON.stringify(jsonReport(spec.name, results, assembly.stats.bytesRead)) + '\n');
  else tell(results);
  return 0;
}

/** For a terminal user: how to run what was loaded into an engine (`docker run --rm app:v1`). */
function runCommand(r: TargetResult, host: unknown): string | undefined {
  const m = /^(docker-daemon|podman):(.+)$/.exec(r.target);
  if (!m || !r.imageId) return undefined;
  const cli = m[1] === 'podman' ? 'podman' : 'docker';
  const at = typeof host === 'string' ? ` ${cli === 'podman' ? '--url' : '-H'} ${shellQuote(host)}` : '';
  return `${cli}${at} run --rm ${shellQuote(m[2]!)}`;
}
