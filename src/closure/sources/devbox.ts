import { accessSync, constants, lstatSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { NixociError, isNixociError } from '../../core/errors.js';
import type { Closure } from '../closure.js';
import { closureFromPaths } from '../load.js';
import { runNix, SUBSTITUTER_HINT, SUBSTITUTER_UNREACHABLE } from '../nix.js';
import { parseStorePath, storeDirFromEnv, type StorePath } from '../store-path.js';
import {
  includedOn,
  lockEntry,
  readDevboxProject,
  type DevboxProject,
  type PackageRequest,
} from './devbox-project.js';
import { buildInstallable, nixBuildBin, type BuildOptions } from './installable.js';
import type { NixSystem } from './system.js';

/** A devbox package as it ends up in one system's image. */
export interface DevboxPackage {
  readonly spec: string;
  /** Its key in devbox.lock (undefined for a flake reference that is not locked). */
  readonly lockKey: string | undefined;
  readonly version: string | undefined;
  /** The store paths it contributes as closure roots (its default or chosen outputs). */
  readonly storePaths: readonly StorePath[];
  /** How the paths were obtained: straight from the lock, or built with `nix build`. */
  readonly from: 'lock' | 'build';
}

export interface DevboxClosure {
  readonly system: NixSystem;
  readonly closure: Closure;
  readonly packages: readonly DevboxPackage[];
  /** Packages left out on this system (platforms / excluded_platforms). */
  readonly excluded: readonly string[];
}

export interface DevboxOptions extends Omit<BuildOptions, 'system'> {
  /** Looks `devbox` up on this PATH (default: process.env.PATH); empty disables `devbox install`. */
  readonly searchPath?: string;
}

/**
 * Reads a devbox project and, when devbox is installed and the lock is missing or lacks a package,
 * runs `devbox install` to refresh it first.
 */
export async function loadDevboxProject(dir: string, options: DevboxOptions = {}): Promise<DevboxProject> {
  const project = readDevboxProject(dir);
  if (!lockIsStale(project)) return project;
  const devbox = findOnPath('devbox', options.searchPath ?? process.env.PATH ?? '');
  if (!devbox) return project; // resolution below says precisely what is missing
  try {
    await runNix(['install', '--config', dir], { ...options, bin: devbox });
  } catch (e) {
    if (!isNixociError(e) || e.code !== 'NIX_FAILED') throw e;
    throw new NixociError('DEVBOX', `${project.lockFile} is missing or stale, and ${e.message}`, {
      hint: 'run `devbox install` in the project yourself and fix what it reports',
      cause: e,
    });
  }
  return readDevboxProject(dir);
}

function lockIsStale(project: DevboxProject): boolean {
  return !project.lock || project.packages.some((p) => !p.flake && !lockEntry(project, p));
}

function findOnPath(name: string, path: string): string | undefined {
  for (const d of path.split(delimiter)) {
    if (!d) continue;
    const f = join(d, name);
    try {
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The closure of a devbox project's packages for one system. */
export async function devboxClosure(
  project: DevboxProject,
  system: NixSystem,
  options: DevboxOptions = {},
): Promise<DevboxClosure> {
  const packages: DevboxPackage[] = [];
  const excluded: string[] = [];
  for (const p of project.packages) {
    if (!includedOn(p, system)) {
      excluded.push(p.spec);
      continue;
    }
    packages.push(await resolvePackage(project, p, system, options));
  }
  if (packages.length === 0) {
    const why =
      excluded.length > 0 ? `every package is excluded on ${system} (${excluded.join(', ')})` : 'no packages';
    throw new NixociError('DEVBOX', `${project.jsonFile}: ${why}`, {
      hint: 'add a package for this platform, or build for another --arch',
    });
  }
  const roots = [...new Set(packages.flatMap((p) => p.storePaths))];
  const closure = await closureFromPaths(roots, options);
  return { system, closure, packages, excluded };
}

/**
 * A relative flake reference (`./flake#pkg`, `path:../flake#pkg`) as devbox reads it: relative to
 * the project's directory, not to wherever nixoci runs.
 */
export function inProject(project: Pick<DevboxProject, 'dir'>, ref: string): string {
  const m = /^(path:)?(\.\.?(?:\/[^#?]*)?)([#?].*)?$/.exec(ref);
  return m ? `${m[1] ?? ''}${resolve(project.dir, m[2]!)}${m[3] ?? ''}` : ref;
}

async function resolvePackage(
  project: DevboxProject,
  p: PackageRequest,
  system: NixSystem,
  options: DevboxOptions,
): Promise<DevboxPackage> {
  const locked = lockEntry(project, p);
  if (!locked) {
    if (p.flake) {
      const storePaths = await buildInstallable(inProject(project, p.spec), { ...options, system });
      return { spec: p.spec, lockKey: undefined, version: undefined, storePaths, from: 'build' };
    }
    const where = project.lock ? project.lockFile : `${project.lockFile} (missing)`;
    throw new NixociError('DEVBOX', `${where}: package ${p.spec} from devbox.json is not in the lock`, {
      hint: 'run `devbox install` (or `devbox update`) to update devbox.lock, then run nixoci again',
    });
  }
  const { key, entry } = locked;
  const systems = entry.systems ?? {};
  const own = systems[system];
  if (!own) {
    if (Object.keys(systems).length === 0 && entry.resolved) {
      const storePaths = await buildInstallable(inProject(project, entry.resolved), { ...options, system });
      return { spec: p.spec, lockKey: key, version: entry.version, storePaths, from: 'build' };
    }
    const has = Object.keys(systems).join(', ') || 'none';
    throw new NixociError(
      'DEVBOX',
      `${project.lockFile}: package ${key} has no store paths for ${system} (it has: ${has})`,
      {
        hint: `exclude it on ${system} (excluded_platforms in devbox.json), or run \`devbox update\` to lock it for ${system}`,
      },
    );
  }
  const storeDir = options.storeDir ?? storeDirFromEnv();
  const at = `${project.lockFile}: package ${key} (${system})`;
  let chosen: string[];
  if (own.outputs && own.outputs.length > 0) {
    const outs = own.outputs;
    if (p.outputs) {
      const missing = p.outputs.filter((o) => !outs.some((x) => x.name === o));
      if (missing.length > 0) {
        throw new NixociError(
          'DEVBOX',
          `${at}: outputs ${missing.join(', ')} asked for in devbox.json are not locked`,
          {
            hint: 'run `devbox install` to update devbox.lock',
          },
        );
      }
      chosen = outs.filter((o) => p.outputs!.includes(o.name)).map((o) => o.path);
    } else {
      const defaults = outs.filter((o) => o.default);
      chosen = (defaults.length > 0 ? defaults : outs).map((o) => o.path);
    }
  } else if (own.store_path) {
    chosen = [own.store_path];
  } else {
    throw new NixociError('DEVBOX', `${at}: the lock has neither outputs nor store_path`, {
      hint: 'run `devbox update` to regenerate devbox.lock',
    });
  }
  const storePaths = chosen.map((s) => parseStorePath(s, at, storeDir));
  await realise(storePaths, at, system, options);
  return { spec: p.spec, lockKey: key, version: entry.version, storePaths, from: 'lock' };
}

/** Makes sure the paths are in the local store; missing ones are substituted by `nix-store --realise`. */
async function realise(paths: readonly StorePath[], at: string, system: NixSystem, options: DevboxOptions) {
  const missing = paths.filter((p) => !exists(p));
  if (missing.length === 0) return;
  try {
    await runNix(['--realise', ...missing], { ...options, bin: nixBuildBin(options.bin, 'nix-store') });
  } catch (e) {
    if (!isNixociError(e) || e.code !== 'NIX_FAILED') throw e;
    // Nix's last lines list the paths again; its final `error:` line is the part worth showing.
    const tail = e.message.replace(/^\S+ --realise failed: /, '');
    const detail = tail.slice(Math.max(0, tail.lastIndexOf('error:'))).replace(/^error:\s*/, 'nix-store: ');
    throw new NixociError(
      'DEVBOX',
      `${at}: cannot realise ${missing[0]}${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}: it is not in the local store and no substituter could provide it (${detail})`,
      {
        hint: detail.includes(SUBSTITUTER_UNREACHABLE)
          ? SUBSTITUTER_HINT
          : `configure a binary cache that has ${system} paths (substituters in nix.conf), or build the package on a ${system} machine`,
        cause: e,
      },
    );
  }
  for (const p of missing) {
    if (!exists(p)) {
      throw new NixociError('DEVBOX', `${at}: ${p} is still missing after nix-store --realise`, {
        hint: 'check the Nix store (nix-store --verify)',
      });
    }
  }
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
