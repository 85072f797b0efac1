// An OCI layout (src/registry/oci-layout-target.ts) shared by several runs: tags written at the
// same time by separate `nixoci build` processes, and the lock a killed run left, checked with
// umoci and skopeo.
import { execFileSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGraphFile } from '../../src/closure/load.js';
import { sha256Digest } from '../../src/core/digest.js';
import { DEFAULT_CREATED, type Image } from '../../src/image/image.js';
import { DigestCache } from '../../src/layer/cache.js';
import { makeLayers } from '../../src/layer/layer.js';
import { planLayers } from '../../src/layer/plan.js';
import { OciLayoutTarget } from '../../src/registry/oci-layout-target.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { FakeStore } from '../robustness/fake-store.js';
import { spawnCli } from '../robustness/robust-helpers.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(path.join(tmpdir(), 'nixoci-oci-layout-'));
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'oci-layout' });
}, 600_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The tags of the layout, as umoci lists them. */
/**
 * Whether the run of that pid is writing a layer into the layout: two temp blobs of its own, the
 * one its start made under the layout's lock and its layer's, made once the lock is let go (a run
 * stopped now holds no lock).
 */
const writing = (dir: string, pid: number | undefined): boolean => {
  const blobs = path.join(dir, 'blobs', 'sha256');
  return existsSync(blobs) && readdirSync(blobs).filter((n) => n.startsWith(`.tmp-${pid}-`)).length >= 2;
};
const umociTags = (dir: string): string[] =>
  execFileSync('umoci', ['ls', '--layout', dir], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();

const build = (dir: string, tag: string, extra: string[] = []) =>
  nixociJson<{ manifestDigest: string }>([
    'build',
    '--graph',
    fx.graphFile,
    '--to',
    `oci:${dir}:${tag}`,
    ...extra,
  ]);

describe('an OCI layout written by several runs', () => {
  it('keeps every tag when runs tag one layout at once, and the tags it held before', async () => {
    const runs = 10;
    for (let round = 0; round < 3; round++) {
      const dir = path.join(work, `shared-${round}`);
      await build(dir, 'before');
      const tags = Array.from({ length: runs }, (_, i) => `t${i}`);
      const reports = await Promise.all(tags.map((t, i) => build(dir, t, ['--env', `RUN=${i}`])));
      expect(umociTags(dir)).toEqual(['before', ...tags].sort());
      // skopeo reads each tag, and finds the manifest that run reported.
      for (const [i, t] of tags.entries()) {
        const raw = execFileSync('skopeo', ['inspect', '--raw', `oci:${dir}:${t}`]);
        expect(sha256Digest(raw)).toBe(reports[i]!.manifestDigest);
      }
      expect(existsSync(path.join(dir, 'index.json.lock'))).toBe(false);
    }
  }, 300_000);

  it('takes over the lock of a run that was killed, and leaves none of its own', async () => {
    const dir = path.join(work, 'stale-lock');
    await build(dir, 'a');
    writeFileSync(path.join(dir, 'index.json.lock'), '999999\n'); // no such process
    await build(dir, 'b');
    expect(umociTags(dir)).toEqual(['a', 'b']);
    expect(existsSync(path.join(dir, 'index.json.lock'))).toBe(false);
  });

  it('refuses a directory whose index.json is not an OCI index before writing anything into it', async () => {
    for (const [name, index] of [
      ['garbage', '{{{'],
      ['not-an-index', '{"hello": "world"}'],
    ] as const) {
      const dir = path.join(work, name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'index.json'), index);
      writeFileSync(path.join(dir, 'notes.txt'), 'mine');
      const r = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${dir}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `nixoci: error: ${dir}/index.json is not a valid OCI index\n` +
          'hint: point oci: at an empty directory or at an OCI image layout\n',
      );
      expect(readdirSync(dir).sort()).toEqual(['index.json', 'notes.txt']);
    }
  });

  it("keeps what other tools put in index.json: the index's annotations and untagged entries", async () => {
    const dir = path.join(work, 'foreign');
    const a = await build(dir, 'a');
    const file = path.join(dir, 'index.json');
    const index = JSON.parse(readFileSync(file, 'utf8')) as {
      manifests: Record<string, unknown>[];
      annotations?: Record<string, string>;
    };
    const untagged = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: a.manifestDigest,
      size: index.manifests[0]!.size as number,
      platform: { architecture: 'amd64', os: 'linux' },
    };
    index.annotations = { 'org.example.written-by': 'another tool' };
    index.manifests.push(untagged);
    writeFileSync(file, JSON.stringify(index));
    await build(dir, 'b');
    const after = JSON.parse(readFileSync(file, 'utf8')) as typeof index;
    expect(after.annotations).toEqual({ 'org.example.written-by': 'another tool' });
    expect(after.manifests).toContainEqual(untagged);
    expect(umociTags(dir)).toEqual(['a', 'b']);
  });

  it('an interrupted run that made the layout leaves the image another run tagged there meanwhile', async () => {
    // A 64 MiB store path of noise (AES-CTR of zeros), gzip-compressed: long enough to interrupt.
    const noise = path.join(work, 'noise');
    mkdirSync(noise);
    const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16, 4));
    writeFileSync(path.join(noise, 'noise.bin'), c.update(Buffer.alloc(64 << 20)));
    const big = execFileSync('nix-store', ['--add', noise], { encoding: 'utf8' }).trim();
    const bigGraph = path.join(work, 'big.json');
    writeFileSync(bigGraph, JSON.stringify([big]));
    const dir = path.join(work, 'interrupted');
    const slow = spawnCli([
      'build',
      '--graph',
      bigGraph,
      '--to',
      `oci:${dir}:big`,
      '--no-cache',
      '--compression',
      'gzip',
    ]);
    // Stopped once it writes its layer, while the other run writes and tags: on a busy machine it
    // could otherwise finish first. The SIGINT waits for the SIGCONT.
    while (!writing(dir, slow.child.pid) && slow.child.exitCode === null)
      await new Promise((r) => setTimeout(r, 5));
    slow.child.kill('SIGSTOP');
    const small = await build(dir, 'small');
    expect(slow.child.exitCode).toBeNull(); // still writing its layer
    slow.child.kill('SIGINT');
    slow.child.kill('SIGCONT');
    const r = await slow.done;
    expect(r.code).toBe(130);
    expect(umociTags(dir)).toEqual(['small']);
    const raw = execFileSync('skopeo', ['inspect', '--raw', `oci:${dir}:small`]);
    expect(sha256Digest(raw)).toBe(small.manifestDigest);
    // Alone, an interrupted run removes the directory it made.
    const alone = path.join(work, 'interrupted-alone');
    const run = spawnCli([
      'build',
      '--graph',
      bigGraph,
      '--to',
      `oci:${alone}`,
      '--no-cache',
      '--compression',
      'gzip',
    ]);
    while (!existsSync(alone)) await new Promise((r) => setTimeout(r, 5));
    run.child.kill('SIGINT');
    expect((await run.done).code).toBe(130);
    expect(existsSync(alone)).toBe(false);
  }, 120_000);

  it('an interrupted run that made the layout leaves it to a run still writing there', async () => {
    // Two slow runs (a 64 MiB store path of noise, gzip) into one new layout: the first makes the
    // directory and is interrupted while the second writes its layer there. The second must finish
    // and tag its image; the first used to remove the directory from under it ('ENOENT … .tmp-…').
    const noise = path.join(work, 'noise-busy');
    mkdirSync(noise);
    const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 5), Buffer.alloc(16, 6));
    writeFileSync(path.join(noise, 'noise.bin'), c.update(Buffer.alloc(64 << 20)));
    const big = execFileSync('nix-store', ['--add', noise], { encoding: 'utf8' }).trim();
    const bigGraph = path.join(work, 'big-busy.json');
    writeFileSync(bigGraph, JSON.stringify([big]));
    const dir = path.join(work, 'interrupted-busy');
    const blobs = path.join(dir, 'blobs', 'sha256');
    const slow = (tag: string) =>
      spawnCli([
        'build',
        '--graph',
        bigGraph,
        '--to',
        `oci:${dir}:${tag}`,
        '--no-cache',
        '--compression',
        'gzip',
      ]);
    // Each run is stopped once it writes its layer, so that the order is the same on a busy
    // machine: the first is interrupted (and cleans up) while the second has its layer half-written.
    const first = slow('first');
    while (!writing(dir, first.child.pid) && first.child.exitCode === null)
      await new Promise((r) => setTimeout(r, 5));
    first.child.kill('SIGSTOP');
    const second = slow('second');
    while (!writing(dir, second.child.pid) && second.child.exitCode === null)
      await new Promise((r) => setTimeout(r, 5));
    second.child.kill('SIGSTOP');
    expect(first.child.exitCode).toBeNull(); // still writing its layer
    first.child.kill('SIGINT');
    first.child.kill('SIGCONT');
    expect((await first.done).code).toBe(130);
    second.child.kill('SIGCONT');
    const r = await second.done;
    expect(r.code, r.stderr).toBe(0);
    expect(umociTags(dir)).toEqual(['second']);
    execFileSync('umoci', ['unpack', '--image', `${dir}:second`, path.join(work, 'busy-bundle')]);
    expect(readdirSync(blobs).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(readdirSync(work).filter((n) => n.includes('.removed'))).toEqual([]);
  }, 120_000);
});

