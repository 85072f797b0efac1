import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Closure } from '../closure/closure.js';
import { NixociError } from '../core/errors.js';
import { closureFromPaths, loadGraphFile } from '../closure/load.js';
import { devboxClosure, loadDevboxProject, type DevboxClosure } from '../closure/sources/devbox.js';
import type { DevboxProject } from '../closure/sources/devbox-project.js';
import { closureFromInstallable, closureFromNixFile } from '../closure/sources/installable.js';
import { nixSystem } from '../closure/sources/system.js';
import { parseStorePath, storeDirFromEnv } from '../closure/store-path.js';
import type { Arch } from '../image/image.js';
import { asUsage, usage } from './flags.js';

export interface SourceFlags {
  readonly graph?: readonly string[];
  readonly path?: readonly string[];
  readonly installable?: string;
  readonly file?: string;
  readonly attr?: string;
  readonly devbox?: string;
}

/** The closures of a command's source, and the devbox project when that was the source. */
export interface ResolvedSource {
  readonly closures: Map<Arch, Closure>;
  readonly devbox?: { readonly project: DevboxProject; readonly perArch: ReadonlyMap<Arch, DevboxClosure> };
  /** What the user should know although the run goes on (printed unless --quiet). */
  readonly warnings?: readonly string[];
  /**
   * Nix's own warnings of the commands that succeeded, once each (`nix: warning: …`): printed as
   * they are unless --quiet, or --verbose, which showed all of Nix's lines.
   */
  readonly nixWarnings?: readonly string[];
}

/**
 * Turns the source flags into one closure per requested architecture. A flag value may be prefixed
 * with `ARCH=` (`--graph arm64=g.json`) to give that architecture its own closure; an unprefixed
 * value applies to every architecture.
 */
export async function resolveClosures(
  command: string,
  flags: SourceFlags,
  positionals: readonly string[],
  arches: readonly Arch[],
  log: (line: string) => void,
  signal?: AbortSignal,
): Promise<Map<Arch, Closure>> {
  return (await resolveSource(command, flags, positionals, arches, log, signal)).closures;
}

/**
 * Like resolveClosures, and also says whether the source was a devbox project. With no source
 * flag at all, a devbox.json in the working directory is the source.
 */
