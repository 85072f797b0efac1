import { shellQuote } from '../core/shell-quote.js';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { NixociError } from '../core/errors.js';
import { isTag } from '../registry/reference.js';
import { flagSuggestion } from './suggest.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** Flags every command that assembles an image shares: where the closure comes from. */
export const sourceOptions = {
  graph: { type: 'string', multiple: true },
  path: { type: 'string', multiple: true },
  installable: { type: 'string' },
  file: { type: 'string' },
  attr: { type: 'string' },
  devbox: { type: 'string' },
} as const satisfies OptionSpec;

/** Flags that shape the image. */
export const imageOptions = {
  arch: { type: 'string' },
  'max-layers': { type: 'string' },
  compression: { type: 'string' },
  'compression-level': { type: 'string' },
  entrypoint: { type: 'string' },
  cmd: { type: 'string' },
  env: { type: 'string', multiple: true },
  workdir: { type: 'string' },
  user: { type: 'string' },
  expose: { type: 'string', multiple: true },
  label: { type: 'string', multiple: true },
  volume: { type: 'string', multiple: true },
  'stop-signal': { type: 'string' },
  annotation: { type: 'string', multiple: true },
  created: { type: 'string' },
  'cache-dir': { type: 'string' },
  'no-cache': { type: 'boolean' },
  'keep-setuid': { type: 'boolean' },
  // the customisation layer (src/cli/customise.ts)
  preset: { type: 'string' },
  copy: { type: 'string', multiple: true },
  'bin-farm': { type: 'boolean' },
  'ignore-collisions': { type: 'boolean' },
} as const satisfies OptionSpec;

export const outputOptions = {
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpec;

/** Parses argv strictly; an unknown flag or a missing value is a usage error naming the command. */
export function parseFlags<T extends OptionSpec>(command: string, argv: readonly string[], options: T) {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0] ?? String(e);
    // `--cmd --version`, `--cmd "--port 8080"`: parseArgs refuses a value that starts with '-' unless
    // it is joined with '='; its first line alone ("argument is ambiguous") does not say so.
    const flag = /^Option '(-[\w-]+)' argument is ambiguous/.exec(msg)?.[1];
    if (flag !== undefined) {
      const long = /use '(--[\w-]+)=-XYZ'/.exec((e as Error).message)?.[1] ?? flag;
      const i = argv.findIndex((a, j) => a === flag && argv[j + 1]?.startsWith('-'));
      const value = argv[i + 1] ?? '-…';
      const joined = `${long}=${value}`;
      throw new NixociError(
        'USAGE',
        `nixoci ${command}: ${flag} has no value: ${JSON.stringify(value)} after it is taken for a flag`,
        {
          hint: `a value that starts with '-' is joined to its flag with '=': ${shellQuote(joined)}`,
        },
      );
    }
    // Node goes on to suggest `-- "--flag"` for a positional that starts with '-'; no nixoci command
    // takes one, so that advice only led to a second error ("unexpected argument").
    const unknown = /^Unknown option '([^']+)'/.exec(msg)?.[1];
    // Node's "Option '-H, --host <value>' argument missing" and "Option '--json' does not take an
    // argument" read as its own internals.
    const missing = /^Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(msg)?.[1];
    const valued = /^Option '(?:-\w, )?(--[\w-]+)' does not take an argument/.exec(msg)?.[1];
    const what =
      unknown !== undefined
        ? `unknown option ${unknown}`
        : missing !== undefined
          ? `${missing} needs a value`
          : valued !== undefined
            ? `${valued} takes no value`
            : msg;
    const suggestion =
      unknown === undefined ? undefined : flagSuggestion(unknown, argv, Object.keys(options));
    throw new NixociError('USAGE', `nixoci ${command}: ${what}`, {
      hint: suggestion ?? `run \`nixoci ${command} --help\` for the list of flags`,
    });
  }
  checkRepeated(command, parsed.tokens);
  checkEmpty(command, parsed.tokens, options);
  const { values, positionals } = parsed;
  // -q printed the --verbose lines all the same: which was meant cannot be guessed
  const v = values as Record<string, unknown>;
  if (v.quiet === true && v.verbose === true)
    throw usage(command, '-q/--quiet and -v/--verbose contradict each other; give one of them');
  return { values, positionals };
}

