// `nixoci inspect IMAGE` and `nixoci diff A B` on images nixoci wrote (OCI layout, docker-archive,
// registry, Docker engine) and on one `skopeo copy` rewrote (no nixoci annotations: store paths come
// from the config history). Every figure is checked against what the writer reported or wrote.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiffReportJson, ImageReportJson, InspectImageJson } from '../../src/cli/report-schema.js';
import type { Digest } from '../../src/core/digest.js';
import { pickPlatform } from '../../src/registry/read/image-source.js';
import { docker, dockerRmi } from '../helpers/docker.js';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { uniqueRepo } from '../registry/push-helpers.js';

const env = testEnv();
const work = mkdtempSync(join(tmpdir(), 'nixoci-inspect-'));
const ociA = join(work, 'a');
const ociB = join(work, 'b');
const archive = join(work, 'a.tar');
const skopeoDir = join(work, 'skopeo');
const engineRef = `nixoci-inspect-test:${process.pid}`;
const dockerEnv = { DOCKER_HOST: env.dockerHost };
let v1: FixtureClosure;
let v2: FixtureClosure;
let built: ImageReportJson;

const blob = (dir: string, d: string): Buffer => readFileSync(join(dir, 'blobs', 'sha256', d.slice(7)));

beforeAll(async () => {
  v1 = await buildFixtureClosure({ tag: 'inspect-a' });
  v2 = await buildFixtureClosure({ tag: 'inspect-b' });
  built = await nixociJson<ImageReportJson>([
    'build',
    '--graph',
    v1.graphFile,
    '--to',
    `oci:${ociA}:v1`,
    '--to',
    `docker-archive:${archive}:inspect-a:v1`,
    '--no-cache',
  ]);
  await nixociJson(['build', '--graph', v2.graphFile, '--to', `oci:${ociB}`, '--no-cache']);
});

afterAll(() => dockerRmi(engineRef));