export async function resolveSource(
  command: string,
  flags: SourceFlags,
  positionals: readonly string[],
  arches: readonly Arch[],
  log: (line: string) => void,
  /** Stops the Nix commands run for the source (Ctrl-C, SIGTERM), not only what comes after them. */
  signal?: AbortSignal,
  cwd: string = process.cwd(),
): Promise<ResolvedSource> {
  const graphs = flags.graph ?? [];
  const paths = [...(flags.path ?? []), ...positionals.filter((p) => p.startsWith('/'))];
  const given = [
    graphs.length > 0 && '--graph',
    paths.length > 0 && '--path',
    flags.installable !== undefined && '--installable',
    flags.file !== undefined && '--file',
    flags.devbox !== undefined && '--devbox',
  ].filter((x): x is string => x !== false);
  if (given.length > 1) throw usage(command, `give one source, not ${given.join(' and ')}`);
  if (flags.attr !== undefined && flags.file === undefined) throw usage(command, '--attr needs --file X.nix');
  const out = new Map<Arch, Closure>();
  const nixWarnings = new Set<string>();
  const nix = { log, signal, onWarning: (w: string) => nixWarnings.add(w) };
  const devboxDir = flags.devbox ?? (given.length === 0 ? findDevboxProject(cwd) : undefined);
  if (flags.devbox === undefined && devboxDir !== undefined && devboxDir !== cwd)
    log(`devbox project: ${devboxDir} (its devbox.json is above the working directory)`);
  if (devboxDir !== undefined) {
    const project = await loadDevboxProject(resolve(cwd, devboxDir), nix);
    const perArch = new Map<Arch, DevboxClosure>();
    for (const arch of arches) {
      const d = await devboxClosure(project, nixSystem(arch), nix);
      perArch.set(arch, d);
      out.set(arch, d.closure);
    }
    return {
      closures: out,
      devbox: { project, perArch },
      warnings: devboxWarnings(project),
      nixWarnings: [...nixWarnings],
    };
  }
  if (given.length === 0) {
    throw usage(
      command,
      `no source: give --devbox DIR, --installable REF, --file X.nix, --graph FILE or --path STOREPATH (or run it in a devbox project: there is no devbox.json in ${cwd} or above it)${command === 'inspect' ? ', or an image to read (e.g. inspect docker://host/app:v1)' : ''}`,
    );
  }
  // --installable and --file are built for each --arch's system: a prefix would reach Nix as part
  // of the path.
  for (const [flag, v] of [
    ['--installable', flags.installable],
    ['--file', flags.file],
  ] as const)
    if (v !== undefined && /^(amd64|arm64)=/.test(v))
      throw usage(
        command,
        `${flag} ${v}: takes no architecture prefix; it is built for each --arch's system`,
      );
  // A value for an architecture not built would be left out without a word: the image (often one
  // for amd64, the default) would lack what the user meant for an index.
  for (const [flag, values] of [
    ['--graph', graphs],
    ['--path', paths],
  ] as const)
    for (const v of values) {
      const m = /^(amd64|arm64)=/.exec(v);
      if (m && !arches.includes(m[1] as Arch))
        throw usage(
          command,
          `${flag} ${v}: ${m[1]} is not among the --arch (${arches.join(',')}); add it, e.g. --arch amd64,arm64`,
        );
    }
  // A --graph is a whole closure: an unprefixed one is for the architectures without their own, and
  // when every one has its own it was for none, and would be dropped without a word.
  const shared = graphs.filter((v) => !/^(amd64|arm64)=/.test(v));
  const own = arches.filter((a) => graphs.some((v) => v.startsWith(`${a}=`)));
  if (shared.length > 0 && own.length === arches.length)
    throw usage(
      command,
      `--graph ${shared[0]}: every architecture has its own --graph (${own.map((a) => `${a}=`).join(', ')}), so this one would be used for none; prefix it with the architecture it is for, or leave it out`,
    );
  for (const arch of arches) {
    if (flags.installable !== undefined) {
      out.set(arch, await closureFromInstallable(flags.installable, { ...nix, system: nixSystem(arch) }));
    } else if (flags.file !== undefined) {
      out.set(arch, await closureFromNixFile(flags.file, flags.attr, { ...nix, system: nixSystem(arch) }));
    } else if (graphs.length > 0) {
      const file = pick(command, graphs, arch, '--graph');
      if (file.length !== 1)
        throw usage(command, `give one --graph per architecture (${arch} has ${file.length})`);
      out.set(arch, await loadGraphFile(file[0]!, nix));
    } else {
      // a value that is no store path is a mistake in the command line, as a malformed image
      // reference is (exit 2); a store path that is not on disk is a failure (exit 1)
      const ps = pick(command, paths, arch, '--path').map((p) => {
        const target = throughResultLink(p, log);
        return asUsage(command, () => parseStorePath(target, '--path'));
      });
      // none for this architecture (all prefixed for another): `nix path-info` with no path would
      // read whatever the working directory holds
      if (ps.length === 0) throw usage(command, `no --path for ${arch} (give ${arch}=STOREPATH, or --arch)`);
      out.set(arch, await closureFromPaths(ps, nix));
    }
  }
  return { closures: out, nixWarnings: [...nixWarnings] };
}

/**
 * The values for `arch`: its own (`arch=…`) and the unprefixed ones. Store paths add up, so an
 * unprefixed --path goes into every architecture's image; a --graph is a whole closure, so an
 * unprefixed one is for the architectures without their own.
 */
function pick(command: string, values: readonly string[], arch: Arch, flag: '--graph' | '--path'): string[] {
  const own: string[] = [];
  const shared: string[] = [];
  const all: string[] = [];
  for (const v of values) {
    const m = /^(amd64|arm64)=(.*)$/.exec(v);
    if (m) {
      if (m[1] !== arch) continue;
      own.push(m[2]!);
      all.push(m[2]!);
    } else if (/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)?=/.test(v)) {
      // x86_64-linux=, linux/arm64=: an architecture named the Nix or OCI way, not a file name
      throw usage(command, `${flag} ${v}: unknown architecture prefix (use amd64= or arm64=)`);
    } else {
      shared.push(v);
      all.push(v);
    }
  }
  if (flag === '--path') return all;
  return own.length > 0 ? own : shared;
}

