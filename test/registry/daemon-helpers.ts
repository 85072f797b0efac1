// Shared by the daemon tests: closure → plan → layers → Image, and a salted closure whose layer
// chains no other test (or earlier run) can have loaded into the engine.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Closure } from '../../src/closure/closure.js';
import { closureFromPaths, loadGraphFile } from '../../src/closure/load.js';
import { parseStorePath } from '../../src/closure/store-path.js';
import { DEFAULT_CREATED, type Image } from '../../src/image/image.js';
import { DigestCache } from '../../src/layer/cache.js';
import { makeLayers } from '../../src/layer/layer.js';
import { planLayers } from '../../src/layer/plan.js';
import { repoRoot } from '../helpers/env.js';
import { nixBuild } from '../helpers/nix.js';

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function imageOf(closure: Closure, cacheDir: string, entrypoint: string[]): Image {
  const plan = planLayers(closure);
  const layers = makeLayers(plan, {
    compression: 'none',
    cache: new DigestCache(cacheDir),
    stats: { bytesRead: 0 },
    storeDir: closure.storeDir,
  });
  return {
    platform: { architecture: 'amd64', os: 'linux' },
    closure,
    layers,
    run: { entrypoint, env: [], exposedPorts: [], labels: {} },
    created: DEFAULT_CREATED,
  };
}

export async function closureOfGraph(graphFile: string): Promise<Closure> {
  return loadGraphFile(graphFile);
}

/**
 * busybox → salted-data (content depends on `salt`) → salted-app (prints `message`). The salt makes
 * the data layer, and so every layer chain after busybox, unique to one test run.
 */
export async function buildSaltedClosure(
  salt: string,
  message: string,
): Promise<{ app: string; closure: Closure }> {
  const dir = tempDir('nixoci-salted-');
  const file = path.join(dir, 'salted.nix');
  writeFileSync(
    file,
    `{ salt, message }:
let
  busybox = import ${path.join(repoRoot, 'nix', 'busybox.nix')} { };
  sh = "\${busybox}/bin/sh";
  data = derivation {
    name = "salted-data";
    system = builtins.currentSystem;
    builder = sh;
    args = [ "-c" "\${busybox}/bin/mkdir -p $out && echo \${salt} > $out/salt" ];
  };
in
derivation {
  name = "salted-app";
  system = builtins.currentSystem;
  builder = sh;
  args = [ "-c" ''
    \${busybox}/bin/mkdir -p $out/bin
    printf '#!\${sh}\\necho "%s"\\n\${busybox}/bin/cat \${data}/salt\\n' "\${message}" > $out/bin/app
    \${busybox}/bin/chmod 0555 $out/bin/app
  '' ];
}
`,
  );
  const [app] = await nixBuild([file, '--argstr', 'salt', salt, '--argstr', 'message', message]);
  if (!app) throw new Error('nix-build printed no path');
  const closure = await closureFromPaths([parseStorePath(app, 'nix-build')]);
  return { app, closure };
}
