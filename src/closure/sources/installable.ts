import { z } from 'zod';
import { NixociError, isNixociError, reason } from '../../core/errors.js';
import type { Closure } from '../closure.js';
import { closureFromPaths, type LoadOptions } from '../load.js';
import { NIX_FEATURES, nixFromEnv, runNix, type NixRunOptions } from '../nix.js';
import { parseStorePath, storeDirFromEnv, type StorePath } from '../store-path.js';
import { archOfSystem, nixSystem, type NixSystem } from './system.js';

export interface BuildOptions extends LoadOptions, NixRunOptions {
  /** Evaluate and build for this system (Nix's `system` setting). */
  readonly system?: NixSystem;
}

// `nix build --json`: the same shape from Nix 2.4 on (`--print-out-paths` only exists from 2.9).
// A derivation's outputs, or `{path}` for an installable that is a store path (or a link to one).
const buildResultSchema = z.array(
  z.union([
    z.object({ drvPath: z.string().optional(), outputs: z.record(z.string(), z.string()) }),
    z.object({ path: z.string() }),
  ]),
);

/**
 * Builds (or substitutes) a flake installable or a store path ref with `nix build --no-link` and
 * returns its output paths, in the order Nix prints them.
 */
export async function buildInstallable(ref: string, options: BuildOptions = {}): Promise<StorePath[]> {
  const args = ['build', ...NIX_FEATURES, '--no-link', '--json'];
  if (options.system) args.push('--system', options.system);
  const out = await runBuild([...args, ref], options);
  let parsed: z.infer<typeof buildResultSchema>;
  try {
    parsed = buildResultSchema.parse(JSON.parse(out));
  } catch (e) {
    // reason() names a zod error's first issue (its message is the issues as multi-line JSON)
    throw new NixociError('NIX_FAILED', `nix build ${ref} printed unexpected output: ${reason(e)}`, {
      hint: 'check your Nix installation (nix --version; 2.4 or newer is needed)',
    });
  }
  const storeDir = options.storeDir ?? storeDirFromEnv();
  const paths = parsed.flatMap((r) => ('outputs' in r ? Object.values(r.outputs) : [r.path]));
  // Nix (2.8) reads `/nix/store/P/dir#attr` whose dir holds no flake as the store path P, and
  // builds nothing: the image would hold P (often a copy of the sources) instead of the package.
  const fragment = ref.indexOf('#');
  const taken = fragment < 0 ? undefined : paths.find((p) => ref.startsWith(`${p}/`));
  if (taken !== undefined) {
    throw new NixociError(
      'NIX_FAILED',
      `nix build ${ref}: Nix found no flake.nix in ${ref.slice(0, fragment)} and took the ref for the store path ${taken} instead of building ${ref.slice(fragment)}`,
      {
        hint: 'give the directory that holds flake.nix (a relative flake in a copied project may not have been copied)',
      },
    );
  }
  if (paths.length === 0) {
    throw new NixociError('NIX_FAILED', `nix build ${ref} built nothing`, { hint: 'check the installable' });
  }
  return paths.map((p) => parseStorePath(p, `nix build ${ref}`, storeDir));
}

/** The closure of a flake installable (`.#app`, `nixpkgs#hello`, `/path/to/flake#pkg`). */
export async function closureFromInstallable(ref: string, options: BuildOptions = {}): Promise<Closure> {
  return closureFromPaths(await buildInstallable(ref, options), options);
}

/** The closure of an attribute of a Nix file, built with `nix-build --no-out-link FILE [-A ATTR]`. */
export async function closureFromNixFile(
  file: string,
  attr: string | undefined,
  options: BuildOptions = {},
): Promise<Closure> {
  // --no-build-output: a failed build's error then ends with the log's last lines, as with nix build
  const args = ['--no-out-link', '--no-build-output', file];
  if (attr !== undefined) args.push('-A', attr);
  if (options.system) args.push('--option', 'system', options.system);
  const out = await runBuild(args, { ...options, bin: nixBuildBin(options.bin) });
  const storeDir = options.storeDir ?? storeDirFromEnv();
  const where = `nix-build ${file}${attr === undefined ? '' : ` -A ${attr}`}`;
  const paths = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((l) => parseStorePath(l, where, storeDir));
  if (paths.length === 0)
    throw new NixociError('NIX_FAILED', `${where} built nothing`, { hint: 'check the attribute' });
  return closureFromPaths(paths, options);
}

const HOST_SYSTEM: string | undefined = ({ x64: 'x86_64-linux', arm64: 'aarch64-linux' } as const)[
  process.arch as 'x64' | 'arm64'
];

/**
 * Runs a build for `options.system`. With that system set, Nix runs its builders here: one for
 * another architecture fails with the builder's garbled "Exec format error", so say what it means.
 */
async function runBuild(args: readonly string[], options: BuildOptions): Promise<string> {
  try {
    return await runNix(args, options);
  } catch (e) {
    const { system } = options;
    if (!isNixociError(e) || e.code !== 'NIX_FAILED' || !system) throw e;
    // A derivation whose system is fixed to another than the one asked for: Nix says "but I am a
    // 'aarch64-linux'" of an amd64 machine, the system nixoci set for --arch arm64.
    const wanted = SYSTEM_REQUIRED.exec(e.message);
    const other = wanted?.[1] ?? wanted?.[2];
    if (other !== undefined && other !== system) {
      const arch = archOfSystem(other);
      throw new NixociError(
        'NIX_FAILED',
        e.message.replace(
          ' failed: ',
          ` failed: a derivation is for ${other}, not ${system} (the system of --arch ${archOfSystem(system) ?? system}): `,
        ),
        {
          hint: `${arch === undefined ? `nixoci builds images for ${nixSystem('amd64')} and ${nixSystem('arm64')}: ` : `give --arch ${arch}, or `}let the Nix file build for the system nixoci asks for (builtins.currentSystem; in a flake, packages.SYSTEM)`,
          cause: e,
        },
      );
    }
    if (system === HOST_SYSTEM || !/exec format error/i.test(e.message)) throw e;
    throw new NixociError(
      'NIX_FAILED',
      e.message.replace(
        ' failed: ',
        ` failed: this ${HOST_SYSTEM ?? process.arch} machine cannot run ${system} builders: `,
      ),
      {
        hint: `build on an ${system} machine (a remote builder: builders in nix.conf), enable emulation (binfmt, extra-platforms = ${system}), use a binary cache that has the paths, or give a closure built elsewhere (--graph ${system === 'aarch64-linux' ? 'arm64' : 'amd64'}=FILE)`,
        cause: e,
      },
    );
  }
}

// Nix ≤ 2.23: "a 'aarch64-linux' with features {} is required to build '…drv', but I am a
// 'x86_64-linux' …"; newer: "Required system: 'aarch64-linux' with features {}"
const SYSTEM_REQUIRED = /a '([^']+)' with features \{[^}]*\} is required to build|Required system: '([^']+)'/;

/** `nix-build` / `nix-store` next to the configured `nix` (NIXOCI_NIX may point at a Nix elsewhere). */
export function nixBuildBin(nixBin: string | undefined, tool = 'nix-build'): string {
  const nix = nixBin ?? nixFromEnv() ?? 'nix';
  return nix.endsWith('/nix') ? `${nix.slice(0, -3)}${tool}` : tool;
}
