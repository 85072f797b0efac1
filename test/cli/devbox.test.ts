import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { absentPath, fixtureProject, writeDevboxProject } from '../helpers/devbox.js';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { writeTestFlake } from '../helpers/flake.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-devbox-cli-'));
const env = { NIX_REMOTE: '' };
let fx: FixtureClosure;
let project: { dir: string; busybox: string };
const images: string[] = [];

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'devbox-cli' });
  project = fixtureProject(fx);
});
afterAll(async () => {
  await dockerRmi(...images);
});

/** nixoci build --to docker-archive, then docker load; returns the image reference. */
async function buildAndLoad(name: string, args: string[], cwd = project.dir): Promise<string> {
  const ref = `nixoci-devbox-test-${name}:latest`;
  const archive = join(work, `${name}.tar`);
  const r = await nixoci(['build', ...args, '--to', `docker-archive:${archive}:${ref}`, '--no-cache'], {
    cwd,
    env,
  });
  expect(r.stderr).not.toContain('error');
  expect(r.code).toBe(0);
  await docker(['load', '-i', archive]);
  images.push(ref);
  return ref;
}

interface InspectReport {
  plans: {
    architecture: string;
    packages?: { package: string; storePaths: { path: string; layer: number | null }[] }[];
    layers: { storePaths: string[] }[];
  }[];
}

