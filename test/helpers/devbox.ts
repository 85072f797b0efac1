// Devbox projects for tests: devbox.json and a devbox.lock whose store paths the test builds first
// with the real Nix (test/fixtures/closure.nix), so the lock is real for this machine.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FixtureClosure } from './nix.js';

/** A well-formed store path that no machine has (for aarch64-linux entries). */
export const absentPath = (name: string): string => `/nix/store/${'0'.repeat(31)}1-${name}`;

export interface DevboxFiles {
  /** devbox.json text (may hold comments) or a value to serialise. */
  json: string | object;
  /** devbox.lock text or value; null for no lock. */
  lock: string | object | null;
}

export function writeDevboxProject(
  files: DevboxFiles,
  dir = mkdtempSync(join(tmpdir(), 'nixoci-devbox-')),
): string {
  mkdirSync(dir, { recursive: true });
  const text = (v: string | object): string => (typeof v === 'string' ? v : JSON.stringify(v, null, 2));
  writeFileSync(join(dir, 'devbox.json'), text(files.json));
  if (files.lock !== null) writeFileSync(join(dir, 'devbox.lock'), text(files.lock));
  return dir;
}

/**
 * The fixture's app and busybox as two devbox packages, locked for x86_64-linux with the real
 * store paths, and for aarch64-linux with paths that do not exist here.
 */
export function fixtureProject(
  fx: FixtureClosure,
  json: object = {},
  dir?: string,
): { dir: string; busybox: string } {
  const busybox = fx.paths.find((p) => p.endsWith('-busybox'))!;
  const written = writeDevboxProject(
    {
      json: `{
  // made by test/helpers/devbox.ts
  "packages": ["fixture-app@1.0", "busybox@1.36.1",],
  "env": { "GREETING": "hello // from devbox" },
  ${Object.entries(json)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)},`)
    .join('\n  ')}
}`,
      lock: {
        lockfile_version: '1',
        packages: {
          'fixture-app@1.0': {
            resolved: 'github:example/fixture#app',
            version: '1.0',
            source: 'devbox-search',
            systems: {
              'x86_64-linux': { outputs: [{ name: 'out', path: fx.app, default: true }], store_path: fx.app },
              'aarch64-linux': {
                outputs: [{ name: 'out', path: absentPath('fixture-app'), default: true }],
                store_path: absentPath('fixture-app'),
              },
            },
          },
          'busybox@1.36.1': {
            resolved: 'github:example/fixture#busybox',
            version: '1.36.1',
            systems: {
              'x86_64-linux': { store_path: busybox },
              'aarch64-linux': { store_path: absentPath('busybox') },
            },
          },
        },
      },
    },
    dir,
  );
  return { dir: written, busybox };
}
