// `nixoci inspect IMAGE` and `nixoci diff` details, read from the real registry (127.0.0.1:5000):
// the run settings of an image pushed with known flags. The one layer is a store path made by
// `nix-store --add` of a file written here, so the test needs nothing it did not make itself.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageReportJson, InspectImageJson } from '../../src/cli/report-schema.js';
import { humanSize } from '../../src/cli/output.js';
import type { DiffReportJson } from '../../src/cli/report-schema.js';
import { docker, dockerRmi } from '../helpers/docker.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { pathInfoJson } from '../helpers/nix.js';

const run = promisify(execFile);
const env = testEnv();
const work = mkdtempSync(join(tmpdir(), 'hx-inspect-'));
/** A repository of this run only: other runs and other test files never see it. */
const repo = `${env.registry}/hx-inspect-${randomBytes(4).toString('hex')}`;
let storePath: string;

beforeAll(async () => {
  const file = join(work, 'hx-inspect-layer.txt');
  writeFileSync(file, 'nixoci inspect details\n');
  storePath = (
    await run('nix-store', ['--add', file], { env: { ...process.env, NIX_REMOTE: '' } })
  ).stdout.trim();
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('inspect IMAGE: run settings', () => {
  it('shows Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts and Labels in text and as runConfig', async () => {
    const ref = `docker://${repo}/run:v1`;
    await nixociJson<ImageReportJson>([
      ...['push', '--path', storePath, ref, '--no-cache'],
      ...['--entrypoint', '["/bin/app","-v"]', '--cmd', 'serve now'],
      ...['--env', 'A=1', '--env', 'GREETING=two words', '--workdir', '/srv', '--user', '1000:100'],
      ...['--expose', '8080', '--expose', '53/udp', '--label', 'org.example.b=2', '--label', 'a=one'],
    ]);
    const r = await nixociJson<InspectImageJson>(['inspect', ref]);
    expect(r.image.runConfig).toMatchObject({
      Entrypoint: ['/bin/app', '-v'],
      Cmd: ['serve', 'now'],
      Env: ['A=1', 'GREETING=two words'],
      WorkingDir: '/srv',
      User: '1000:100',
      ExposedPorts: { '53/udp': {}, '8080/tcp': {} },
      Labels: { a: 'one', 'org.example.b': '2' },
    });
    const text = await nixoci(['inspect', ref]);
    expect([text.code, text.stderr]).toEqual([0, '']);
    const settings = text.stdout.split('\n').filter((l) => /^ {2}[a-z]+ +/.test(l));
    expect(settings.slice(3)).toEqual([
      '  entrypoint ["/bin/app","-v"]',
      '  cmd        ["serve","now"]',
      '  env        A=1',
      '  env        GREETING=two words',
      '  user       1000:100',
      '  workdir    /srv',
      '  ports      53/udp, 8080/tcp',
      '  label      a=one',
      '  label      org.example.b=2',
    ]);
  });
});

describe('inspect IMAGE: an index', () => {
  it('lists the platforms of a multi-arch index (text and indexPlatforms), none for one image', async () => {
    const ref = `docker://${repo}/multi:v1`;
    const pushed = await nixociJson<ImageReportJson>([
      ...['push', '--path', storePath, ref, '--no-cache', '--arch', 'amd64,arm64'],
    ]);
    expect(pushed.targets[0]!.images.map((i) => i.architecture)).toEqual(['amd64', 'arm64']);
    for (const [arch, platform] of [
      [[], 'linux/amd64'],
      [['--arch', 'arm64'], 'linux/arm64/v8'],
    ] as const) {
      const r = await nixociJson<InspectImageJson>(['inspect', ref, ...arch]);
      expect(r.image.indexDigest).toBe(pushed.manifestDigest);
      expect(r.image.indexPlatforms).toEqual(['linux/amd64', 'linux/arm64/v8']);
      const text = await nixoci(['inspect', ref, ...arch]);
      expect([text.code, text.stderr]).toEqual([0, '']);
      expect(text.stdout).toContain(
        `\n  index      ${pushed.manifestDigest}\n  platforms  linux/amd64, linux/arm64/v8\n`,
      );
      expect(text.stdout).toMatch(new RegExp(`^  platform   ${platform}, created `, 'm'));
    }
    // a manifest of the index, named by digest, is one image: no platforms to list
    const one = `docker://${repo}/multi@${pushed.targets[0]!.images[1]!.manifestDigest}`;
    const r = await nixociJson<InspectImageJson>(['inspect', one]);
    expect([r.image.indexDigest, r.image.indexPlatforms, r.image.architecture]).toEqual([
      null,
      null,
      'arm64',
    ]);
    expect((await nixoci(['inspect', one])).stdout).not.toContain('platforms');
  });
});

describe('multi-arch flags', () => {
  it('refuses an unprefixed --graph that every --arch has its own for, instead of dropping it', async () => {
    // a graph file as `nix path-info --json --recursive` writes it, which --graph takes
    const graph = join(work, 'graph.json');
    writeFileSync(graph, JSON.stringify(await pathInfoJson([storePath])));
    const out = join(work, 'graphs');
    for (const [arch, graphs] of [
      ['amd64,arm64', ['amd64=', 'arm64=', '']],
      ['amd64', ['amd64=', '']],
    ] as const) {
      const r = await nixoci([
        ...['build', '--arch', arch, '--to', `oci:${out}`],
        ...graphs.flatMap((p) => ['--graph', `${p}${graph}`]),
      ]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.split('\n')[0]).toBe(
        `nixoci: error: nixoci build: --graph ${graph}: every architecture has its own --graph (${arch
          .split(',')
          .map((a) => `${a}=`)
          .join(
            ', ',
          )}), so this one would be used for none; prefix it with the architecture it is for, or leave it out`,
      );
      expect(existsSync(out)).toBe(false);
    }
    // one architecture without its own: the unprefixed graph is its, as before
    const ok = await nixociJson<ImageReportJson>([
      ...['build', '--arch', 'amd64,arm64', '--to', `oci:${out}`, '--no-cache'],
      ...['--graph', `arm64=${graph}`, '--graph', graph],
    ]);
    expect(ok.targets[0]!.images.map((i) => i.architecture)).toEqual(['amd64', 'arm64']);
  });

  it('refuses a Nix system name as the --arch of an image read, naming the OCI one', async () => {
    // refused before anything is read: the image need not exist (it was: a failed read, exit 1)
    const ref = `docker://${repo}/never-pushed:v1`;
    for (const [arch, hint] of [
      ['aarch64-linux', 'hint: did you mean --arch arm64?'],
      ['x86_64-linux', 'hint: did you mean --arch amd64?'],
      ['aarch64', 'hint: did you mean --arch arm64?'],
      ['riscv64-linux', 'hint: give ARCH, ARCH/VARIANT or OS/ARCH[/VARIANT] as an index names it'],
    ] as const) {
      for (const args of [
        ['inspect', ref],
        ['diff', ref, ref],
      ]) {
        const r = await nixoci([...args, '--arch', arch]);
        expect(r.code, `${args[0]} ${arch}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toContain(
          `nixoci ${args[0]}: --arch ${arch}: a Nix system name; images name their platforms the OCI way\n${hint}`,
        );
        expect(r.stdout).toBe('');
      }
    }
  });
});

describe('sizes say what they count', () => {
  it('inspect and diff name the compression of a size; diff gives the shared size on each side', async () => {
    const layout = join(work, 'sizes-layout');
    const gzip = `docker://${repo}/sizes:gzip`;
    const zstd = `docker://${repo}/sizes:zstd`;
    const source = ['--path', storePath, '--no-cache'];
    await nixociJson(['build', ...source, '--to', `oci:${layout}:t`]);
    await nixociJson(['push', ...source, gzip, '--compression', 'gzip']);
    await nixociJson(['push', ...source, zstd, '--compression', 'zstd']);
    const sizes: Record<string, string> = {};
    for (const [ref, kind] of [
      [`oci:${layout}:t`, 'uncompressed'],
      [gzip, 'compressed (gzip)'],
      [zstd, 'compressed (zstd)'],
    ] as const) {
      const img = (await nixociJson<InspectImageJson>(['inspect', ref])).image;
      sizes[ref] = humanSize(img.totalSize);
      const text = await nixoci(['inspect', ref]);
      expect(text.stdout).toContain(
        `\ntotal: 1 layer, ${sizes[ref]} ${kind}, 1 store path (from annotation)\n`,
      );
    }
    const d = await nixociJson<DiffReportJson>(['diff', `oci:${layout}:t`, gzip]);
    expect(d.shared).toHaveLength(1);
    expect([d.sizes.sharedA, d.sizes.shared]).toEqual([d.shared[0]!.sizeA, d.shared[0]!.sizeB]);
    expect(d.sizes.sharedA).not.toBe(d.sizes.shared);
    const text = await nixoci(['diff', `oci:${layout}:t`, gzip]);
    expect([text.code, text.stderr]).toEqual([0, '']);
    expect(text.stdout.split('\n').slice(0, 3)).toEqual([
      expect.stringMatching(
        new RegExp(`^A: oci:.*  1 layer, ${sizes[`oci:${layout}:t`]} uncompressed  config `),
      ),
      expect.stringMatching(
        new RegExp(`^B: ${gzip}  linux/amd64  1 layer, ${sizes[gzip]} compressed \\(gzip\\)  config `),
      ),
      `shared: 1 layer, ${sizes[`oci:${layout}:t`]} uncompressed in A, ${sizes[gzip]} compressed (gzip) in B; only in A: 0 (0 B); only in B: 0 (0 B)`,
    ]);
  });
});

describe('--verbose', () => {
  it('inspect and diff show each registry exchange (A:/B: in diff), never the credentials', async () => {
    const path = `hx-inspect-${randomBytes(4).toString('hex')}/verbose`;
    const creds = `${env.registryBasicUser}:${env.registryBasicPassword}`;
    const ref = `docker://${env.registryBasic}/${path}:v1`;
    const pushed = await nixociJson<ImageReportJson>([
      ...['push', '--path', storePath, ref, '--no-cache', '--arch', 'amd64,arm64', '--creds', creds],
    ]);
    const arm = pushed.targets[0]!.images[1]!;
    const r = await nixoci(['inspect', ref, '--arch', 'arm64', '--creds', creds, '-v']);
    expect(r.code, r.stderr).toBe(0);
    const exchanges = r.stderr.split('\n').filter((l) => / → \d{3}$/.test(l));
    // an index, the arm64 manifest it names, the config: after the 401 that asks for credentials
    expect(exchanges.filter((l) => !l.endsWith(' → 401'))).toEqual([
      `GET /v2/${path}/manifests/v1 → 200`,
      `GET /v2/${path}/manifests/${arm.manifestDigest} → 200`,
      `GET /v2/${path}/blobs/${arm.configDigest} → 200`,
    ]);
    expect(r.stderr).not.toContain(env.registryBasicPassword);
    const d = await nixoci([
      'diff',
      ref,
      `${ref.slice(0, -3)}@${arm.manifestDigest}`,
      '--creds',
      creds,
      '-v',
    ]);
    expect(d.code, d.stderr).toBe(0);
    const lines = d.stderr.split('\n').filter((l) => / → 200$/.test(l));
    const amd = pushed.targets[0]!.images[0]!;
    expect(lines.filter((l) => l.startsWith('A: '))).toEqual([
      `A: GET /v2/${path}/manifests/v1 → 200`,
      `A: GET /v2/${path}/manifests/${amd.manifestDigest} → 200`,
      `A: GET /v2/${path}/blobs/${amd.configDigest} → 200`,
    ]);
    expect(lines.filter((l) => l.startsWith('B: '))).toEqual([
      `B: GET /v2/${path}/manifests/${arm.manifestDigest} → 200`,
      `B: GET /v2/${path}/blobs/${arm.configDigest} → 200`,
    ]);
    expect(lines).toHaveLength(5);
    expect(d.stderr).not.toContain(env.registryBasicPassword);
  });
});

describe('docker-built images', () => {
  it('prints nothing for the empty settings docker writes (User "", WorkingDir "")', async () => {
    const ctx = join(work, 'docker-ctx');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'f'), 'one\n');
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY f /f\n');
    const tag = `hx-inspect-empty-${randomBytes(4).toString('hex')}:t`;
    // the classic builder writes User "" and WorkingDir "" into the config
    await docker(['build', '-q', '--network', 'none', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' } });
    try {
      const saved = join(work, 'docker-saved.tar');
      await docker(['save', tag, '-o', saved]);
      for (const args of [[`docker-archive:${saved}`], [`docker-daemon:${tag}`, '-H', env.dockerHost]]) {
        const r = await nixociJson<InspectImageJson>(['inspect', ...args]);
        expect(r.image.runConfig, args[0]).toMatchObject({ User: '', WorkingDir: '' });
        expect(r.image.layers.map((l) => l.createdBy)).not.toContain('');
        const text = await nixoci(['inspect', ...args]);
        expect([text.code, text.stderr], args[0]).toEqual([0, '']);
        const head = text.stdout.split('\nLAYER')[0]!.split('\n');
        expect(
          head.filter((l) => /^ {2}\S+ *$/.test(l)),
          args[0],
        ).toEqual([]);
        expect(
          head.filter((l) => /^ {2}(user|workdir) /.test(l)),
          args[0],
        ).toEqual([]);
        expect(head, args[0]).toContain(
          '  env        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        );
      }
    } finally {
      await dockerRmi(tag);
    }
  });
});