describe('devbox projects', () => {
  it('become an image that runs the packages from /bin on PATH (devbox.json in the working directory)', async () => {
    const ref = await buildAndLoad('default', []);
    const out = await dockerRunOutput(ref, [
      'sh',
      '-c',
      'command -v app; app; echo "$GREETING"; id -u; ls -ld /tmp',
    ]);
    const lines = out.split('\n');
    expect(lines[0]).toBe('/bin/app');
    expect(out).toContain('fixture app devbox-cli');
    expect(out).toContain('fixture-data run: ok');
    expect(out).toContain('hello // from devbox');
    expect(out).toMatch(/\n0\ndrwxrwxrwt /);
    const config = JSON.parse(
      (await docker(['image', 'inspect', ref, '--format', '{{json .Config}}'])).stdout,
    );
    expect(config.Env[0]).toBe(`PATH=/bin:/usr/bin:${fx.app}/bin:${project.busybox}/bin`);
    expect(config.Env).toContain('HOME=/root');
    // /etc/passwd and /usr/bin/env from the customisation layer
    const etc = await dockerRunOutput(ref, [
      'sh',
      '-c',
      'cat /etc/passwd; readlink /usr/bin/env; readlink /bin/app',
    ]);
    expect(etc).toContain('root:x:0:0:root:/root:/bin/sh\n');
    expect(etc).toContain(`${project.busybox}/bin/env\n${fx.app}/bin/app\n`);
  });

  it('finds the project above the working directory, as devbox does, or says there is none', async () => {
    // all under one fresh directory, which is also where the search stops
    const top = realpathSync(mkdtempSync(join(tmpdir(), 'hx-devbox-up-')));
    const p = fixtureProject(fx, {}, join(top, 'proj'));
    const deep = join(p.dir, 'src', 'deep');
    mkdirSync(deep, { recursive: true });
    const ceiling = { ...env, NIXOCI_DEVBOX_CEILING: top };
    const r = await nixoci(['inspect', '--verbose'], { cwd: deep, env: ceiling });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`devbox project: ${p.dir} (its devbox.json is above the working directory)\n`);
    expect(r.stdout).toMatch(new RegExp(`^fixture-app@1.0 .* ${fx.app}$`, 'm'));
    // a relative flake reference is still read from the project directory, not the working one
    const flake = writeTestFlake();
    const rel = writeDevboxProject(
      { json: { packages: [`path:${relative(join(top, 'rel'), flake)}#busybox`] }, lock: null },
      join(top, 'rel'),
    );
    mkdirSync(join(rel, 'sub'));
    const fr = await nixoci(['inspect'], { cwd: join(rel, 'sub'), env: ceiling });
    expect(fr.code, fr.stderr).toBe(0);
    expect(fr.stdout).toContain('#busybox');
    // none up to the ceiling: a usage error that says where it looked
    const none = join(top, 'none', 'sub');
    mkdirSync(none, { recursive: true });
    const n = await nixoci(['build', '--to', `oci:${join(top, 'out')}`], { cwd: none, env: ceiling });
    expect(n.code).toBe(2);
    expect(n.stderr.split('\n')[0]).toBe(
      `nixoci: error: nixoci build: no source: give --devbox DIR, --installable REF, --file X.nix, --graph FILE or --path STOREPATH (or run it in a devbox project: there is no devbox.json in ${none} or above it)`,
    );
    expect(existsSync(join(top, 'out'))).toBe(false);
    rmSync(top, { recursive: true, force: true });
  });

  it('--preset runtime runs as uid 1000 with HOME set, /tmp writable and /app as its workdir', async () => {
    const ref = await buildAndLoad('runtime', ['--devbox', project.dir, '--preset', 'runtime'], work);
    const out = await dockerRunOutput(ref, [
      'sh',
      '-c',
      'id -u; id -g; echo "$HOME"; pwd; touch /tmp/x && echo tmp-writable; touch /app/y && echo app-writable; touch "$HOME/z" && echo home-writable',
    ]);
    expect(out).toBe('1000\n1000\n/home/app\n/app\ntmp-writable\napp-writable\nhome-writable\n');
  });

  it('--user NAME:UID and --copy add a user and project files', async () => {
    const ref = await buildAndLoad('copy', [
      '--user',
      'svc:4242',
      '--copy',
      `${join(project.dir, 'devbox.json')}:/srv/config/`,
    ]);
    const out = await dockerRunOutput(ref, ['sh', '-c', 'id -un; id -u; head -c 2 /srv/config/devbox.json']);
    expect(out).toBe('svc\n4242\n{\n');
  });

  it('expands $PATH and $PWD in devbox.json env, as devbox does, and nothing else', async () => {
    const p = fixtureProject(fx, {
      env: { PATH: '/custom:$PATH', WHERE: '${PWD}/x', LIT: '$PATHS $HOME' },
    });
    const ref = await buildAndLoad('envexp', ['--devbox', p.dir, '--workdir', '/srv'], work);
    const config = JSON.parse(
      (await docker(['image', 'inspect', ref, '--format', '{{json .Config}}'])).stdout,
    );
    expect(config.Env).toContain(`PATH=/custom:/bin:/usr/bin:${fx.app}/bin:${p.busybox}/bin`);
    expect(config.Env).toContain('WHERE=/srv/x');
    expect(config.Env).toContain('LIT=$PATHS $HOME');
    expect(await dockerRunOutput(ref, ['sh', '-c', 'command -v app'])).toBe('/bin/app\n');
  });

  it('expands $PWD to / without a workdir, and $PWD/x to /x rather than //x', async () => {
    const p = fixtureProject(fx, { env: { AT: '$PWD', DATA: '$PWD/data', CONF: '${PWD}/etc:$PWD' } });
    const layout = join(work, 'pwd-root');
    const r = await nixoci(['build', '--devbox', p.dir, '--to', `oci:${layout}`, '--no-cache'], { env });
    expect(r.code, r.stderr).toBe(0);
    const blob = (d: string): unknown =>
      JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', d.slice(7)), 'utf8'));
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    const manifest = blob(index.manifests[0].digest) as { config: { digest: string } };
    const config = blob(manifest.config.digest) as { config: { Env: string[]; WorkingDir?: string } };
    expect(config.config.WorkingDir ?? '').toBe('');
    expect(config.config.Env).toEqual(expect.arrayContaining(['AT=/', 'DATA=/data', 'CONF=/etc:/']));
  });

  it('--user with uid 0 or an existing system name, and --workdir on a store directory', async () => {
    const zero = await buildAndLoad('uid0', ['--user', 'ops:0', '--bin-farm']);
    expect(
      await dockerRunOutput(zero, [
        'sh',
        '-c',
        'grep -c ^ops:x:0:0: /etc/passwd; id -u; echo "$HOME"; test -d "$HOME" && echo home',
      ]),
    ).toBe('1\n0\n/home/ops\nhome\n');
    const nobody = await buildAndLoad('nobody', ['--user', 'nobody:65534', '--bin-farm']);
    expect(await dockerRunOutput(nobody, ['sh', '-c', 'id -un; grep -c ^nobody: /etc/passwd'])).toBe(
      'nobody\n1\n',
    );
    // the app user owns a workdir of its own, never a store directory
    const store = await buildAndLoad('storewd', ['--preset', 'runtime', '--workdir', '/nix/store']);
    expect(
      await dockerRunOutput(store, [
        'sh',
        '-c',
        'stat -c %u /nix/store; touch /nix/store/x 2>/dev/null || echo denied',
      ]),
    ).toBe('0\ndenied\n');
  });

  it('--arch amd64,arm64 takes the paths of each architecture straight from the lock, realising nothing present', async () => {
    // A lock whose aarch64-linux entries name paths that exist here (the lock is only data), so
    // the arm64 image can be written: its config says arm64 and holds exactly those paths.
    const busybox = project.busybox;
    const dir = writeDevboxProject({
      json: { packages: ['fixture-app@1.0', 'busybox@1.36.1'] },
      lock: {
        lockfile_version: '1',
        packages: {
          'fixture-app@1.0': {
            systems: {
              'x86_64-linux': { store_path: fx.app },
              'aarch64-linux': { outputs: [{ name: 'out', path: fx.app, default: true }] },
            },
          },
          'busybox@1.36.1': {
            systems: { 'x86_64-linux': { store_path: busybox }, 'aarch64-linux': { store_path: busybox } },
          },
        },
      },
    });
    const layout = join(work, 'multi');
    const r = await nixoci(
      ['build', '--arch', 'amd64,arm64', '--verbose', '--to', `oci:${layout}`, '--no-cache'],
      {
        cwd: dir,
        env,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('nix-store --realise');
    const blob = (d: string): unknown =>
      JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', d.slice(7)), 'utf8'));
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    const list = blob(index.manifests[0].digest) as {
      manifests: { digest: string; platform: { architecture: string } }[];
    };
    expect(list.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    const arm = blob(list.manifests[1]!.digest) as { config: { digest: string }; layers: unknown[] };
    const config = blob(arm.config.digest) as { architecture: string; config: { Env: string[] } };
    expect(config.architecture).toBe('arm64');
    expect(config.config.Env[0]).toBe(`PATH=/bin:/usr/bin:${fx.app}/bin:${busybox}/bin`);
    expect(arm.layers).toHaveLength(fx.paths.length + 1);
  });

  it('--arch arm64 asks nix-store for the aarch64-linux paths of the lock and names the package it cannot get', async () => {
    const r = await nixoci(['build', '--arch', 'arm64', '--verbose', '--to', `oci:${join(work, 'arm')}`], {
      cwd: project.dir,
      env,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`running: nix-store --realise ${absentPath('fixture-app')}\n`);
    expect(r.stderr).toContain(
      `nixoci: error: ${join(project.dir, 'devbox.lock')}: package fixture-app@1.0 (aarch64-linux): cannot realise ${absentPath('fixture-app')}: it is not in the local store and no substituter could provide it`,
    );
    expect(existsSync(join(work, 'arm'))).toBe(false);
  });

  it('bad devbox files exit 1 with one line naming the file and the package', async () => {
    const cases: [string, object | string, object | null, string][] = [
      ['syntax', '{ "packages": [ "a@1" }', null, 'devbox.json:1:'],
      // not the end of the file: the line and column of the error, in one line
      [
        'syntax-line',
        '{\n  "packages": [ "a@1", ],\n  "env": { "A": }\n}\n',
        null,
        'devbox.json:3:17: syntax error in devbox.json: expected a value, found "}"',
      ],
      [
        'version',
        { packages: ['a@1'] },
        { lockfile_version: '9', packages: {} },
        'devbox.lock: lockfile_version "9"',
      ],
      [
        'missing',
        { packages: ['curl@8.4.0'] },
        { lockfile_version: '1', packages: {} },
        'package curl@8.4.0',
      ],
      [
        'excluded',
        { packages: { curl: { version: '8', excluded_platforms: ['x86_64-linux'] } } },
        { lockfile_version: '1', packages: {} },
        'every package is excluded on x86_64-linux (curl@8)',
      ],
    ];
    for (const [name, json, lock, expected] of cases) {
      const dir = writeDevboxProject({ json, lock }, join(work, `bad-${name}`));
      const r = await nixoci(['build', '--to', `oci:${join(work, 'bad')}`], { cwd: dir, env });
      expect(r.code, name).toBe(1);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines, name).toHaveLength(2);
      expect(lines[0], name).toContain(`nixoci: error: ${dir}/`);
      expect(lines[0], name).toContain(expected);
      expect(lines[1], name).toMatch(/^hint: /);
    }
  });

  it('warns once that shell.init_hook and env_from are not applied, and not for the hook devbox init writes', async () => {
    // locked for both systems with a path present here, so that --arch amd64,arm64 needs no builder
    const lock = {
      lockfile_version: '1',
      packages: {
        'fixture-app@1.0': {
          systems: { 'x86_64-linux': { store_path: fx.app }, 'aarch64-linux': { store_path: fx.app } },
        },
      },
    };
    const pkg = 'fixture-app@1.0';
    const warn = (dir: string, what: string, verb: string, sets: string): string =>
      `nixoci: warning: ${join(dir, 'devbox.json')}: ${what} ${verb} not applied: an image has no devbox shell to run it in, so what ${sets} not in the image's environment; give such variables with --env KEY=VALUE\n`;
    const both = writeDevboxProject({
      json: { packages: [pkg], env_from: '.env', shell: { init_hook: ['export TOKEN=$(cat token)'] } },
      lock,
    });
    // one warning for the run, not one per architecture
    const r = await nixoci(['inspect', '--devbox', both, '--arch', 'amd64,arm64'], { env });
    expect([r.code, r.stderr]).toEqual([0, warn(both, 'shell.init_hook and env_from', 'are', 'they set is')]);
    const hook = writeDevboxProject({
      json: { packages: [pkg], shell: { init_hook: 'source ./venv/bin/activate' } },
      lock,
    });
    const h = await nixoci(['inspect', '--devbox', hook], { env });
    expect([h.code, h.stderr]).toEqual([0, warn(hook, 'shell.init_hook', 'is', 'it sets is')]);
    expect((await nixoci(['inspect', '--devbox', hook, '-q'], { env })).stderr).toBe('');
    // what `devbox init` writes, and an empty env_from, say nothing
    const fresh = writeDevboxProject({
      json: {
        packages: [pkg],
        env_from: '',
        shell: { init_hook: ["echo 'Welcome to devbox!' > /dev/null", ''], scripts: { test: 'echo x' } },
      },
      lock,
    });
    const f = await nixoci(['inspect', '--devbox', fresh], { env });
    expect([f.code, f.stderr]).toEqual([0, '']);
  });

  it('inspect prints each package with its store paths, layer and size, and writes the graph', async () => {
    const r = await nixoci(['inspect', '--graph-out', join(work, 'g.dot')], { cwd: project.dir, env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^fixture-app@1.0 +1.0 +\\d+ +[\\d.]+ \\w*B +${fx.app}$`, 'm'));
    expect(r.stdout).toMatch(
      new RegExp(`^busybox@1.36.1 +1.36.1 +\\d+ +[\\d.]+ \\w*B +${project.busybox}$`, 'm'),
    );
    expect(r.stdout).toContain('(customisation layer)');
    // a long flake reference widens its column instead of running into the version
    const flake = writeTestFlake();
    const long = writeDevboxProject({ json: { packages: [`path:${flake}#busybox`] }, lock: null });
    const wide = await nixoci(['inspect', '--devbox', long], { env });
    expect(wide.code, wide.stderr).toBe(0);
    expect(wide.stdout).toMatch(new RegExp(`^path:${flake}#busybox {2,}- {2,}\\d+ `, 'm'));
    expect(wide.stderr).toBe('');
    // plugins are not read: said once, not hidden; --quiet keeps it quiet
    const plugins = writeDevboxProject({
      json: { packages: [`path:${flake}#busybox`], include: ['plugin:nginx', 'github:org/repo?dir=p'] },
      lock: null,
    });
    const warned = await nixoci(['inspect', '--devbox', plugins], { env });
    expect([warned.code, warned.stderr]).toEqual([
      0,
      `nixoci: warning: ${join(plugins, 'devbox.json')}: include (2 plugins) is not read: packages, env and files a plugin adds are not in the image\n`,
    ]);
    expect((await nixoci(['inspect', '--devbox', plugins, '-q'], { env })).stderr).toBe('');
    const dot = readFileSync(join(work, 'g.dot'), 'utf8');
    expect(dot).toMatch(/^digraph closure \{/);
    expect(dot).toContain(`${JSON.stringify(fx.app)} -> ${JSON.stringify(project.busybox)};`);
    const svg = await nixoci(['inspect', '--graph-out', join(work, 'g.SVG')], { cwd: project.dir, env });
    expect(svg.code).toBe(0);
    expect(readFileSync(join(work, 'g.SVG'), 'utf8')).toContain('<svg');

    const report = await nixociJson<InspectReport>(['inspect'], { cwd: project.dir, env });
    const plan = report.plans[0]!;
    const app = plan.packages!.find((p) => p.package === 'fixture-app@1.0')!;
    expect(plan.layers[app.storePaths[0]!.layer!]!.storePaths).toEqual([fx.app]);
  });
});
