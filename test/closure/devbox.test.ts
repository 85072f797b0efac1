import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { NixociError } from '../../src/core/errors.js';
import { devboxClosure, inProject, loadDevboxProject } from '../../src/closure/sources/devbox.js';
import { readDevboxProject } from '../../src/closure/sources/devbox-project.js';
import { JsoncSyntaxError, parseJsonc } from '../../src/closure/sources/jsonc.js';
import { absentPath, fixtureProject, writeDevboxProject } from '../helpers/devbox.js';
import { writeTestFlake } from '../helpers/flake.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

let fx: FixtureClosure;
beforeAll(async () => {
  process.env.NIX_REMOTE = '';
  fx = await buildFixtureClosure({ tag: 'devbox-closure' });
});

/** The NixociError a function throws (sync or async). */
async function errorOf(f: () => unknown): Promise<NixociError> {
  try {
    await f();
  } catch (e) {
    if (e instanceof NixociError) return e;
    throw e;
  }
  throw new Error('expected an error');
}

describe('JSON with comments', () => {
  it('strips comments outside strings and trailing commas, keeping string contents', () => {
    const v = parseJsonc(`{
      // line comment
      "a": "x // not a comment", /* block
      comment */ "b": ["/* kept */", "a,]",],
      "c": "quote \\" // still a string",
    }`);
    expect(v).toEqual({ a: 'x // not a comment', b: ['/* kept */', 'a,]'], c: 'quote " // still a string' });
  });
});

describe('JSON with comments: syntax errors', () => {
  /** line:column: message of the error parseJsonc throws. */
  const errorAt = (text: string): string => {
    try {
      parseJsonc(text);
    } catch (e) {
      if (e instanceof JsoncSyntaxError) return `${e.line}:${e.column}: ${e.message}`;
      throw e;
    }
    throw new Error('expected a syntax error');
  };

  it("point at the error's own line and column, also where JSON.parse gives no position", () => {
    // V8 says "Unexpected token" for these with no position (and the whole text in its message)
    expect(errorAt('{\n  "packages": [ "a@1", ],\n  "env": { "A": }\n}\n')).toBe(
      '3:17: expected a value, found "}"',
    );
    expect(errorAt('{\n  // comment\n  "packages": [ "a@1",, "b@2" ]\n}')).toBe(
      '3:23: expected a value, found ","',
    );
    expect(errorAt('{\n  "env": { "DEBUG": tru }\n}')).toBe('2:21: expected a value, found "tru"');
    expect(errorAt('{\n  "packages": [\n    "a@1"\n    "b@2"\n  ]\n}')).toBe(
      "4:5: expected ',' or ']' after a list element, found \"\\\"\"",
    );
    expect(errorAt('{\n  "env": { "A": "1" }\n}\n}\n')).toBe(
      '4:1: unexpected "}" after the end of the JSON value',
    );
    expect(errorAt('{\n  "env": { "A": "x\n  }\n}')).toBe('2:17: unterminated string');
    expect(errorAt('{\n  packages: []\n}')).toBe('2:3: expected a property name in double quotes, found "p"');
    expect(errorAt('{\n  "packages": ["a@1"]\n')).toBe(
      "3:1: expected ',' or '}' after a property value, found end of file",
    );
    expect(errorAt('')).toBe('1:1: expected a value, found end of file');
  });
});