describe('nixoci inspect IMAGE', () => {
  it('reads an OCI layout: digests, sizes and store paths as written, from the annotations', async () => {
    const r = await nixociJson<InspectImageJson>(['inspect', `oci:${ociA}:v1`]);
    const img = r.image;
    expect(img.manifestDigest).toBe(built.manifestDigest);
    expect(img.configDigest).toBe(built.targets[0]!.images[0]!.configDigest);
    expect(img).toMatchObject({ architecture: 'amd64', os: 'linux', created: '1970-01-01T00:00:01Z' });
    expect(img.layers.map((l) => [l.digest, l.diffId, l.size, l.storePaths])).toEqual(
      built.layers.map((l) => [l.digest, l.diffId, l.size, l.storePaths]),
    );
    expect(img.layers.every((l) => l.storePathsFrom === 'annotation')).toBe(true);
    expect(img.layers.map((l) => l.storePaths[0]).sort()).toEqual(v1.paths);
    expect(img.layerCount).toBe(v1.paths.length);
    expect(img.totalSize).toBe(built.layers.reduce((n, l) => n + l.size, 0));
    expect(img.layers.at(-1)!.createdBy).toBe(`nixoci: ${v1.app}`);

    const text = await nixoci(['inspect', `oci:${ociA}:v1`]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`manifest   ${built.manifestDigest}`);
    for (const p of v1.paths) expect(text.stdout).toContain(p);
    expect(text.stdout).toMatch(new RegExp(`total: ${v1.paths.length} layers, .*from annotation`));
  });

  it('reads a docker-archive by its headers: digests are the diffIDs, store paths from history', async () => {
    const r = await nixociJson<InspectImageJson>(['inspect', `docker-archive:${archive}:inspect-a:v1`]);
    expect(r.image.manifestDigest).toBeNull();
    expect(r.image.configDigest).toBe(built.targets[1]!.images[0]!.configDigest);
    expect(r.image.layers.map((l) => [l.digest, l.diffId, l.size, l.storePaths, l.storePathsFrom])).toEqual(
      built.layers.map((l) => [l.diffId, l.diffId, l.size, l.storePaths, 'history']),
    );
  });

  it('reads a docker-archive from a pipe, a FIFO and standard input; says what is wrong with a cut one', async () => {
    const sh = (script: string) =>
      spawnSync('bash', ['-c', script, 'bash', cliBin, archive], { encoding: 'utf8' });
    const want = (await nixociJson<InspectImageJson>(['inspect', `docker-archive:${archive}`])).image;
    for (const script of [
      `"$1" inspect --json docker-archive:<(cat "$2")`,
      `cat "$2" | "$1" inspect --json docker-archive:-`,
      `mkfifo "$2.fifo"; cat "$2" > "$2.fifo" & "$1" inspect --json "docker-archive:$2.fifo"; rm "$2.fifo"`,
    ]) {
      const r = sh(script);
      expect(r.status, `${script}: ${r.stderr}`).toBe(0);
      const got = (JSON.parse(r.stdout) as InspectImageJson).image;
      expect([got.configDigest, got.layers]).toEqual([want.configDigest, want.layers]);
    }
    const dir = await nixoci(['inspect', `docker-archive:${work}`]);
    expect(dir.code).toBe(1);
    expect(dir.stderr).toContain('it is a directory');
    writeFileSync(join(work, 'short.txt'), 'hello\n');
    const short = await nixoci(['inspect', `docker-archive:${join(work, 'short.txt')}`]);
    expect(short.stderr).toContain('short.txt: not a tar archive (6 bytes)');
    // cut early, and halfway (inside a layer, which is skipped, never read)
    for (const keep of [3000, Math.floor(statSync(archive).size / 2)]) {
      const cut = join(work, `cut-${keep}.tar`);
      writeFileSync(cut, readFileSync(archive).subarray(0, keep));
      const r = await nixoci(['inspect', `docker-archive:${cut}`]);
      expect(r.code, String(keep)).toBe(1);
      expect(r.stderr).toContain('the archive ends in the middle of an entry');
    }
  });

  it('reads an image that has one layer twice, which docker save writes as a symlink', async () => {
    const ctx = join(work, 'repeat');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'f1'), 'one\n');
    writeFileSync(join(ctx, 'f2'), 'two\n');
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY f1 /f1\nCOPY f2 /f2\nCOPY f1 /f1\n');
    const tag = `nixoci-inspect-repeat:${process.pid}`;
    await docker(['build', '-q', '--network', 'none', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' } });
    try {
      const saved = join(work, 'repeat.tar');
      await docker(['save', tag, '-o', saved]);
      for (const ref of [`docker-archive:${saved}`, `docker-daemon:${tag}`]) {
        const r = await nixociJson<InspectImageJson>([
          'inspect',
          ref,
          ...(ref.startsWith('docker-daemon') ? ['-H', env.dockerHost] : []),
        ]);
        const layers = r.image.layers;
        expect(layers.length, ref).toBe(3);
        expect(layers[2]!.diffId).toBe(layers[0]!.diffId);
        expect(layers[2]!.size).toBe(layers[0]!.size);
        expect(layers[1]!.diffId).not.toBe(layers[0]!.diffId);
      }
      // an archive of two images: one must be named, as docker.io/library/NAME:TAG too
      const multi = join(work, 'multi.tar');
      writeFileSync(join(ctx, 'Dockerfile.2'), 'FROM scratch\nCOPY f2 /f2\n');
      await docker(
        ['build', '-q', '--network', 'none', '-t', `${tag}-2`, '-f', join(ctx, 'Dockerfile.2'), ctx],
        {
          env: { DOCKER_BUILDKIT: '0' },
        },
      );
      await docker(['save', tag, `${tag}-2`, '-o', multi]);
      const which = await nixoci(['inspect', `docker-archive:${multi}`]);
      expect(which.code).toBe(1);
      expect(which.stderr).toContain('the archive holds 2 images');
      expect(which.stderr).toContain(`docker-archive:FILE:NAME:TAG (its tags: `);
      const named = await nixociJson<InspectImageJson>([
        'inspect',
        `docker-archive:${multi}:docker.io/library/${tag}`,
      ]);
      expect(named.image.layers.length).toBe(3);
    } finally {
      await dockerRmi(tag, `${tag}-2`);
    }
  });

  it('reads an image without layers from the engine inspect (Docker 20.10 cannot export it)', async () => {
    const ctx = join(work, 'empty');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nLABEL a=b\n');
    const tag = `nixoci-inspect-empty:${process.pid}`;
    await docker(['build', '-q', '--network', 'none', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' } });
    try {
      const id = (await docker(['image', 'inspect', '-f', '{{.Id}} {{.Created}}', tag])).stdout.trim();
      // it was: the engine answered HTTP 500 to images/get: empty export - not implemented
      const r = await nixociJson<InspectImageJson>(['inspect', `docker-daemon:${tag}`, '-H', env.dockerHost]);
      expect(r.image).toMatchObject({
        configDigest: id.split(' ')[0],
        created: id.split(' ')[1],
        architecture: 'amd64',
        os: 'linux',
        layerCount: 0,
        layers: [],
      });
      const text = await nixoci(['inspect', `docker-daemon:${tag}`, '-H', env.dockerHost]);
      expect([text.code, text.stderr]).toEqual([0, '']);
      expect(text.stdout).toContain('total: 0 layers, 0 B');
    } finally {
      await dockerRmi(tag);
    }
  });

  it('reads an image skopeo copied from a docker-archive (no annotations: history)', async () => {
    execFileSync('skopeo', ['copy', '-q', `docker-archive:${archive}`, `oci:${skopeoDir}:s1`], {
      stdio: 'pipe',
    });
    const index = JSON.parse(readFileSync(join(skopeoDir, 'index.json'), 'utf8'));
    const manifestDigest: string = index.manifests[0].digest;
    const manifest = JSON.parse(blob(skopeoDir, manifestDigest).toString());
    expect(manifest.layers[0].annotations?.['dev.nixoci.store-paths']).toBeUndefined();

    const r = await nixociJson<InspectImageJson>(['inspect', `oci:${skopeoDir}:s1`]);
    expect(r.image.manifestDigest).toBe(manifestDigest);
    expect(r.image.layers.map((l) => [l.digest, l.size, l.mediaType])).toEqual(
      manifest.layers.map((l: { digest: string; size: number; mediaType: string }) => [
        l.digest,
        l.size,
        l.mediaType,
      ]),
    );
    for (const l of r.image.layers) expect(blob(skopeoDir, l.digest!).length).toBe(l.size);
    expect(r.image.layers.map((l) => [l.diffId, l.storePaths, l.storePathsFrom])).toEqual(
      built.layers.map((l) => [l.diffId, l.storePaths, 'history']),
    );
  });

  it('reads a registry image with the push flags (credentials), and fails clearly without them', async () => {
    const repo = uniqueRepo('inspect');
    const ref = `docker://${env.registryBasic}/${repo}:v1`;
    const creds = `${env.registryBasicUser}:${env.registryBasicPassword}`;
    const pushed = await nixociJson<ImageReportJson>([
      'push',
      '--graph',
      v1.graphFile,
      ref,
      '--creds',
      creds,
      '--no-cache',
    ]);
    const r = await nixociJson<InspectImageJson>(['inspect', ref, '--creds', creds]);
    expect(r.image.manifestDigest).toBe(pushed.manifestDigest);
    expect(r.image.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(r.image.layers.map((l) => [l.digest, l.diffId, l.size, l.mediaType, l.storePaths])).toEqual(
      pushed.layers.map((l) => [l.digest, l.diffId, l.size, l.mediaType, l.storePaths]),
    );
    expect(r.image.layers[0]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    // gzip layers, same content: same diffIDs as the uncompressed layout
    expect(r.image.layers.map((l) => l.diffId)).toEqual(built.layers.map((l) => l.diffId));

    const denied = await nixoci(['inspect', ref], { env: { NIXOCI_REGISTRY_USER: '', DOCKER_CONFIG: work } });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain(`read ${ref}: get manifest v1: 401 UNAUTHORIZED`);
    expect(denied.stderr).toContain('hint: log in with nixoci login');
    const missing = await nixoci(['inspect', `docker://${env.registry}/${repo}:nope`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no such manifest');
  });

  it('reads an image from the Docker engine: the config as loaded, exact tar sizes, history paths', async () => {
    await nixociJson(['load', '--graph', v1.graphFile, engineRef], { env: dockerEnv });
    const r = await nixociJson<InspectImageJson>(['inspect', `docker-daemon:${engineRef}`], {
      env: dockerEnv,
    });
    expect(r.image.configDigest).toBe(built.targets[0]!.images[0]!.configDigest);
    expect(r.image.layers.map((l) => [l.diffId, l.size, l.storePaths, l.storePathsFrom])).toEqual(
      built.layers.map((l) => [l.diffId, l.size, l.storePaths, 'history']),
    );
    const missing = await nixoci(['inspect', 'docker-daemon:nixoci-no-such-image:v0'], { env: dockerEnv });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('the engine has no such image');
  });

  it('picks a platform of a multi-arch index with --arch', async () => {
    const dir = join(work, 'multi');
    const report = await nixociJson<ImageReportJson>([
      'build',
      '--graph',
      v1.graphFile,
      '--arch',
      'amd64,arm64',
      '--to',
      `oci:${dir}`,
      '--no-cache',
    ]);
    const arm = report.targets[0]!.images.find((i) => i.architecture === 'arm64')!;
    const r = await nixociJson<InspectImageJson>(['inspect', `oci:${dir}`, '--arch', 'arm64']);
    expect(r.image).toMatchObject({
      indexDigest: report.manifestDigest,
      manifestDigest: arm.manifestDigest,
      configDigest: arm.configDigest,
      architecture: 'arm64',
      variant: 'v8',
    });
    // the platform as the index names it, variant included
    const text = await nixoci(['inspect', `oci:${dir}`, '--arch', 'arm64']);
    expect(text.stdout).toMatch(/^  platform   linux\/arm64\/v8, created /m);
    expect(r.image.layers.map((l) => l.digest)).toEqual(arm.layers.map((l) => l.digest));
    const amd = await nixociJson<InspectImageJson>(['inspect', `oci:${dir}`]);
    expect(amd.image).toMatchObject({ architecture: 'amd64', os: 'linux', variant: null });
    for (const arch of ['linux/arm64', 'arm64/v8', 'linux/arm64/v8']) {
      const named = await nixociJson<InspectImageJson>(['inspect', `oci:${dir}`, '--arch', arch]);
      expect(named.image.manifestDigest, arch).toBe(arm.manifestDigest);
    }
    const none = await nixoci(['inspect', `oci:${dir}`, '--arch', 's390x']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no s390x image in the index (it has: linux/amd64, linux/arm64/v8)');
    const variant = await nixoci(['inspect', `oci:${dir}`, '--arch', 'arm64/v9']);
    expect(variant.stderr).toContain('no arm64/v9 image in the index');
    // diff reads the index's amd64 image: its header says so, next to the other side's platform
    const armOnly = join(work, 'arm-only');
    await nixociJson(['build', '--graph', v1.graphFile, '--arch', 'arm64', '--to', `oci:${armOnly}`]);
    const d = await nixoci(['diff', `oci:${dir}`, `oci:${armOnly}`]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout.split('\n').slice(0, 2)).toEqual([
      expect.stringMatching(new RegExp(`^A: oci:${dir}  linux/amd64  \\d+ layers, `)),
      expect.stringMatching(new RegExp(`^B: oci:${armOnly}  linux/arm64/v8  \\d+ layers, `)),
    ]);
    // one image of another platform is not shown as the one asked for
    const single = await nixoci(['inspect', `oci:${ociA}`, '--arch', 'arm64']);
    expect(single.code).toBe(1);
    expect(single.stderr).toContain(`oci:${ociA}: the image is linux/amd64, not arm64`);
  });

  it('picks a Linux image when the index also lists another OS for the same architecture', () => {
    const d = (n: string, os: string, architecture: string, variant?: string) => ({
      digest: `sha256:${n.repeat(64)}` as Digest,
      size: 1,
      platform: { os, architecture, ...(variant ? { variant } : {}) },
    });
    const list = [
      d('a', 'windows', 'amd64'),
      d('b', 'linux', 'amd64'),
      d('c', 'linux', 'arm', 'v6'),
      d('e', 'linux', 'arm', 'v7'),
    ];
    expect(pickPlatform(list, undefined, 'x').digest).toBe(list[1]!.digest);
    expect(pickPlatform(list, 'amd64', 'x').digest).toBe(list[1]!.digest);
    expect(pickPlatform(list, 'windows/amd64', 'x').digest).toBe(list[0]!.digest);
    expect(pickPlatform(list, 'arm/v7', 'x').digest).toBe(list[3]!.digest);
    expect(pickPlatform(list, 'arm', 'x').digest).toBe(list[2]!.digest);
    expect(() => pickPlatform(list, 'arm/v8', 'x')).toThrow(
      'no arm/v8 image in the index (it has: windows/amd64, linux/amd64, linux/arm/v6, linux/arm/v7)',
    );
  });

  it('reports usage errors and unreadable images with exit codes 2 and 1', async () => {
    const mixed = await nixoci(['inspect', `oci:${ociA}`, '--graph', v1.graphFile]);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('--graph is a closure source');
    for (const flag of [
      ['--graph-out', 'x.dot'],
      ['--compression', 'zstd'],
      ['--entrypoint', '/bin/sh'],
    ]) {
      const r = await nixoci(['inspect', `oci:${ociA}`, ...flag]);
      expect(r.code, flag[0]).toBe(2);
      expect(r.stderr).toContain(`${flag[0]} is for a closure; an existing image is read as it is`);
    }
    // -q: nothing but errors, the exit code says whether the image is readable
    for (const args of [
      ['inspect', `oci:${ociA}`, '-q'],
      ['inspect', '--graph', v1.graphFile, '-q'],
    ]) {
      const q = await nixoci(args);
      expect([q.code, q.stdout, q.stderr]).toEqual([0, '', '']);
    }
    // nothing at all, in a directory without devbox.json: the error names images too
    const empty = mkdtempSync(join(tmpdir(), 'nixoci-nothing-'));
    // (not above it either: the search for one stops there, whatever /tmp holds)
    const nothing = await nixoci(['inspect'], { cwd: empty, env: { NIXOCI_DEVBOX_CEILING: empty } });
    expect([nothing.code, nothing.stderr.split('\n')[0]]).toEqual([
      2,
      `nixoci: error: nixoci inspect: no source: give --devbox DIR, --installable REF, --file X.nix, --graph FILE or --path STOREPATH (or run it in a devbox project: there is no devbox.json in ${realpathSync(empty)} or above it), or an image to read (e.g. inspect docker://host/app:v1)`,
    ]);
    // an image without its transport is not silently dropped for the closure's plan
    const bare = await nixoci(['inspect', '--graph', v1.graphFile, 'ubuntu:latest']);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('unexpected argument "ubuntu:latest"');
    expect(bare.stderr).toContain('docker://, oci:');
    const none = await nixoci(['inspect', `oci:${join(work, 'nothing')}`]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/read oci:.*nothing: ENOENT/);
    const tag = await nixoci(['inspect', `oci:${ociA}:v9`]);
    expect(tag.code).toBe(1);
    expect(tag.stderr).toContain('hint: its tags: v1');
  });
});

describe('nixoci diff', () => {
  it('shares every layer but the app, and names the app as changed', async () => {
    const d = await nixociJson<DiffReportJson>(['diff', `oci:${ociA}:v1`, `oci:${ociB}`]);
    const appLayerA = built.layers.findIndex((l) => l.storePaths.includes(v1.app));
    expect(d.shared).toHaveLength(v1.paths.length - 1);
    expect(d.onlyA.map((l) => l.storePaths)).toEqual([[v1.app]]);
    expect(d.onlyB.map((l) => l.storePaths)).toEqual([[v2.app]]);
    expect(d.storePaths.changed).toEqual([
      {
        name: 'fixture-app',
        from: { path: v1.app, layer: appLayerA, layerSize: built.layers[appLayerA]!.size },
        to: { path: v2.app, layer: d.onlyB[0]!.index, layerSize: d.onlyB[0]!.size },
      },
    ]);
    expect(d.storePaths).toMatchObject({ added: [], removed: [], unchanged: v1.paths.length - 1 });
    expect(d.sizes.a).toBe(built.layers.reduce((n, l) => n + l.size, 0));
    expect(d.sizes.onlyA).toBe(built.layers[appLayerA]!.size);
    expect(d.sizes.shared + d.sizes.onlyB).toBe(d.sizes.b);

    const text = await nixoci(['diff', `oci:${ociA}:v1`, `oci:${ociB}`]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`fixture-app changed from ${v1.app} to ${v2.app}`);
    expect(text.stdout).toContain(`shared: ${v1.paths.length - 1} layers`);
  });

  it('matches layers by diffID across compressions and transports (skopeo gzip copy vs archive)', async () => {
    const d = await nixociJson<DiffReportJson>(['diff', `docker-archive:${archive}`, `oci:${skopeoDir}:s1`]);
    expect(d.shared.map((s) => s.diffId)).toEqual(built.layers.map((l) => l.diffId));
    expect(d.onlyA).toEqual([]);
    expect(d.onlyB).toEqual([]);
    expect(d.storePaths).toEqual({ added: [], removed: [], changed: [], unchanged: v1.paths.length });
  });

  it('refuses an engine image name in upper case as a usage error, as load does', async () => {
    for (const ref of ['docker-daemon:HX-App:v1', 'podman:Example.com/app']) {
      const r = await nixoci(['inspect', ref]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(
        /image names are lower case \(use (docker-daemon:hx-app:v1|podman:example\.com\/app)\)/,
      );
    }
  });

  it('needs two images', async () => {
    const r = await nixoci(['diff', `oci:${ociA}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('needs two images');
  });

  it('names diff, not inspect, in a usage error about a registry flag', async () => {
    const r = await nixoci([
      'diff',
      `oci:${ociA}:v1`,
      `docker://${env.registry}/nixoci-test/none:x`,
      '--timeout',
      '0',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^nixoci: error: nixoci diff: --timeout must be an integer from 1 to 86400/);
    expect(r.stderr).toContain('hint: run `nixoci diff --help` for usage');
  });
});
