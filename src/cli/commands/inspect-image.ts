import { imageOptions, sourceOptions, usage } from '../flags.js';
import { openImageSource, refuseUnusedReadFlags } from '../image-ref.js';
import { printImage, readImage } from '../image-report.js';
import { JSON_SCHEMA_VERSION, type Io } from '../output.js';
import type { TargetFlags } from '../targets.js';

/** `nixoci inspect IMAGE`: the layers of an existing image, with their sizes and store paths. */
export async function inspectImage(
  values: TargetFlags,
  positionals: readonly string[],
  io: Io,
  signal?: AbortSignal,
): Promise<number> {
  if (positionals.length > 1)
    throw usage('inspect', `one image at a time, got ${positionals.length} arguments`);
  const mixed = Object.keys(sourceOptions).find((k) => values[k] !== undefined);
  if (mixed) throw usage('inspect', `--${mixed} is a closure source; it does not go with an image`);
  // Flags that shape an image being assembled say nothing about one that exists.
  const assembling = [...Object.keys(imageOptions), 'graph-out'].find(
    (k) => k !== 'arch' && values[k] !== undefined,
  );
  if (assembling)
    throw usage('inspect', `--${assembling} is for a closure; an existing image is read as it is`);
  const log = values.verbose ? (l: string): void => io.err(`${l}\n`) : undefined;
  const source = openImageSource('inspect', positionals[0]!, values, log);
  refuseUnusedReadFlags('inspect', positionals, values);
  if (values.verbose) io.err(`reading ${source.description}\n`);
  const image = await readImage(source, signal);
  if (values.json) {
    io.out(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, command: 'inspect', image }) + '\n');
    return 0;
  }
  if (!values.quiet) printImage(io, image);
  return 0;
}