/** Flags whose empty value says something: `--entrypoint ''` and `--cmd ''` clear it, as in Docker. */
const EMPTY_ALLOWED: ReadonlySet<string> = new Set(['entrypoint', 'cmd']);

/**
 * `--file ""` built ./default.nix, `--devbox ""` the working directory's project, `--cache-dir ""`
 * turned the cache off and `--ca-file ""` was ignored: an empty value (an unset variable in a
 * script, `--file "$NIX_FILE"`) is a usage error rather than a default taken in its place.
 */
function checkEmpty(
  command: string,
  tokens: readonly { kind: string; name?: string; value?: string | undefined }[],
  options: OptionSpec,
): void {
  for (const t of tokens) {
    if (t.kind !== 'option' || t.name === undefined || t.value !== '' || EMPTY_ALLOWED.has(t.name)) continue;
    if (options[t.name]?.type !== 'string') continue;
    throw new NixociError('USAGE', `nixoci ${command}: --${t.name} is given an empty value`, {
      hint: `give --${t.name} a value, or leave it out (is a variable unset?)`,
    });
  }
}

/**
 * `--arch amd64 --arch arm64` built arm64 alone: parseArgs keeps the last value, as docker, skopeo
 * and crane do (so a wrapper's default can be overridden: `nixoci push $FLAGS --compression gzip`),
 * but a second --arch was meant as a list, and is refused with the way to write one.
 */
function checkRepeated(command: string, tokens: readonly { kind: string; name?: string }[]): void {
  if (tokens.filter((t) => t.kind === 'option' && t.name === 'arch').length > 1)
    throw new NixociError('USAGE', `nixoci ${command}: --arch is given twice; it takes one list`, {
      hint: 'several architectures are one list: --arch amd64,arm64',
    });
}

export function usage(command: string, message: string): NixociError {
  return new NixociError('USAGE', `nixoci ${command}: ${message}`, {
    hint: `run \`nixoci ${command} --help\` for usage`,
  });
}

/**
 * Checks a `--tag` value. A name with a tag (`--tag ghcr.io/org/app:v2`, as `docker build -t` and
 * `docker tag` take it) is refused saying that only the tag goes there: the repository is the
 * destination's.
 */
export function checkTagFlag(command: string, tag: string): void {
  if (isTag(tag)) return;
  const colon = tag.lastIndexOf(':');
  const own = colon > tag.lastIndexOf('/') ? tag.slice(colon + 1) : '';
  const named = /[:/]/.test(tag)
    ? `: --tag takes the tag alone (e.g. ${isTag(own) ? own : 'v2'}), for the destination's repository`
    : '';
  throw usage(command, `--tag ${JSON.stringify(tag)} is not a valid tag${named}`);
}

/**
 * `fn`'s result; a NixociError it throws (a bad reference, `--creds`, `--ca-file`) becomes a usage
 * error of `command`, its hint kept.
 */
export function asUsage<T>(command: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof NixociError)
      throw new NixociError('USAGE', `nixoci ${command}: ${e.message}`, { hint: e.hint });
    throw e;
  }
}

/** A flag's value as a non-negative integer within bounds, or a usage error. */
export function intFlag(
  command: string,
  name: string,
  v: string | undefined,
  min: number,
  max: number,
): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw usage(command, `--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

/**
 * Flags of one kind of destination or image (a registry's, an engine's) given to a run that has
 * none of that kind: a usage error, as inspect refuses image flags for an image that exists. Left
 * unchecked, `--concurrency 0` or `--ca-file /missing` passed without a word and did nothing.
 */
export function refuseUnused(
  command: string,
  values: Readonly<Record<string, unknown>>,
  names: readonly string[],
  why: string,
  hint: string,
): void {
  const given = names.find((n) => values[n] !== undefined);
  if (given !== undefined) throw new NixociError('USAGE', `nixoci ${command}: --${given} ${why}`, { hint });
}
