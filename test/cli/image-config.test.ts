// Image config fields people bring from dockerTools and nix2container (Volumes, StopSignal),
// written by the CLI and read back by the Docker engine, umoci and skopeo.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, dockerRmi } from '../helpers/docker.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'nixoci-image-config-'));
const tmp = (name: string): string => join(work, name);
const loaded = 'hx-m-image-config:v1';
let fx: FixtureClosure;
/** A store path made by `nix-store --add` of a fixed file: the same path (and layer) everywhere. */
let golden: string;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'image-config-test' });
  const dir = mkdtempSync(join(tmpdir(), 'nixoci-golden-'));
  writeFileSync(join(dir, 'nixoci-config-golden.txt'), 'nixoci golden image config\n');
  golden = (
    await run('nix-store', ['--add', join(dir, 'nixoci-config-golden.txt')], {
      env: { ...process.env, NIX_REMOTE: '' },
    })
  ).stdout.trim();
});

afterAll(async () => {
  await dockerRmi(loaded);
});

/** The OCI layout's top manifest or index (index.json's only entry), and the blob it names. */
function layoutTop(dir: string): { digest: string; json: Record<string, unknown> } {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const digest = index.manifests[0]!.digest;
  return { digest, json: JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), 'utf8')) };
}

function layoutConfig(dir: string): { config: Record<string, unknown> } {
  const { json } = layoutTop(dir);
  const c = (json.config as { digest: string }).digest;
  return JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', c.slice(7)), 'utf8'));
}

