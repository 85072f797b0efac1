// The real Nix (Debian's nix-bin, single-user as root; see scripts/setup) for test closures.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './env.js';

/** test/fixtures/closure.nix */
export const fixtureClosureNix: string = path.join(repoRoot, 'test', 'fixtures', 'closure.nix');
/** example/offline (default.nix) */
export const exampleOfflineNix: string = path.join(repoRoot, 'example', 'offline');

function run(cmd: string, args: string[], timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024, timeout: timeoutMs, cwd: repoRoot },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${cmd} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
          return;
        }
        resolve(stdout);
      },
    );
  });
}

/** Runs `nix-build --no-out-link ...args` and returns the output paths it prints, in order. */
export async function nixBuild(args: string[]): Promise<string[]> {
  const out = await run('nix-build', ['--no-out-link', ...args]);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('/'));
}

/** `nix-store --query --requisites` of the paths: the whole closure, sorted. */
export async function closureOf(paths: string[]): Promise<string[]> {
  const out = await run('nix-store', ['--query', '--requisites', ...paths]);
  return out
    .split('\n')
    .filter((l) => l !== '')
    .sort();
}

/**
 * The parsed output of `nix path-info --json --recursive PATHS`, untouched. With this Nix
 * (2.8) it is an array of {path, narHash, narSize, references, registrationTime, valid, …};
 * Nix ≥ 2.19 prints an object keyed by store path instead, so callers should accept both.
 */
export async function pathInfoJson(paths: string[]): Promise<unknown> {
  const out = await run('nix', [
    '--extra-experimental-features',
    'nix-command',
    'path-info',
    '--json',
    '--recursive',
    ...paths,
  ]);
  return JSON.parse(out) as unknown;
}

export interface FixtureClosure {
  /** The app store path (its content, and only its, depends on `tag`). */
  app: string;
  /** The whole closure of `app`, sorted. */
  paths: string[];
  /** The closure graph JSON file (nix/closure-graph.nix): {"roots":[app],"closure":[…]}. */
  graphFile: string;
}

/**
 * Builds test/fixtures/closure.nix with the real Nix. Two different tags give two closures
 * that differ in the app path only (busybox, fixture-data, fixture-lib, fixture-empty shared).
 */
export async function buildFixtureClosure(opts: { tag: string }): Promise<FixtureClosure> {
  const [app, graphFile] = await nixBuild([
    fixtureClosureNix,
    '--argstr',
    'tag',
    opts.tag,
    '-A',
    'app',
    '-A',
    'graph',
  ]);
  if (app === undefined || graphFile === undefined) {
    throw new Error(`nix-build ${fixtureClosureNix} did not print two paths`);
  }
  return { app, paths: await closureOf([app]), graphFile };
}

/** Builds example/offline: the hello-nixoci app and its closure graph. */
export async function buildExampleClosure(): Promise<FixtureClosure> {
  const [app, graphFile] = await nixBuild([exampleOfflineNix, '-A', 'hello', '-A', 'graph']);
  if (app === undefined || graphFile === undefined) {
    throw new Error(`nix-build ${exampleOfflineNix} did not print two paths`);
  }
  return { app, paths: await closureOf([app]), graphFile };
}