/**
 * A `result` symlink (what nix-build and nix build leave) as the store path it points at, as
 * `nix path-info ./result` takes it; anything else unchanged, for parseStorePath to judge. Links
 * are followed one at a time until one lands in the store, as Nix does: the store path may itself
 * be a symlink (to anywhere). A trailing slash, which shell completion adds, names the same path.
 */
function throughResultLink(given: string, log: (line: string) => void): string {
  const storeDir = storeDirFromEnv();
  const p = given.length > 1 ? given.replace(/\/+$/, '') || '/' : given;
  if (p.startsWith(storeDir + '/')) return p;
  let at = resolve(p);
  // `--path ./result` before nix-build made it: said "not a store path: relative path" (exit 2),
  // when what is wrong is that nothing is there yet, as for a store path not on disk (exit 1)
  if (!isAbsolute(p) && !lexists(at))
    throw new NixociError('STORE_PATH_MISSING', `--path ${given}: no such file or symlink`, {
      hint: 'give a store path, or the result symlink nix-build / nix build leaves (build it first)',
    });
  for (let hops = 0; !at.startsWith(storeDir + '/'); hops++) {
    try {
      if (hops === 40 || !lstatSync(at).isSymbolicLink()) return p;
      // relative to the directory the link really is in
      at = resolve(realpathSync(dirname(at)), readlinkSync(at));
    } catch {
      return p;
    }
  }
  log(`--path ${given}: ${at}`);
  return at;
}

function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The devbox project the working directory is in: the nearest directory from `cwd` upward that
 * holds a devbox.json, as devbox itself looks for one when given no --config. The search stops at
 * $NIXOCI_DEVBOX_CEILING (that directory is the last one looked in), so that a devbox.json
 * somewhere above a checkout or a test's temporary directory cannot be picked up.
 */
export function findDevboxProject(
  cwd: string,
  ceiling: string | undefined = process.env.NIXOCI_DEVBOX_CEILING || undefined,
): string | undefined {
  const stop = ceiling === undefined ? undefined : resolve(ceiling);
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'devbox.json'))) return dir;
    if (dir === stop || dirname(dir) === dir) return undefined;
  }
}

/** devbox.json settings that change a devbox shell but that nixoci does not read. */
function devboxWarnings(project: DevboxProject): string[] {
  const warnings: string[] = [];
  const include = (project.json as { include?: unknown }).include;
  if (Array.isArray(include) && include.length > 0) {
    warnings.push(
      `${project.jsonFile}: include (${include.length} plugin${include.length === 1 ? '' : 's'}) is not read: packages, env and files a plugin adds are not in the image`,
    );
  }
  // An image has no shell to run a hook in: what the hook or env_from would set is missing from
  // the image's environment, which a user would only find out at run time.
  const unapplied = [
    hasHook(project.json.shell?.init_hook) && 'shell.init_hook',
    hasEnvFrom((project.json as { env_from?: unknown }).env_from) && 'env_from',
  ].filter((x): x is string => x !== false);
  if (unapplied.length > 0) {
    warnings.push(
      `${project.jsonFile}: ${unapplied.join(' and ')} ${unapplied.length === 1 ? 'is' : 'are'} not applied: an image has no devbox shell to run it in, so what ${unapplied.length === 1 ? 'it sets is' : 'they set is'} not in the image's environment; give such variables with --env KEY=VALUE`,
    );
  }
  return warnings;
}

/**
 * Whether an init_hook does something. `devbox init` writes one that only echoes a welcome to
 * /dev/null: warning about it would be noise in nearly every project.
 */
function hasHook(hook: string | readonly string[] | undefined): boolean {
  const lines = (typeof hook === 'string' ? hook.split('\n') : (hook ?? []))
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && l !== "echo 'Welcome to devbox!' > /dev/null");
  return lines.length > 0;
}

const hasEnvFrom = (v: unknown): boolean => typeof v === 'string' && v.trim() !== '';
