import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Decompressor } from 'zstd-napi';
import { beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/core/digest.js';
import { ZSTD_FRAME } from '../../src/layer/compress.js';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { readTree } from '../helpers/tree.js';

interface Report {
  manifestDigest: string;
  bytesRead: number;
  layers: {
    storePaths: string[];
    diffId: string;
    digest: string;
    size: number;
    mediaType: string;
    action: string;
  }[];
}

const work = mkdtempSync(join(tmpdir(), 'nixoci-build-'));
const tmp = (name: string): string => join(work, name);
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'build-test' });
});

function sha256File(f: string): string {
  return 'sha256:' + execFileSync('sha256sum', [f], { encoding: 'utf8' }).split(' ')[0];
}

describe('nixoci build', () => {
  it('writes an OCI layout that umoci accepts, whose rootfs equals the store byte for byte', async () => {
    const dir = tmp('oci-a');
    const report = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${dir}:v1`,
      '--entrypoint',
      `${fx.app}/bin/app`,
      '--no-cache',
    ]);
    expect(report.layers).toHaveLength(fx.paths.length);
    expect(report.layers.at(-1)!.storePaths).toEqual([fx.app]);
    // every blob is where the manifest says, with the digest and size it says
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe('v1');
    expect(index.manifests[0].digest).toBe(report.manifestDigest);
    const blob = (d: string): string => join(dir, 'blobs', 'sha256', d.slice(7));
    const manifest = JSON.parse(readFileSync(blob(report.manifestDigest), 'utf8'));
    expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8'));
    expect(config).toMatchObject({ architecture: 'amd64', os: 'linux', created: '1970-01-01T00:00:01Z' });
    expect(config.config.Entrypoint).toEqual([`${fx.app}/bin/app`]);
    expect(config.config.Env).toEqual([`PATH=${fx.app}/bin`]);
    expect(config.history).toHaveLength(manifest.layers.length);
    for (const [i, l] of manifest.layers.entries()) {
      expect(sha256File(blob(l.digest))).toBe(l.digest);
      expect(readFileSync(blob(l.digest)).length).toBe(l.size);
      expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
      expect(config.rootfs.diff_ids[i]).toBe(l.digest); // uncompressed: diffID = digest
      expect(l.annotations['dev.nixoci.store-paths']).toBe(report.layers[i]!.storePaths.join(' '));
      expect(l.annotations['dev.nixoci.nar-hashes']).toMatch(/^sha256-/);
    }
    // umoci validates the layout while unpacking it
    const bundle = tmp('bundle-a');
    execFileSync('umoci', ['unpack', '--image', `${dir}:v1`, bundle], { stdio: 'pipe' });
    const rootfs = join(bundle, 'rootfs');
    expect(readdirSync(join(rootfs, 'nix', 'store')).sort()).toEqual(fx.paths.map((p) => basename(p)));
    for (const p of fx.paths) {
      expect(readTree(join(rootfs, p.slice(1)))).toEqual(readTree(p));
    }
  });

  it('writes a docker-archive that the Docker engine loads and runs', async () => {
    const archive = tmp('a.tar');
    // a name with a registry host and port, as `docker load` takes it
    const tag = 'localhost:5000/nixoci-test/build:archive';
    await dockerRmi(tag);
    const r = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `docker-archive:${archive}:${tag}`,
      '--entrypoint',
      `${fx.app}/bin/app`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const load = await docker(['load', '-i', archive]);
    expect(load.stdout).toContain(tag);
    const out = await dockerRunOutput(tag);
    expect(out).toContain('fixture app build-test');
    expect(out).toContain('fixture-data run: ok');
    expect(out).toContain('empty path present');
  });

  it('refuses oci:DIR:NAME:TAG, which skopeo reads as DIR with ref.name NAME:TAG, instead of writing into DIR:NAME', async () => {
    const dir = mkdtempSync(tmp('oci-colon-'));
    for (const name of ['app:v1', 'example.com/app:v1']) {
      const r = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${dir}/img:${name}`]);
      expect(r.code, name).toBe(2);
      expect(r.stderr).toContain(
        `skopeo reads this as directory "${dir}/img" with the name "${name}"); nixoci takes oci:DIR[:TAG] with a plain tag, e.g. oci:${dir}/img:v1`,
      );
    }
    expect(readdirSync(dir)).toEqual([]);
    const ok = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${dir}/img:v1`]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readdirSync(dir)).toEqual(['img']);
  });

  it('refuses a repository name engines would refuse as longer than 255 characters (docker.io/library/NAME)', async () => {
    // 237 characters: docker.io/library/NAME has 255, the most `docker load` takes
    const longest = 'nixoci-test-long-'.padEnd(237, 'n');
    const archive = tmp('long-name.tar');
    await dockerRmi(`${longest}:v1`);
    const ok = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `docker-archive:${archive}:${longest}:v1`,
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await docker(['load', '-i', archive])).stdout).toContain(longest);
    await dockerRmi(`${longest}:v1`);
    const tooLong = `${longest}n`;
    const tooLongArchive = tmp('too-long-name.tar');
    for (const dest of [
      `docker-archive:${tooLongArchive}:${tooLong}:v1`,
      `docker-daemon:${tooLong}:v1`,
      `podman:example.com/${'p'.repeat(244)}:v1`,
    ]) {
      const r = await nixoci(['build', '--graph', fx.graphFile, '--to', dest]);
      expect(r.code, dest).toBe(2);
      expect(r.stderr).toMatch(/the repository name is too long: engines read it as 256 characters/);
    }
    expect(existsSync(tooLongArchive)).toBe(false);
  });

  it('refuses a --user NAME the image has no /etc/passwd for; root is written as 0:0 and runs', async () => {
    const archive = tmp('root.tar');
    const tag = 'localhost:5000/nixoci-test/build:root';
    await dockerRmi(tag);
    const refused = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--user',
      'app',
      '--to',
      `docker-archive:${archive}:${tag}`,
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /--user app: the image has no \/etc\/passwd to find app in; give --user app:UID/,
    );
    expect(existsSync(archive)).toBe(false);
    const r = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--user',
      'root',
      '--to',
      `docker-archive:${archive}:${tag}`,
      '--entrypoint',
      `${fx.app}/bin/app`,
    ]);
    expect(r.manifestDigest).toMatch(/^sha256:/);
    await docker(['load', '-i', archive]);
    const user = await docker(['image', 'inspect', '--format', '{{.Config.User}}', tag]);
    expect(user.stdout.trim()).toBe('0:0');
    expect(await dockerRunOutput(tag)).toContain('fixture app build-test');
  });

  it('writes a docker-archive to standard output for a pipe into docker load, and refuses what would spoil it', async () => {
    const tag = 'nixoci-test/build:piped';
    await dockerRmi(tag);
    const env = { ...process.env, DOCKER_HOST: testEnv().dockerHost };
    const sh = (script: string) =>
      spawnSync('bash', ['-c', script, 'bash', cliBin, fx.graphFile, `${fx.app}/bin/app`], {
        encoding: 'utf8',
        env,
      });
    // the archive alone on stdout; the summary on stderr
    const piped = sh(
      `set -o pipefail; "$1" build --graph "$2" --entrypoint "$3" --to docker-archive:-:${tag} | docker load`,
    );
    expect(piped.status, piped.stderr).toBe(0);
    expect(piped.stdout).toContain(`Loaded image: ${tag}`);
    expect(piped.stderr).toMatch(/^docker-archive:-:nixoci-test\/build:piped \(amd64\): sha256:/m);
    expect(await dockerRunOutput(tag)).toContain('fixture app build-test');
    // --json would print into the archive; two destinations cannot share stdout
    for (const extra of ['--json', '--to docker-archive:-']) {
      const r = sh(`"$1" build --graph "$2" --to docker-archive:- ${extra} | cat > /dev/null; exit 0`);
      expect(r.stderr).toMatch(
        /^nixoci: error: nixoci build: .*(--json prints on standard output|only one destination)/m,
      );
    }
    // a reader that stops early: one clear line, exit 1, no stack trace
    const cut = sh(`"$1" build --graph "$2" --to docker-archive:- | head -c 1000 > /dev/null; exit 0`);
    expect(cut.stderr).toMatch(/^nixoci: error: docker-archive:-: the reader of standard output went away$/m);
    expect(cut.stderr).not.toMatch(/\n\s+at /);
    // a terminal gets no tar (script(1) gives the command a pseudo-terminal)
    const tty = spawnSync(
      'script',
      ['-qec', `"${cliBin}" build --graph "${fx.graphFile}" --to docker-archive:-`, '/dev/null'],
      {
        encoding: 'utf8',
        env,
      },
    );
    expect(tty.status).toBe(2);
    expect(tty.stdout).toMatch(/would write a tar archive to the terminal/);
    // nor through /dev/stdout or /dev/tty
    for (const dev of ['/dev/stdout', '/dev/tty']) {
      const named = spawnSync(
        'script',
        ['-qec', `"${cliBin}" build --graph "${fx.graphFile}" --to docker-archive:${dev}`, '/dev/null'],
        { encoding: 'utf8', env },
      );
      expect(named.status, named.stdout).toBe(2);
      expect(named.stdout).toMatch(/would write a tar archive to a terminal/);
      expect(named.stdout.length).toBeLessThan(1000);
    }
  });

  it('hashes a docker-archive as it streams to the same diffIDs as an OCI layout (cold, layers > 1 MiB)', async () => {
    // Archives stream one layer at a time, read by a layer worker and hashed on the main thread;
    // OCI layouts hash in the worker. Both cold, so no digest comes from the cache.
    const archive = tmp('cold.tar');
    const a = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `docker-archive:${archive}`,
      '--no-cache',
    ]);
    const layout = tmp('cold-oci');
    const o = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${layout}`,
      '--no-cache',
    ]);
    expect(a.layers.map((l) => l.diffId)).toEqual(o.layers.map((l) => l.diffId));
    // The layout's blobs (big ones written by the layer workers themselves) hold those bytes.
    for (const l of o.layers) {
      const blob = readFileSync(join(layout, 'blobs', 'sha256', l.digest.slice('sha256:'.length)));
      expect(sha256Digest(blob)).toBe(l.digest);
      expect(blob.length).toBe(l.size);
    }
    expect(a.layers.some((l) => l.size > 1 << 20)).toBe(true);
    // ... and they are the digests of the bytes in the archive.
    const manifest = JSON.parse(
      execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' }),
    ) as {
      Layers: string[];
    }[];
    manifest[0]!.Layers.forEach((name, i) => {
      const bytes = execFileSync('tar', ['-xOf', archive, name], { maxBuffer: 64 << 20 });
      expect(sha256Digest(bytes)).toBe(a.layers[i]!.diffId);
      expect(bytes.length).toBe(a.layers[i]!.size);
    });
  });

  it('loads into the Docker engine named with -H, next to an OCI layout, in one run', async () => {
    const tag = 'nixoci-test/build:host';
    await dockerRmi(tag);
    const r = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--entrypoint',
      `${fx.app}/bin/app`,
      '--to',
      `oci:${tmp('with-engine')}`,
      '--to',
      `docker-daemon:${tag}`,
      '-H',
      testEnv().dockerHost,
    ]);
    expect(r.manifestDigest).toMatch(/^sha256:/);
    expect(await dockerRunOutput(tag)).toContain('fixture app build-test');
  });

  it('gives identical digests in another directory, umask, time zone and cache state', async () => {
    const args = (dir: string): string[] => [
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${dir}`,
      '--entrypoint',
      `${fx.app}/bin/app`,
    ];
    const a = await nixociJson<Report>([...args(tmp('r1')), '--no-cache'], {
      umask: '022',
      env: { TZ: 'UTC' },
    });
    const cwd = mkdtempSync(join(tmpdir(), 'nixoci-cwd-'));
    const b = await nixociJson<Report>([...args(tmp('r2')), '--cache-dir', tmp('cache-r2')], {
      umask: '077',
      cwd,
      env: { TZ: 'Pacific/Chatham', LANG: 'C', LC_ALL: 'C' },
    });
    expect(b.manifestDigest).toBe(a.manifestDigest);
    expect(b.layers.map((l) => l.digest)).toEqual(a.layers.map((l) => l.digest));
  });

  it('writes the same docker-archive, byte for byte, with no cache, a cold one and a warm one', async () => {
    const archive = async (name: string, cache: string[]): Promise<string> => {
      const f = tmp(name);
      await nixociJson(['build', '--graph', fx.graphFile, '--to', `docker-archive:${f}:app:v1`, ...cache]);
      return sha256File(f);
    };
    const none = await archive('rep-none.tar', ['--no-cache']);
    expect(await archive('rep-cold.tar', ['--cache-dir', tmp('cache-rep')])).toBe(none);
    expect(await archive('rep-warm.tar', ['--cache-dir', tmp('cache-rep')])).toBe(none);
  });

  it('reads no store bytes on a warm rebuild to the same layout, with the same digests', async () => {
    const dir = tmp('warm');
    const cache = tmp('cache-warm');
    const args = ['build', '--graph', fx.graphFile, '--to', `oci:${dir}`, '--cache-dir', cache];
    const cold = await nixociJson<Report>(args);
    expect(cold.bytesRead).toBeGreaterThan(2_000_000);
    expect(cold.layers.every((l) => l.action === 'written')).toBe(true);
    const warm = await nixociJson<Report>(args);
    expect(warm.bytesRead).toBe(0);
    expect(warm.manifestDigest).toBe(cold.manifestDigest);
    expect(warm.layers.every((l) => l.action === 'skipped')).toBe(true);
    // two architectures of one closure, no cache at all: each layer is still made once in the run
    const both = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--arch',
      'amd64,arm64',
      '--to',
      `oci:${tmp('warm-multi')}`,
      '--no-cache',
    ]);
    expect(both.bytesRead).toBe(cold.bytesRead);
  });

  it('compresses with gzip and zstd, with diffIDs equal to the uncompressed digests', async () => {
    const plain = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${tmp('c-none')}`,
      '--no-cache',
    ]);
    for (const c of ['gzip', 'zstd']) {
      const dir = tmp(`c-${c}`);
      const r = await nixociJson<Report>([
        'build',
        '--graph',
        fx.graphFile,
        '--to',
        `oci:${dir}`,
        '--compression',
        c,
        '--no-cache',
      ]);
      expect(r.layers.map((l) => l.diffId)).toEqual(plain.layers.map((l) => l.diffId));
      for (const l of r.layers) {
        expect(l.mediaType).toBe(`application/vnd.oci.image.layer.v1.tar+${c}`);
        const bytes = readFileSync(join(dir, 'blobs', 'sha256', l.digest.slice(7)));
        expect(sha256Digest(bytes)).toBe(l.digest);
        expect(bytes.length).toBe(l.size);
        const tar = c === 'gzip' ? gunzipSync(bytes) : new Decompressor().decompress(bytes);
        expect(sha256Digest(tar)).toBe(l.diffId);
      }
      // Debian's umoci reads gzip layers, not zstd ones
      if (c === 'gzip')
        execFileSync('umoci', ['unpack', '--image', `${dir}:latest`, tmp(`c-${c}-bundle`)], {
          stdio: 'pipe',
        });
    }
  });

  it('writes a big zstd layer as 4 MiB frames that the zstd CLI reads back, the same bytes every time', async () => {
    // A store path of ~12 MB (text and noise): its layer's tar spans three frames.
    const src = tmp('zstd-frames/big');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'text.txt'), Array.from({ length: 700_000 }, (_, i) => `${i}\n`).join(''));
    const noise = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16, 4));
    writeFileSync(join(src, 'noise.bin'), noise.update(Buffer.alloc(6 << 20)));
    const storePath = execFileSync('nix-store', ['--add', src], { encoding: 'utf8' }).trim();
    const build = (dir: string) =>
      nixociJson<Report>(['build', storePath, '--to', `oci:${dir}`, '--compression', 'zstd', '--no-cache']);
    const first = await build(tmp('zstd-frames/a'));
    const layer = first.layers.find((l) => l.storePaths.includes(storePath))!;
    const blob = join(tmp('zstd-frames/a'), 'blobs', 'sha256', layer.digest.slice(7));
    const tar = execFileSync('zstd', ['-d', '-c', blob], { maxBuffer: 64 << 20 });
    expect(sha256Digest(tar)).toBe(layer.diffId);
    const listing = execFileSync('zstd', ['-lv', blob], { encoding: 'utf8' });
    expect(Number(/# Zstandard Frames: (\d+)/.exec(listing)?.[1])).toBe(Math.ceil(tar.length / ZSTD_FRAME));
    expect(listing).toMatch(/Window Size: 4\.00 MiB/);
    // reproducible: a second cold build writes the very same blob
    const again = await build(tmp('zstd-frames/b'));
    expect(again.layers.map((l) => l.digest)).toEqual(first.layers.map((l) => l.digest));
  });

  it('names the destinations it wrote before a later one failed', async () => {
    // an engine that is not there: known only when it is written to
    const dir = tmp('partial-oci');
    const late = ['--to', 'docker-daemon:nixoci-test/partial:1', '-H', `unix://${tmp('no-engine.sock')}`];
    const r = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${dir}`, ...late]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^oci:${dir}:latest \\(amd64\\): sha256:[0-9a-f]{64} — `));
    expect(lines[1]).toMatch(/^nixoci: error: cannot connect to the Docker engine .*no-engine\.sock/);
    // --json: no report on standard output for a failed run, but the same lines on standard error
    const json = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${dir}`, ...late, '--json']);
    expect(json.code).toBe(1);
    expect(json.stdout).toBe('');
    const jsonLines = json.stderr.trimEnd().split('\n');
    expect(jsonLines[0]).toMatch(new RegExp(`^oci:${dir}:latest \\(amd64\\): sha256:[0-9a-f]{64} — `));
    expect(jsonLines[1]).toMatch(/^nixoci: error: cannot connect to the Docker engine/);
  });

  it('refuses a file destination that cannot be written before it writes any destination', async () => {
    const dir = tmp('early-oci');
    const file = tmp('early-file');
    writeFileSync(file, 'not a directory');
    const cases: [string, RegExp][] = [
      [`docker-archive:${tmp('no-such-dir')}/x.tar`, /directory .*no-such-dir does not exist/],
      [`docker-archive:${work}`, /is a directory/],
      [`docker-archive:${file}/x.tar`, /early-file is not a directory/],
      [`oci:${file}/sub`, /early-file is not a directory/],
      [`oci:${file}`, /early-file is not a directory/],
    ];
    for (const [dest, says] of cases) {
      const r = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${dir}`, '--to', dest]);
      expect(r.code, dest).toBe(1);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines[0], dest).toMatch(/^nixoci: error: cannot write /);
      expect(lines[0], dest).toMatch(says);
      expect(lines[1], dest).toMatch(/^hint: /);
      expect(lines, dest).toHaveLength(2);
      expect(existsSync(dir), dest).toBe(false);
    }
  });

  it('writes into a FIFO or a device as it is, and through a symlink, replacing neither', async () => {
    const dir = mkdtempSync(tmp('special-'));
    const reference = join(dir, 'plain.tar');
    expect(
      (await nixoci(['build', '--graph', fx.graphFile, '--to', `docker-archive:${reference}`])).code,
    ).toBe(0);
    const expected = readFileSync(reference);
    // a FIFO, read by another process (as `docker-archive:>(docker load)` or /dev/stdout would be);
    // `timeout`: a FIFO replaced by a file leaves its reader waiting (90 s: far above what a busy
    // machine needs for the build)
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const read = new Promise<Buffer>((resolve, reject) =>
      execFile('timeout', ['90', 'cat', fifo], { encoding: 'buffer', maxBuffer: 64 << 20 }, (e, out) =>
        e ? reject(e) : resolve(out),
      ),
    );
    const viaFifo = await nixoci(['build', '--graph', fx.graphFile, '--to', `docker-archive:${fifo}`]);
    expect(viaFifo.code, viaFifo.stderr).toBe(0);
    expect((await read).equals(expected)).toBe(true);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    // a character device (what /dev/null is): nixoci runs as root here, so mknod works
    const nul = join(dir, 'null');
    if (spawnSync('mknod', [nul, 'c', '1', '3']).status === 0) {
      const viaNull = await nixoci(['build', '--graph', fx.graphFile, '--to', `docker-archive:${nul}`]);
      expect(viaNull.code, viaNull.stderr).toBe(0);
      expect(lstatSync(nul).isCharacterDevice()).toBe(true);
    }
    // a symlink: the file it names gets the archive, the link stays
    const target = join(dir, 'target.tar');
    writeFileSync(target, '');
    symlinkSync('target.tar', join(dir, 'link.tar'));
    const viaLink = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `docker-archive:${join(dir, 'link.tar')}`,
    ]);
    expect(viaLink.code, viaLink.stderr).toBe(0);
    expect(readlinkSync(join(dir, 'link.tar'))).toBe('target.tar');
    expect(statSync(target).size).toBe(expected.length);
    expect(readdirSync(dir).sort()).toEqual(
      ['fifo', 'link.tar', 'null', 'plain.tar', 'target.tar'].filter((f) => f !== 'null' || existsSync(nul)),
    );
  });

  it('says what each destination read from the store, not the whole run on every line', async () => {
    const dir = tmp('read-per-target');
    const cache = ['--cache-dir', tmp('read-per-target-cache')];
    const first = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      ...cache,
      '--to',
      `oci:${dir}`,
    ]);
    expect(first.bytesRead).toBeGreaterThan(1 << 20);
    // the layout has every blob (nothing read for it); the new archive reads every layer
    const r = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      ...cache,
      '--to',
      `oci:${dir}`,
      '--to',
      `docker-archive:${tmp('read-per-target.tar')}`,
      '--arch',
      'amd64',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/\(\d+ skipped\), 0 B written, 0 B read from the store$/);
    expect(lines[1]).toMatch(/\(\d+ written\), [\d.]+ MiB written, [\d.]+ MiB read from the store$/);
    // several architectures in one target: one line per image, then what the target read
    const multi = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      ...cache,
      '--arch',
      'amd64,arm64',
      '--to',
      `oci:${dir}`,
    ]);
    // the last line names the index the tag points at
    const index = (
      JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
        manifests: { mediaType: string; digest: string }[];
      }
    ).manifests[0]!;
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(multi.stderr.trimEnd().split('\n')).toEqual([
      expect.stringMatching(
        new RegExp(
          `^oci:${dir}:latest \\(amd64\\): sha256:[0-9a-f]{64} — \\d+ layers \\(\\d+ skipped\\), 0 B written$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(`^oci:${dir}:latest \\(arm64\\): sha256:[0-9a-f]{64} — .*, 0 B written$`),
      ),
      expect.stringMatching(
        new RegExp(`^oci:${dir}:latest: index ${index.digest}, [\\d.]+ (B|KiB|MiB) read from the store$`),
      ),
    ]);
  });

  it('leaves nothing behind when the input is bad, and exits non-zero with one clear line', async () => {
    const dir = tmp('bad-out');
    const archive = tmp('bad.tar');
    const bad = tmp('bad.json');
    execFileSync('sh', ['-c', `printf '{"closure": [' > "$0"`, bad]);
    const r = await nixoci([
      'build',
      '--graph',
      bad,
      '--to',
      `oci:${dir}`,
      '--to',
      `docker-archive:${archive}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^nixoci: error: .*bad\.json: not valid JSON/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(archive)).toBe(false);
  });

  it('says why a destination cannot be written, not what its cleanup then failed to remove', async () => {
    // A name too long for the filesystem, and (as nobody, via setpriv) a directory one cannot
    // enter: the removal of what the failed write made fails the same way, and must not replace
    // the error with an internal one about an unlink or lstat.
    const long = tmp('x'.repeat(300));
    const asNobody = [
      'setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      process.execPath,
      cliBin,
    ];
    const hidden = mkdtempSync(join(tmpdir(), 'nixoci-hidden-')); // 0700, root's
    const runs: [string[], string][] = [
      [[process.execPath, cliBin], `oci:${long}`],
      [[process.execPath, cliBin], `docker-archive:${long}.tar`],
      [asNobody, `oci:${join(hidden, 'img')}`],
      [asNobody, `docker-archive:${join(hidden, 'img.tar')}`],
    ];
    for (const [cmd, to] of runs) {
      const r = spawnSync(
        cmd[0]!,
        [...cmd.slice(1), 'build', '--graph', fx.graphFile, '--no-cache', '--to', to],
        {
          encoding: 'utf8',
        },
      );
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/^nixoci: error: cannot write .*(ENAMETOOLONG|EACCES)/);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(2);
    }
    expect(readdirSync(hidden)).toEqual([]);
  });

  it("removes the partial archive a killed run left behind, and keeps a live run's", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-partial-'));
    const dead = join(dir, 'img.tar.999999.partial'); // no such process
    const live = join(dir, `img.tar.${process.pid}.partial`); // this test runner: alive
    const other = join(dir, 'other.tar.999999.partial'); // another archive's: not ours to touch
    for (const f of [dead, live, other]) writeFileSync(f, 'half');
    const r = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `docker-archive:${join(dir, 'img.tar')}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(other)).toBe(true);
  });

  it('writes a docker-archive whose name is too long for the usual temp name beside it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-longname-'));
    for (const len of [240, 255]) {
      const file = join(dir, `${'a'.repeat(len - 4)}.tar`);
      const { partialName } = await import('../../src/registry/docker-archive-target.js');
      // a killed run's partial archive of this name, found by the next run
      const stale = join(dir, partialName(basename(file)).name('999999'));
      writeFileSync(stale, 'half');
      const r = await nixoci(['build', '--graph', fx.graphFile, '--to', `docker-archive:${file}`]);
      expect(r.code, r.stderr).toBe(0);
      expect(execFileSync('tar', ['-tf', file], { encoding: 'utf8' })).toContain('manifest.json');
      expect(existsSync(stale)).toBe(false);
    }
    expect(readdirSync(dir).sort()).toEqual([`${'a'.repeat(236)}.tar`, `${'a'.repeat(251)}.tar`]);
  });

  it('reports usage errors with exit code 2', async () => {
    for (const args of [
      ['build', '--graph', fx.graphFile],
      ['build', '--graph', fx.graphFile, '--to', 'nowhere:x'],
      ['build', '--graph', fx.graphFile, '--to', 'oci:x', '--arch', 'mips'],
      ['build', '--graph', fx.graphFile, '--to', 'oci:x', '--bogus'],
      ['build', '--to', 'oci:x'],
      ['frobnicate'],
    ]) {
      const r = await nixoci(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
    }
    // a NUL in a word of the command: no program can be run with it
    const nul = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      'oci:x',
      '--entrypoint',
      '["a\\u0000b"]',
    ]);
    expect([nul.code, nul.stderr.split('\n')[0]]).toEqual([
      2,
      'nixoci: error: nixoci build: --entrypoint ["a\\u0000b"]: a word holds a NUL character (\\u0000), which no program can be given',
    ]);
    // the value as given, and what in it is wrong
    const trailing = await nixoci(['build', '--graph', fx.graphFile, '--to', 'oci:x', '--arch', 'amd64,']);
    expect(trailing.stderr).toMatch(
      /^nixoci: error: nixoci build: --arch amd64,: an empty item is not an architecture/,
    );
    // no advice to pass it after '--' as a positional: nixoci takes none that starts with '-'
    const unknown = await nixoci(['build', '--graph', fx.graphFile, '--to', 'oci:x', '--tag', 'v2']);
    expect(unknown.stderr).toBe(
      'nixoci: error: nixoci build: unknown option --tag\n' +
        'hint: run `nixoci build --help` for the list of flags\n',
    );
    const help = await nixoci(['build', '--help']);
    expect(help.code).toBe(0);
    for (const flag of [
      '--graph',
      '--path',
      '--to',
      '--arch',
      '--max-layers',
      '--compression',
      '--entrypoint',
      '--cmd',
      '--env',
      '--workdir',
      '--user',
      '--expose',
      '--label',
      '--created',
      '--cache-dir',
      '--no-cache',
      '--json',
    ]) {
      expect(help.stdout).toContain(flag);
    }
  });

  it('says how to give a flag a value that starts with a dash, and takes it in that form', async () => {
    const dir = tmp('dash-value');
    const refused = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${dir}`,
      '--cmd',
      '--port 8080',
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      'nixoci: error: nixoci build: --cmd has no value: "--port 8080" after it is taken for a flag\n' +
        "hint: a value that starts with '-' is joined to its flag with '=': '--cmd=--port 8080'\n",
    );
    const short = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${dir}`, '-H', '-x']);
    expect(short.stderr).toContain("with '=': --host=-x\n");
    const r = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${dir}`,
      '--cmd=--port 8080',
    ]);
    const blob = (d: string): string => join(dir, 'blobs', 'sha256', d.slice(7));
    const manifest = JSON.parse(readFileSync(blob(r.manifestDigest), 'utf8'));
    expect(JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')).config.Cmd).toEqual([
      '--port',
      '8080',
    ]);
  });

  it('gives the same config whatever order --expose and --label come in', async () => {
    // Both are sets (JSON objects); Docker and Nix write their keys sorted, and so must nixoci, or
    // one image has two digests depending on how a script happened to list its ports.
    const configDigest = async (name: string, flags: string[]): Promise<string> => {
      const dir = tmp(name);
      const r = await nixociJson<Report>(['build', '--path', fx.app, '--to', `oci:${dir}`, ...flags]);
      const manifest = JSON.parse(
        readFileSync(join(dir, 'blobs', 'sha256', r.manifestDigest.slice(7)), 'utf8'),
      );
      return manifest.config.digest as string;
    };
    const a = await configDigest('order-a', [
      '--expose',
      '80',
      '--expose',
      '443',
      '--label',
      'a=1',
      '--label',
      'b=2',
    ]);
    const b = await configDigest('order-b', [
      '--expose',
      '443/tcp',
      '--expose',
      '80',
      '--label',
      'b=2',
      '--label',
      'a=1',
    ]);
    expect(b).toBe(a);
  });

  it('builds from --path via nix path-info, and writes run config from flags', async () => {
    const dir = tmp('flags');
    const r = await nixociJson<Report>([
      'build',
      '--path',
      fx.app,
      '--to',
      `oci:${dir}`,
      '--cmd',
      '["--x", "y z"]',
      '--env',
      'A=0',
      '--env',
      'A=1',
      '--workdir',
      '/w',
      '--user',
      '1000:1000',
      '--expose',
      '8080',
      '--expose',
      '53/UDP',
      '--label',
      'b=2',
      '--label',
      'a=1',
      '--created',
      '2024-01-02T03:04:05Z',
      '--arch',
      'arm64',
    ]);
    const blob = (d: string): string => join(dir, 'blobs', 'sha256', d.slice(7));
    const manifest = JSON.parse(readFileSync(blob(r.manifestDigest), 'utf8'));
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8'));
    expect(config.architecture).toBe('arm64');
    expect(config.created).toBe('2024-01-02T03:04:05Z');
    expect(config.config).toEqual({
      User: '1000:1000',
      ExposedPorts: { '8080/tcp': {}, '53/udp': {} },
      Env: [`PATH=${fx.app}/bin`, 'A=1'],
      Cmd: ['--x', 'y z'],
      WorkingDir: '/w',
      Labels: { a: '1', b: '2' },
    });
  });

  it('writes a --created with a lower-case t and z (RFC 3339 allows them) as Go tools parse it', async () => {
    const dir = tmp('oci-created-lower');
    const r = await nixociJson<Report>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${dir}:v1`,
      '--no-cache',
      '--created',
      '2000-12-31t10:00:00.5z',
    ]);
    const blob = (d: string): string => join(dir, 'blobs', 'sha256', d.slice(7));
    const manifest = JSON.parse(readFileSync(blob(r.manifestDigest), 'utf8'));
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8'));
    expect(config.created).toBe('2000-12-31T10:00:00.5Z');
    for (const h of config.history) expect(h.created).toBe('2000-12-31T10:00:00.5Z');
    // skopeo parses created with Go's time.RFC3339, which has no lower-case t or z
    const out = execFileSync('skopeo', ['inspect', '--config', `oci:${dir}:v1`], { encoding: 'utf8' });
    expect(JSON.parse(out).created).toBe('2000-12-31T10:00:00.5Z');
  });
});