describe('image config fields', () => {
  it('keeps the digests of images built without the new flags (golden, from before they existed)', async () => {
    const one = await nixociJson<{ manifestDigest: string }>([
      ...['build', '--path', golden, '--no-cache', '--to', `oci:${tmp('golden-1')}:t`],
      ...['--entrypoint', '["/x","y"]', '--cmd', 'a b', '--env', 'A=1', '--workdir', '/w', '--user', '1:2'],
      ...['--expose', '80', '--expose', '53/udp', '--label', 'b=2', '--label', 'a=1'],
    ]);
    expect(one.manifestDigest).toBe(
      'sha256:28e2257b682bc6a3b3cc2754384ed56621364c29413971ebc713c79060873deb',
    );
    const both = await nixociJson<{ manifestDigest: string }>([
      ...['build', '--path', golden, '--no-cache', '--arch', 'amd64,arm64'],
      ...['--to', `oci:${tmp('golden-2')}:t`],
    ]);
    expect(both.manifestDigest).toBe(
      'sha256:7fd2b990618f7094f5db29358a8c7ce849b95434c59344fb6e202d1e44afbacf',
    );
  });

  it('writes Volumes (a sorted set) and StopSignal (SIGNAME), which docker inspect shows and docker stop sends', async () => {
    const busybox = fx.paths.find((p) => p.endsWith('-busybox'))!;
    const build = (dir: string, flags: string[]): Promise<{ manifestDigest: string }> =>
      nixociJson(['build', '--graph', fx.graphFile, '--to', `oci:${dir}:t`, ...flags]);
    const a = await build(tmp('vol-a'), [
      ...['--volume', '/var/log', '--volume', '/data', '--volume', '/data', '--stop-signal', 'usr1'],
    ]);
    const b = await build(tmp('vol-b'), [
      '--stop-signal',
      'SIGUSR1',
      '--volume',
      '/data',
      '--volume',
      '/var/log',
    ]);
    expect(b.manifestDigest).toBe(a.manifestDigest);
    const cfg = layoutConfig(tmp('vol-a')).config;
    expect(cfg.Volumes).toEqual({ '/data': {}, '/var/log': {} });
    expect(Object.keys(cfg.Volumes as object)).toEqual(['/data', '/var/log']);
    expect(cfg.StopSignal).toBe('SIGUSR1');
    const shown = await nixoci(['inspect', `oci:${tmp('vol-a')}:t`]);
    expect(shown.stdout).toContain('\n  volumes    /data, /var/log\n  stopsignal SIGUSR1\n');
    execFileSync('umoci', ['unpack', '--rootless', '--image', `${tmp('vol-a')}:t`, tmp('vol-bundle')]);
    const spec = JSON.parse(readFileSync(join(tmp('vol-bundle'), 'config.json'), 'utf8')) as {
      annotations: Record<string, string>;
    };
    expect(spec.annotations['org.opencontainers.image.stopSignal']).toBe('SIGUSR1');

    await dockerRmi(loaded);
    const r = await nixoci([
      ...['build', '--graph', fx.graphFile, '--to', `docker-daemon:${loaded}`, '-H', testEnv().dockerHost],
      ...['--volume', '/data', '--stop-signal', 'USR1'],
      // PID 1 ignores a signal it has no handler for: only USR1 (the image's stop signal) ends it
      ...[
        '--entrypoint',
        JSON.stringify([
          `${busybox}/bin/sh`,
          '-c',
          'trap "exit 7" USR1; echo up; while :; do sleep 0.1; done',
        ]),
      ],
    ]);
    expect(r.code, r.stderr).toBe(0);
    const inspect = JSON.parse((await docker(['image', 'inspect', loaded])).stdout) as {
      Config: { Volumes: Record<string, unknown>; StopSignal: string };
    }[];
    expect(inspect[0]!.Config.Volumes).toEqual({ '/data': {} });
    expect(inspect[0]!.Config.StopSignal).toBe('SIGUSR1');
    const read = await nixociJson<{ image: { runConfig: Record<string, unknown> } }>([
      ...['inspect', `docker-daemon:${loaded}`, '-H', testEnv().dockerHost],
    ]);
    expect(read.image.runConfig).toMatchObject({ Volumes: { '/data': {} }, StopSignal: 'SIGUSR1' });
    const id = (await docker(['run', '-d', '--network', 'none', loaded])).stdout.trim();
    try {
      // up (its signal handler set) before it is stopped, however long a busy machine takes
      for (const end = Date.now() + 90_000; !(await docker(['logs', id])).stdout.includes('up');) {
        if (Date.now() > end) throw new Error('the container did not say up within 90 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      await docker(['stop', '-t', '20', id]);
      expect((await docker(['inspect', '-f', '{{.State.ExitCode}}', id])).stdout.trim()).toBe('7');
    } finally {
      await docker(['rm', '-f', '-v', id], { check: false });
    }
  });

  it('refuses a --volume or --stop-signal that the runtime would refuse, with one line and exit code 2', async () => {
    const cases: [string[], string][] = [
      [['--volume', 'data'], '--volume "data": must be an absolute path (e.g. /data)'],
      [['--volume', '/'], '--volume /: the root directory cannot be a volume'],
      [['--volume', '/src:/data'], 'a bind mount SRC:DEST is given at run time (docker run -v)'],
      [['--stop-signal', 'SIGFOO'], '--stop-signal "SIGFOO": not a signal'],
      [['--stop-signal', '0'], '--stop-signal "0": not a signal'],
      [['--stop-signal', '65'], '--stop-signal "65": not a signal'],
      [['--stop-signal', '-9'], '--stop-signal has no value'],
    ];
    for (const [flags, message] of cases) {
      const r = await nixoci(['build', '--path', golden, '--to', `oci:${tmp('refused')}`, ...flags]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(message);
    }
    // what Docker takes: RT signals and numbers, written as given when a number
    const ok = await nixociJson([
      'build',
      '--path',
      golden,
      '--to',
      `oci:${tmp('rt')}:t`,
      '--stop-signal',
      'sigrtmin+3',
    ]);
    expect(ok).toBeTruthy();
    expect(layoutConfig(tmp('rt')).config.StopSignal).toBe('SIGRTMIN+3');
    await nixociJson(['build', '--path', golden, '--to', `oci:${tmp('num')}:t`, '--stop-signal', '15']);
    expect(layoutConfig(tmp('num')).config.StopSignal).toBe('15');
  });

  it('writes --annotation on the manifests and the index a registry gets, as skopeo reads them', async () => {
    const repo = `${testEnv().registry}/hx-m-annotations`;
    const raw = async (
      ref: string,
    ): Promise<{ annotations?: Record<string, string>; manifests?: { digest: string }[] }> =>
      JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])).stdout);
    const push = (tag: string, flags: string[]): Promise<{ manifestDigest: string }> =>
      nixociJson(['push', '--path', golden, '--arch', 'amd64,arm64', `docker://${repo}:${tag}`, ...flags]);
    const source = 'org.opencontainers.image.source=https://example.com/app';
    const pushed = await push('multi', [
      ...['--annotation', 'index:org.opencontainers.image.description=an app'],
      ...[
        '--annotation',
        source,
        '--annotation',
        'manifest:com.example.z=1',
        '--annotation',
        'manifest:com.example.a=2',
      ],
    ]);
    const index = await raw(`${repo}:multi`);
    expect(index.annotations).toEqual({
      'org.opencontainers.image.description': 'an app',
      'org.opencontainers.image.source': 'https://example.com/app',
    });
    expect(index.manifests).toHaveLength(2);
    for (const m of index.manifests!) {
      const manifest = await raw(`${repo}@${m.digest}`);
      // in key order, and nixoci's own layer annotations as before
      expect(Object.entries(manifest.annotations!)).toEqual([
        ['com.example.a', '2'],
        ['com.example.z', '1'],
        ['org.opencontainers.image.source', 'https://example.com/app'],
      ]);
      expect(JSON.stringify(manifest)).toContain('"dev.nixoci.store-paths"');
    }
    type Inspected = { image: { annotations: Record<string, string>; indexAnnotations: unknown } };
    const inspected = await nixociJson<Inspected>(['inspect', `docker://${repo}:multi`, '--arch', 'arm64']);
    expect(inspected.image.indexAnnotations).toEqual(index.annotations);
    expect(inspected.image.annotations).toMatchObject({ 'com.example.a': '2' });
    const text = (await nixoci(['inspect', `docker://${repo}:multi`])).stdout;
    expect(text).toContain('\n  index annotation org.opencontainers.image.description=an app\n');
    expect(text).toContain('\n  annotation com.example.a=2\n');
    // another description: a new index under the tag; the same flags again: the same digest
    const again = await push('multi', ['--annotation', 'index:org.opencontainers.image.description=v2']);
    expect(again.manifestDigest).not.toBe(pushed.manifestDigest);
    expect((await raw(`${repo}:multi`)).annotations).toEqual({
      'org.opencontainers.image.description': 'v2',
    });

    // one platform: the manifest the tag names carries them
    await nixociJson(['push', '--path', golden, `docker://${repo}:single`, '--annotation', source]);
    expect((await raw(`${repo}:single`)).annotations).toEqual({
      'org.opencontainers.image.source': 'https://example.com/app',
    });
  });

  it('writes --annotation into an OCI layout that umoci reads, and refuses it where no manifest is kept', async () => {
    const dir = tmp('annotated');
    await nixociJson(['build', '--path', golden, '--to', `oci:${dir}:t`, '--annotation', 'com.example.k=v']);
    expect(layoutTop(dir).json.annotations).toEqual({ 'com.example.k': 'v' });
    const stat = JSON.parse(
      execFileSync('umoci', ['stat', '--json', '--image', `${dir}:t`], { encoding: 'utf8' }),
    );
    expect(stat.history).toHaveLength(1);
    // umoci 0.4 reads the layout (and its annotated manifest) and unpacks it; it copies only the
    // config's labels into the bundle, so the annotation is checked in the manifest above
    execFileSync('umoci', ['unpack', '--rootless', '--image', `${dir}:t`, tmp('annotated-bundle')]);

    const cases: [string[], string][] = [
      [['--annotation', 'novalue'], '--annotation novalue: expected [manifest:|index:]KEY=VALUE'],
      [['--annotation', '=v'], '--annotation =v: expected [manifest:|index:]KEY=VALUE'],
      [['--annotation', 'manifest-descriptor:a=b'], '"manifest-descriptor" is not where an annotation goes'],
      [['--annotation', 'dev.nixoci.store-paths=x'], "keys starting with dev.nixoci. are nixoci's own"],
      [['--annotation', 'index:a=b'], '--annotation index:a=b: one --arch makes no index'],
    ];
    for (const [flags, message] of cases) {
      const r = await nixoci(['build', '--path', golden, '--to', `oci:${tmp('refused')}`, ...flags]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(message);
    }
    const load = await nixoci(['load', '--path', golden, 'hx-m-annotated:t', '--annotation', 'a=b']);
    expect(load.code, load.stderr).toBe(2);
    expect(load.stderr).toContain('keeps no manifest to annotate');
    const archive = await nixoci([
      'build',
      '--path',
      golden,
      '--to',
      `docker-archive:${tmp('a.tar')}`,
      '--annotation',
      'a=b',
    ]);
    expect(archive.code, archive.stderr).toBe(2);
    // with an OCI layout beside it, the archive is written as ever
    await nixociJson([
      ...['build', '--path', golden, '--annotation', 'a=b'],
      ...['--to', `docker-archive:${tmp('b.tar')}`, '--to', `oci:${tmp('beside')}:t`],
    ]);
    expect(layoutTop(tmp('beside')).json.annotations).toEqual({ a: 'b' });
  });
});