describe('devbox project', () => {
  it('reads the lock paths of each package for x86_64-linux and makes their closure', async () => {
    const { dir, busybox } = fixtureProject(fx);
    const project = readDevboxProject(dir);
    expect(project.env).toEqual({ GREETING: 'hello // from devbox' });
    const d = await devboxClosure(project, 'x86_64-linux');
    expect(d.packages.map((p) => [p.spec, p.lockKey, p.storePaths, p.from])).toEqual([
      ['fixture-app@1.0', 'fixture-app@1.0', [fx.app], 'lock'],
      ['busybox@1.36.1', 'busybox@1.36.1', [busybox], 'lock'],
    ]);
    expect(d.closure.roots).toEqual([fx.app, busybox]);
    expect([...d.closure.paths.keys()].sort()).toEqual(fx.paths);
    // The devbox.json file itself names the project too, as devbox's --config takes it.
    const byFile = readDevboxProject(join(dir, 'devbox.json'));
    expect(byFile.dir).toBe(dir);
    expect(byFile.packages).toEqual(project.packages);
  });

  it('takes the default outputs, or those devbox.json asks for; object form and platforms', async () => {
    const busybox = fx.paths.find((p) => p.endsWith('-busybox'))!;
    const data = fx.paths.find((p) => p.endsWith('-fixture-data'))!;
    const outputs = [
      { name: 'out', path: fx.app, default: true },
      { name: 'data', path: data },
    ];
    const dir = writeDevboxProject({
      json: {
        packages: {
          'fixture-app': { version: '1.0', outputs: ['data'] },
          busybox: 'latest',
          'mac-only': { version: '1', platforms: ['aarch64-darwin'] },
          'not-on-x86': { version: '2', excluded_platforms: ['x86_64-linux'] },
        },
      },
      lock: {
        lockfile_version: '1',
        packages: {
          'fixture-app@1.0': { systems: { 'x86_64-linux': { outputs } } },
          'busybox@latest': { systems: { 'x86_64-linux': { outputs: [{ name: 'out', path: busybox }] } } },
        },
      },
    });
    const d = await devboxClosure(readDevboxProject(dir), 'x86_64-linux');
    expect(d.packages.map((p) => p.storePaths)).toEqual([[data], [busybox]]);
    expect(d.excluded).toEqual(['mac-only@1', 'not-on-x86@2']);
  });

  it('takes `outputs: []` as the default outputs, as devbox does, not as no paths at all', async () => {
    const data = fx.paths.find((p) => p.endsWith('-fixture-data'))!;
    const dir = writeDevboxProject({
      json: { packages: { 'fixture-app': { version: '1.0', outputs: [] } } },
      lock: {
        lockfile_version: '1',
        packages: {
          'fixture-app@1.0': {
            systems: {
              'x86_64-linux': {
                outputs: [
                  { name: 'out', path: fx.app, default: true },
                  { name: 'data', path: data },
                ],
              },
            },
          },
        },
      },
    });
    const project = readDevboxProject(dir);
    expect(project.packages[0]!.outputs).toBeUndefined();
    const d = await devboxClosure(project, 'x86_64-linux');
    expect(d.packages.map((p) => p.storePaths)).toEqual([[fx.app]]);
    expect(d.closure.roots).toEqual([fx.app]);
  });

  it('builds packages locked with `resolved` only, and unlocked flake references, with nix build --system', async () => {
    const flake = writeTestFlake();
    const dir = writeDevboxProject({
      json: { packages: ['hello@1', `path:${flake}#busybox`] },
      lock: {
        lockfile_version: '1',
        packages: { 'hello@1': { resolved: `path:${flake}#default`, version: '1' } },
      },
    });
    const log: string[] = [];
    const d = await devboxClosure(readDevboxProject(dir), 'x86_64-linux', { log: (l) => log.push(l) });
    expect(d.packages.map((p) => [p.spec, p.lockKey, p.from])).toEqual([
      ['hello@1', 'hello@1', 'build'],
      [`path:${flake}#busybox`, undefined, 'build'],
    ]);
    expect(d.packages[0]!.storePaths[0]).toMatch(/-flake-hello$/);
    expect(log.filter((l) => l.includes(' build '))).toEqual([
      `running: nix build --extra-experimental-features 'nix-command flakes' --no-link --json --system x86_64-linux 'path:${flake}#default'`,
      `running: nix build --extra-experimental-features 'nix-command flakes' --no-link --json --system x86_64-linux 'path:${flake}#busybox'`,
    ]);
  });

  it('reads relative flake references from the project directory, wherever nixoci runs', async () => {
    const flake = writeTestFlake();
    const dir = writeDevboxProject({ json: { packages: [] }, lock: null });
    const rel = relative(dir, flake);
    const project = readDevboxProject(dir);
    expect(inProject(project, `path:${rel}#busybox`)).toBe(`path:${flake}#busybox`);
    expect(inProject(project, `./x#app`)).toBe(`${dir}/x#app`);
    expect(inProject(project, `github:o/r#app`)).toBe('github:o/r#app');
    writeFileSync(join(dir, 'devbox.json'), JSON.stringify({ packages: [`path:${rel}#busybox`] }));
    const d = await devboxClosure(readDevboxProject(dir), 'x86_64-linux', {});
    expect(d.packages[0]!.storePaths[0]).toMatch(/busybox/);
  });

  it('asks nix-store to realise aarch64-linux paths that are not on disk, and says which package failed', async () => {
    const { dir } = fixtureProject(fx);
    const log: string[] = [];
    const e = await errorOf(() =>
      devboxClosure(readDevboxProject(dir), 'aarch64-linux', { log: (l) => log.push(l) }),
    );
    expect(log).toContain(`running: nix-store --realise ${absentPath('fixture-app')}`);
    expect(e.code).toBe('DEVBOX');
    expect(e.message).toContain(`${join(dir, 'devbox.lock')}: package fixture-app@1.0 (aarch64-linux)`);
    expect(e.message).toContain('no substituter could provide it');
  });

  it('gives one clear error naming the file (and line or package) for bad projects', async () => {
    const lock = (packages: object, version = '1'): object => ({ lockfile_version: version, packages });
    const syntax = writeDevboxProject({ json: '{\n  "packages": ["a@1"\n  "env": {}\n}', lock: null });
    let e = await errorOf(() => readDevboxProject(syntax));
    expect(e.message).toMatch(
      new RegExp(`^${join(syntax, 'devbox.json')}:3:\\d+: syntax error in devbox.json`),
    );

    const version = writeDevboxProject({ json: { packages: ['a@1'] }, lock: lock({}, '2') });
    e = await errorOf(() => readDevboxProject(version));
    expect(e.message).toBe(
      `${join(version, 'devbox.lock')}: lockfile_version "2" is not supported (nixoci reads version 1)`,
    );

    const missing = writeDevboxProject({ json: { packages: ['curl@8.4.0'] }, lock: lock({}) });
    e = await errorOf(() => devboxClosure(readDevboxProject(missing), 'x86_64-linux'));
    expect(e.message).toBe(
      `${join(missing, 'devbox.lock')}: package curl@8.4.0 from devbox.json is not in the lock`,
    );

    const noSystem = writeDevboxProject({
      json: { packages: ['curl@8.4.0'] },
      lock: lock({ 'curl@8.4.0': { systems: { 'x86_64-darwin': { store_path: absentPath('curl') } } } }),
    });
    e = await errorOf(() => devboxClosure(readDevboxProject(noSystem), 'x86_64-linux'));
    expect(e.message).toBe(
      `${join(noSystem, 'devbox.lock')}: package curl@8.4.0 has no store paths for x86_64-linux (it has: x86_64-darwin)`,
    );

    const excluded = writeDevboxProject({
      json: { packages: { curl: { version: '8.4.0', excluded_platforms: ['x86_64-linux'] } } },
      lock: lock({}),
    });
    e = await errorOf(() => devboxClosure(readDevboxProject(excluded), 'x86_64-linux'));
    expect(e.message).toBe(
      `${join(excluded, 'devbox.json')}: every package is excluded on x86_64-linux (curl@8.4.0)`,
    );

    const shape = writeDevboxProject({ json: { packages: [1] }, lock: null });
    e = await errorOf(() => readDevboxProject(shape));
    expect(e.message).toBe(`${join(shape, 'devbox.json')}: packages.0: Expected string, received number`);

    // a value that fits no form says what the forms are, not zod's "Invalid input"
    for (const [json, text] of [
      [{ packages: 3 }, 'packages: expected a list of "name@version" strings, or an object of name: version'],
      [
        { packages: { curl: 3 } },
        'packages.curl: expected a version string, or an object with version, platforms, excluded_platforms, outputs',
      ],
      [{ packages: { curl: { version: 8 } } }, 'packages.curl.version: Expected string, received number'],
      [
        { shell: { init_hook: 3 } },
        'shell.init_hook: expected a string, or a list of strings (one per line)',
      ],
    ] as const) {
      const dir = writeDevboxProject({ json, lock: null });
      e = await errorOf(() => readDevboxProject(dir));
      expect(e.message).toBe(`${join(dir, 'devbox.json')}: ${text}`);
    }
  });

  it('runs `devbox install` when devbox is on PATH and the lock is missing', async () => {
    const dir = writeDevboxProject({ json: { packages: ['fixture-app@1.0'] }, lock: null });
    // A stand-in devbox that writes the lock, as `devbox install` would.
    const bin = writeDevboxProject({ json: {}, lock: null });
    const lockText = JSON.stringify({
      lockfile_version: '1',
      packages: { 'fixture-app@1.0': { systems: { 'x86_64-linux': { store_path: fx.app } } } },
    });
    writeFileSync(
      join(bin, 'devbox'),
      `#!/bin/sh\n[ "$1" = install ] && [ "$2" = --config ] || exit 3\necho '${lockText}' > "$3/devbox.lock"\n`,
      { mode: 0o755 },
    );
    const log: string[] = [];
    const project = await loadDevboxProject(dir, { searchPath: bin, log: (l) => log.push(l) });
    expect(log).toEqual([`running: ${join(bin, 'devbox')} install --config ${dir}`]);
    const d = await devboxClosure(project, 'x86_64-linux');
    expect(d.closure.roots).toEqual([fx.app]);
  });
});