describe('an OCI layout, when a layer fails', () => {
  it('stops the other layers: none starts after the failure, no temp file is left, the tags stay', async () => {
    const root = mkdtempSync(path.join(work, 'hx-stop-'));
    // A fake store (store paths nixoci reads as they are): one path holds a FIFO, which no layer
    // may hold, so its layer fails at once, as it is walked.
    const store = new FakeStore(root);
    const bad = store.add('fifo', (d) => execFileSync('mkfifo', [path.join(d, 'pipe')]));
    const good = ['b', 'c', 'd', 'e', 'f'].map((n) =>
      store.add(n, (d) => writeFileSync(path.join(d, 'file'), Buffer.alloc(256 << 10, n))),
    );
    // The layout writes the biggest layers first, two at a time (NAR sizes as the graph says): the
    // bad one and `b` are given the two turns; c…f wait for one.
    const narHash = `sha256-${Buffer.alloc(32, 1).toString('base64')}`;
    const graph = (paths: string[]): Promise<Awaited<ReturnType<typeof loadGraphFile>>> => {
      const file = path.join(root, `graph-${paths.length}.json`);
      const sizes = new Map([[bad, 50 << 20], ...good.map((p, i) => [p, (40 - i) << 20] as const)]);
      writeFileSync(
        file,
        JSON.stringify(paths.map((p) => ({ path: p, narHash, narSize: sizes.get(p), references: [] }))),
      );
      return loadGraphFile(file, { storeDir: store.dir });
    };
    const started: string[] = [];
    const imageOf = async (paths: string[]): Promise<Image> => {
      const closure = await graph(paths);
      const layers = makeLayers(planLayers(closure), {
        compression: 'gzip',
        cache: new DigestCache(null),
        stats: { bytesRead: 0 },
        storeDir: store.dir,
        onProgress: (e) => {
          if (e.phase === 'start') started.push(path.basename(e.layer.planned.storePaths[0]!).slice(33));
        },
      });
      expect(layers).toHaveLength(paths.length);
      return {
        platform: { architecture: 'amd64', os: 'linux' },
        closure,
        layers,
        run: { env: [], exposedPorts: [], labels: {} },
        created: DEFAULT_CREATED,
      };
    };
    // A layout that holds an image already (kept, not removed, when the next run fails).
    const dir = path.join(root, 'layout');
    await new OciLayoutTarget(dir, 'old').write([await imageOf(good)], {});
    const index = readFileSync(path.join(dir, 'index.json'));
    const blobs = path.join(dir, 'blobs', 'sha256');
    const before = readdirSync(blobs).sort();
    started.length = 0;

    await expect(
      new OciLayoutTarget(dir, 'new').write([await imageOf([bad, ...good])], {}),
    ).rejects.toMatchObject({
      message: expect.stringMatching(/pipe in a layer: it is a FIFO/),
    });
    // Anything the old code started as the bad layer failed (the next queued layer) has started by
    // now: its start is a few promise callbacks after the failure.
    await new Promise((r) => setImmediate(r));
    // Only `b` had started (alongside the bad one, which fails before it starts); c…f never did.
    expect(started).toEqual(['b']);
    expect(readdirSync(blobs).filter((n) => n.startsWith('.'))).toEqual([]);
    // b's blob may have been put in place before it was stopped; no other new blob is there.
    const added = readdirSync(blobs).filter((n) => !before.includes(n));
    expect(added.length).toBeLessThanOrEqual(1);
    expect(readFileSync(path.join(dir, 'index.json'))).toEqual(index);
    expect(umociTags(dir)).toEqual(['old']);
    execFileSync('umoci', ['stat', '--image', `${dir}:old`]);
  });
});
