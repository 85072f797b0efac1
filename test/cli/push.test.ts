// `nixoci push` and `nixoci build --to docker://` as users run them (bin/nixoci.js on dist/, built
// by `npm run build`), against the real registries of scripts/services.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PREPARED_FRESH_MS } from '../../src/image/target.js';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { startFaultProxy } from '../registry/fault-proxy.js';
import { registryGet, uniqueRepo, verifyPushed } from '../registry/push-helpers.js';

interface Report {
  manifestDigest: string;
  bytesRead: number;
  layers: { storePaths: string[]; action: string; bytesSent: number }[];
  targets: { tags?: string[] }[];
}

const env = testEnv();
let v1: FixtureClosure;
let v2: FixtureClosure;

beforeAll(async () => {
  v1 = await buildFixtureClosure({ tag: 'v1' });
  v2 = await buildFixtureClosure({ tag: 'v2' });
});

describe('nixoci push', () => {
  it('pushes, then sends nothing unchanged, then only the changed path — with no local cache', async () => {
    const repo = uniqueRepo('cli');
    const ref = `docker://${env.registry}/${repo}:v1`;
    const first = await nixociJson<Report>([
      'push',
      '--graph',
      v1.graphFile,
      ref,
      '--no-cache',
      '--tag',
      'latest',
    ]);
    expect(first.layers.every((l) => l.action === 'uploaded' && l.bytesSent > 0)).toBe(true);
    expect(first.targets[0]!.tags).toEqual([`${env.registry}/${repo}:v1`, `${env.registry}/${repo}:latest`]);
    await verifyPushed(env.registry, repo, 'v1');
    await verifyPushed(env.registry, repo, 'latest');
    // without --json, the summary names the other tags too
    const told = await nixoci(['push', '--graph', v1.graphFile, ref, '--tag', 'latest']);
    expect(told.code, told.stderr).toBe(0);
    expect(told.stderr).toContain(`${ref}: also tagged ${env.registry}/${repo}:latest\n`);

    const again = await nixociJson<Report>(['push', '--graph', v1.graphFile, ref, '--no-cache']);
    expect(again.layers.every((l) => l.action === 'reused' && l.bytesSent === 0)).toBe(true);
    expect(again.bytesRead).toBe(0);
    expect(again.manifestDigest).toBe(first.manifestDigest);

    const changed = await nixociJson<Report>(['push', '--graph', v2.graphFile, ref, '--no-cache']);
    expect(changed.layers.filter((l) => l.action === 'uploaded').map((l) => l.storePaths)).toEqual([
      [v2.app],
    ]);
  });

  it('mounts from the repository an earlier run pushed to, with no --mount-from', async () => {
    const cacheDir = mkdtempSync(path.join(tmpdir(), 'nixoci-cache-'));
    try {
      const staging = `docker://${env.registry}/${uniqueRepo('staging')}:v1`;
      const first = await nixociJson<Report>([
        'push',
        '--graph',
        v1.graphFile,
        staging,
        '--cache-dir',
        cacheDir,
      ]);
      expect(first.layers.every((l) => l.action === 'uploaded')).toBe(true);

      // Another run, another repository of the same registry: the cache remembers where the
      // blobs are, so every layer is mounted; nothing is read or sent.
      const prodRepo = uniqueRepo('prod');
      const prod = await nixociJson<Report>([
        'push',
        '--graph',
        v1.graphFile,
        `docker://${env.registry}/${prodRepo}:v1`,
        '--cache-dir',
        cacheDir,
      ]);
      expect(prod.layers.map((l) => l.action)).toEqual(first.layers.map(() => 'mounted'));
      expect(prod.layers.every((l) => l.bytesSent === 0)).toBe(true);
      expect(prod.bytesRead).toBe(0);
      expect(prod.manifestDigest).toBe(first.manifestDigest);
      await verifyPushed(env.registry, prodRepo, 'v1');

      // Without that memory (another cache dir) the layers are uploaded.
      const other = mkdtempSync(path.join(tmpdir(), 'nixoci-cache-'));
      try {
        const fresh = await nixociJson<Report>([
          'push',
          '--graph',
          v1.graphFile,
          `docker://${env.registry}/${uniqueRepo('fresh')}:v1`,
          '--cache-dir',
          other,
        ]);
        expect(fresh.layers.every((l) => l.action === 'uploaded')).toBe(true);
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it('build --to docker:// with --mount-from mounts every layer', async () => {
    const repo = uniqueRepo('cli-src');
    const cacheDir = mkdtempSync(path.join(tmpdir(), 'nixoci-cache-'));
    await nixociJson([
      'build',
      '--graph',
      v1.graphFile,
      '--to',
      `docker://${env.registry}/${repo}:a`,
      '--cache-dir',
      cacheDir,
    ]);
    const repo2 = uniqueRepo('cli-dst');
    const r = await nixociJson<Report>([
      'build',
      '--graph',
      v1.graphFile,
      '--to',
      `docker://${env.registry}/${repo2}:a`,
      '--mount-from',
      repo,
      '--cache-dir',
      cacheDir,
    ]);
    expect(r.layers.every((l) => l.action === 'mounted' && l.bytesSent === 0)).toBe(true);
    // the source written with its registry, as --cache-from takes it; a fresh cache knows no holders
    const r3 = await nixociJson<Report>([
      'push',
      '--graph',
      v1.graphFile,
      `${env.registry}/${uniqueRepo('cli-dst')}:a`,
      '--mount-from',
      `${env.registry}/${repo}`,
      '--no-cache',
    ]);
    expect(r3.layers.every((l) => l.action === 'mounted' && l.bytesSent === 0)).toBe(true);
    for (const bad of ['127.0.0.1:9/other/repo', `${repo}:a`, 'Bad Name']) {
      const e = await nixoci([
        'push',
        '--graph',
        v1.graphFile,
        `${env.registry}/${repo2}:b`,
        '--mount-from',
        bad,
      ]);
      expect(e.code, bad).toBe(2);
      expect(e.stderr).toMatch(/^nixoci: error: nixoci push: --mount-from/);
    }
  });

  it('fails with exit 1, the registry named and a hint, on a wrong password', async () => {
    const repo = uniqueRepo('cli-wrong');
    const r = await nixoci(
      [
        'push',
        '--graph',
        v1.graphFile,
        `${env.registryBasic}/${repo}:v1`,
        '--creds',
        `${env.registryBasicUser}:not-it`,
      ],
      {
        env: { HOME: mkdtempSync(path.join(tmpdir(), 'nixoci-home-')) },
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`push to ${env.registryBasic}/${repo} failed`);
    expect(r.stderr).toMatch(/hint: check the credentials for 127\.0\.0\.1:5001/);
    expect(r.stderr).not.toContain('not-it');
  });

  it('Ctrl-C while a credential helper hangs ends the push at once with exit 130', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-hang-'));
    mkdirSync(path.join(dir, 'bin'));
    const started = path.join(dir, 'started');
    // The helper waits on a child of its own, which keeps the pipes open once the shell is killed.
    // The child sleeps for a day: the old code, which waited for it, never ends (a bound far above
    // what a busy machine needs ends the test then); it is killed at the end in any case.
    const sleeper = path.join(dir, 'sleep.pid');
    writeFileSync(
      path.join(dir, 'bin', 'docker-credential-hang'),
      `#!/bin/sh\nsleep 100000 &\necho $! > ${sleeper}\ntouch ${started}\nwait $!\n`,
    );
    chmodSync(path.join(dir, 'bin', 'docker-credential-hang'), 0o755);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credsStore: 'hang' }));
    const child = spawn(
      cliBin,
      ['push', '--graph', v1.graphFile, `${env.registryBasic}/${uniqueRepo('hang')}:v1`],
      {
        env: { ...process.env, HOME: dir, DOCKER_CONFIG: dir, PATH: `${dir}/bin:${process.env.PATH}` },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const wait = (ms: number): Promise<'waiting'> => new Promise((r) => setTimeout(() => r('waiting'), ms));
    try {
      for (
        const end = Date.now() + 90_000;
        !existsSync(started) && child.exitCode === null && Date.now() < end;
      )
        await wait(50);
      child.kill('SIGINT');
      const code = await Promise.race([exited, wait(100_000)]);
      if (code === 'waiting') child.kill('SIGKILL');
      expect(code, 'still waiting for the helper 100 s after Ctrl-C').toBe(130);
      expect(stderr).toBe('nixoci: interrupted\n');
    } finally {
      try {
        process.kill(Number(readFileSync(sleeper, 'utf8')), 'SIGKILL');
      } catch {
        // never started, or ended with the helper
      }
    }
  }, 240_000);

  it('a reader of standard error that stops early (`push -v 2>&1 | head -1`) does not end the push', async () => {
    // A `nix` that takes 1 s: the first --verbose line is out before it runs, the rest after the
    // reader has gone, each write to the closed pipe failing with EPIPE.
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-stderr-gone-'));
    try {
      const slowNix = path.join(dir, 'nix');
      writeFileSync(slowNix, `#!/bin/sh\nsleep 1\nexec nix "$@"\n`);
      chmodSync(slowNix, 0o755);
      const repo = uniqueRepo('stderr-gone');
      const child = spawn(cliBin, ['push', '--path', v1.app, '--verbose', `${env.registry}/${repo}:v1`], {
        env: { ...process.env, NIXOCI_NIX: slowNix },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.stderr.once('data', () => child.stderr.destroy());
      expect(await exited).toBe(0);
      await verifyPushed(env.registry, repo, 'v1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("multi-arch: an unprefixed --path goes into every architecture's image, next to each one's own", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-shared-'));
    writeFileSync(path.join(dir, 'settings.json'), '{"shared": true}\n');
    const shared = execFileSync('nix-store', ['--add', dir], { encoding: 'utf8' }).trim();
    const repo = uniqueRepo('multi-shared');
    const args = ['--arch', 'amd64,arm64', '--path', `amd64=${v1.app}`, '--path', shared];
    await nixociJson(['push', ...args, '--path', `arm64=${v2.app}`, `${env.registry}/${repo}:v1`]);
    const index = (await (
      await registryGet(env.registry, `/v2/${repo}/manifests/v1`, 'application/vnd.oci.image.index.v1+json')
    ).json()) as { manifests: { digest: string; platform: { architecture: string } }[] };
    const pathsOf = async (arch: string): Promise<string[]> => {
      const m = index.manifests.find((x) => x.platform.architecture === arch)!;
      const { manifest } = await verifyPushed(env.registry, repo, m.digest);
      return manifest.layers.flatMap((l) => l.annotations['dev.nixoci.store-paths']!.split(' '));
    };
    const amd64 = await pathsOf('amd64');
    const arm64 = await pathsOf('arm64');
    expect(amd64).toEqual(expect.arrayContaining([v1.app, shared]));
    expect(amd64).not.toContain(v2.app);
    expect(arm64).toEqual(expect.arrayContaining([v2.app, shared]));
    expect(arm64).not.toContain(v1.app);
  });

  it("pushes under a reference that pins the image's digest, and refuses one that pins another", async () => {
    const repo = uniqueRepo('pinned');
    const first = await nixociJson<Report>(['push', '--graph', v1.graphFile, `${env.registry}/${repo}:a`]);
    const pinned = await nixociJson<Report>([
      'push',
      '--graph',
      v1.graphFile,
      `${env.registry}/${repo}:b@${first.manifestDigest}`,
    ]);
    expect(pinned.manifestDigest).toBe(first.manifestDigest);
    await verifyPushed(env.registry, repo, 'b');
    // v2's manifest is not the one v1's digest names: no tag c, and tag a stays where it was
    const other = await nixoci([
      'push',
      '--graph',
      v2.graphFile,
      `${env.registry}/${repo}:a@${first.manifestDigest}`,
    ]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(
      new RegExp(
        `^nixoci: error: .*: the image's manifest is sha256:[0-9a-f]{64}, not the ${first.manifestDigest} the reference pins$`,
        'm',
      ),
    );
    const noTag = await nixoci([
      'push',
      '--graph',
      v2.graphFile,
      `${env.registry}/${repo}:c@${first.manifestDigest}`,
    ]);
    expect(noTag.code).toBe(1);
    const tags = (await (await fetch(`http://${env.registry}/v2/${repo}/tags/list`)).json()) as {
      tags: string[];
    };
    expect(tags.tags.sort()).toEqual(['a', 'b']);
    const head = await fetch(`http://${env.registry}/v2/${repo}/manifests/a`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(head.headers.get('docker-content-digest')).toBe(first.manifestDigest);
  });

  it('rejects a bad reference as a usage error', async () => {
    const r = await nixoci(['push', '--graph', v1.graphFile, 'docker://Bad/Name']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/lowercase/);
  });

  it('refuses a gzip --compression-level above 9 as a usage error before writing anything', async () => {
    // A registry gets gzip unless told otherwise; zlib stops at 9 (zstd goes to 19).
    const repo = uniqueRepo('level');
    const layout = path.join(mkdtempSync(path.join(tmpdir(), 'nixoci-level-')), 'oci');
    for (const args of [
      ['push', '--graph', v1.graphFile, '--compression-level', '12', `${env.registry}/${repo}:a`],
      ['build', '--graph', v1.graphFile, '--compression-level', '12', '--to', `oci:${layout}`],
      ['build', '--graph', v1.graphFile, '--compression-level', '12', '--compression', 'gzip'],
    ].map((a) => (a[0] === 'build' ? [...a, '--to', `docker://${env.registry}/${repo}:b`] : a))) {
      const r = await nixoci(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^nixoci: error: nixoci (push|build): --compression-level .*\b1(–| to )9\b/);
      expect(r.stderr).not.toContain('internal error');
    }
    expect(existsSync(layout)).toBe(false); // refused before the layout (the first target) was written
    const res = await fetch(`http://${env.registry}/v2/${repo}/tags/list`);
    expect(res.status).toBe(404);
    const zstd = await nixoci([
      'push',
      '--graph',
      v1.graphFile,
      '--compression',
      'zstd',
      '--compression-level',
      '12',
      `${env.registry}/${repo}:z`,
    ]);
    expect(zstd.code, zstd.stderr).toBe(0);
    // A level with --compression none would be silently ignored: refused.
    const none = await nixoci([
      'build',
      '--graph',
      v1.graphFile,
      '--compression',
      'none',
      '--compression-level',
      '5',
      '--to',
      `oci:${layout}`,
    ]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--compression-level 5: --compression none compresses nothing/);
    expect(existsSync(layout)).toBe(false);
  });

  it('gives the digests another --compression-level gives, whatever level the tag was pushed at', async () => {
    // The media type alone does not tell a level-9 gzip blob from a level-1 one: a push at level 9
    // over a level-1 image must not take the level-1 layers from the tag's annotations (its
    // manifest would then depend on what the registry held, and differ from `build --to oci:`'s).
    const repo = uniqueRepo('relevel');
    const ref = `docker://${env.registry}/${repo}:t`;
    const layout = path.join(mkdtempSync(path.join(tmpdir(), 'nixoci-relevel-')), 'oci');
    try {
      const built = await nixociJson<Report>([
        'build',
        '--graph',
        v1.graphFile,
        '--compression',
        'gzip',
        '--compression-level',
        '9',
        '--to',
        `oci:${layout}`,
        '--no-cache',
      ]);
      const level1 = await nixociJson<Report>(['push', '--graph', v1.graphFile, ref, '--no-cache']);
      expect(level1.manifestDigest).not.toBe(built.manifestDigest);
      const level9 = ['push', '--graph', v1.graphFile, '--compression-level', '9', ref, '--no-cache'];
      const first = await nixociJson<Report>(level9);
      expect(first.manifestDigest).toBe(built.manifestDigest);
      expect(first.layers.some((l) => l.action === 'reused')).toBe(false);
      // at the same level, the tag's layers are reused as before, and the default level reuses none
      const again = await nixociJson<Report>(level9);
      expect(again.layers.every((l) => l.action === 'reused')).toBe(true);
      expect(again.manifestDigest).toBe(built.manifestDigest);
      const back = await nixociJson<Report>(['push', '--graph', v1.graphFile, ref, '--no-cache']);
      expect(back.manifestDigest).toBe(level1.manifestDigest);
      expect(back.layers.some((l) => l.action === 'reused')).toBe(false);
    } finally {
      rmSync(path.dirname(layout), { recursive: true, force: true });
    }
  });

  it('reads the tag again when reading the closure took long enough for another push to move it', async () => {
    // What is at the tag is read while the closure is read; with a slow source (here a `nix` held
    // until the test lets it go, as a long Nix build would be) another push may move the tag
    // meanwhile. The push must then not take its own manifest for already there. The slow push
    // goes through a proxy, so that the tag is moved only once it has read it, however slow the
    // machine (it was a fixed 0.7 s into a 2 s `nix`).
    const repo = uniqueRepo('moved');
    const ref = `docker://${env.registry}/${repo}:t`;
    const a = await nixociJson<Report>(['push', '--graph', v1.graphFile, ref]);
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-slow-nix-'));
    const go = path.join(dir, 'go');
    const proxy = await startFaultProxy(env.registry);
    try {
      const slowNix = path.join(dir, 'nix');
      // after the hold, a sleep: the read takes over PREPARED_FRESH_MS (past which answers are asked
      // again) even where the other push is quick; a slow machine only makes it longer
      const pause = PREPARED_FRESH_MS / 1000 + 1;
      writeFileSync(
        slowNix,
        `#!/bin/sh\nwhile [ ! -e ${go} ]; do sleep 0.05; done\nsleep ${pause}\nexec nix "$@"\n`,
      );
      chmodSync(slowNix, 0o755);
      const slow = nixoci(['push', '--path', v1.app, `docker://${proxy.host}/${repo}:t`, '--json'], {
        env: { NIXOCI_NIX: slowNix },
      });
      const tagRead = (): boolean => proxy.seen.some((s) => s.path === `/v2/${repo}/manifests/t`);
      for (const end = Date.now() + 90_000; !tagRead() && Date.now() < end;)
        await new Promise((r) => setTimeout(r, 20));
      expect(tagRead(), 'the slow push read the tag while Nix was held').toBe(true);
      const b = await nixociJson<Report>(['push', '--graph', v2.graphFile, ref]);
      expect(b.manifestDigest).not.toBe(a.manifestDigest);
      writeFileSync(go, '');
      const r = await slow;
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as Report).manifestDigest).toBe(a.manifestDigest);
      const at = await fetch(`http://${env.registry}/v2/${repo}/manifests/t`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      expect(at.headers.get('docker-content-digest')).toBe(a.manifestDigest);
    } finally {
      writeFileSync(go, '');
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
