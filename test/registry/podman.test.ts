// `nixoci load` into a real Podman (the API service from scripts/services, on .state/podman.sock)
// through the built CLI. `podman run` is refused by this sandbox, so the images are checked with
// `podman image inspect` (through the service) and `podman image mount` (on the same store).
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineClient } from '../../src/registry/engine/client.js';
import { parseHost } from '../../src/registry/engine/discover.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { podman, podmanRmi } from '../helpers/podman.js';
import { tempDir } from './daemon-helpers.js';

interface LoadLayer {
  storePaths: string[];
  diffId: string;
  size: number;
  action: string;
  bytesSent: number;
}
interface LoadReport {
  command: string;
  layers: LoadLayer[];
  targets: { target: string; images: { configDigest: string }[]; notes: string[] | null }[];
}
interface InspectReport {
  image: { reference: string; layers: { index: number; diffId: string; storePaths: string[] }[] };
}
interface PodmanInspect {
  Id: string;
  RepoTags: string[] | null;
  RootFS: { Layers: string[] };
  Config: { Entrypoint: string[] | null };
}

const run = randomBytes(4).toString('hex');
const name = `nixoci-podman-${run}`;

async function podmanInspect(ref: string): Promise<PodmanInspect> {
  const r = await podman(['image', 'inspect', ref], { remote: true });
  const list = JSON.parse(r.stdout) as PodmanInspect[];
  expect(list).toHaveLength(1);
  return list[0]!;
}

/** Runs fn on the image's root filesystem (`podman image mount`), then unmounts it. */
async function withMount<T>(ref: string, fn: (root: string) => T): Promise<T> {
  const root = (await podman(['image', 'mount', ref])).stdout.trim();
  try {
    expect(path.isAbsolute(root)).toBe(true);
    return fn(root);
  } finally {
    await podman(['image', 'unmount', ref]);
  }
}

describe('nixoci load into Podman', () => {
  const cacheDir = tempDir('nixoci-podman-cache-');
  let host: string;
  let v1: FixtureClosure;
  let v2: FixtureClosure;
  let first: LoadReport;
  let second: LoadReport;

  beforeAll(async () => {
    host = testEnv().podmanHost;
    v1 = await buildFixtureClosure({ tag: 'podman-v1' });
    v2 = await buildFixtureClosure({ tag: 'podman-v2' });
  });

  afterAll(async () => {
    await podmanRmi(...['one', 'also', 'two', 'env', 'docker'].map((t) => `${name}:${t}`));
  });

  it('loads a Nix closure with every layer sent; podman sees its diffIDs, Entrypoint and files', async () => {
    first = await nixociJson<LoadReport>([
      'load',
      '--graph',
      v1.graphFile,
      '--engine',
      'podman',
      '--host',
      host,
      `${name}:one`,
      '--tag',
      'also',
      '--entrypoint',
      `${v1.app}/bin/app`,
      '--cache-dir',
      cacheDir,
    ]);
    expect(first.command).toBe('load');
    expect(first.targets[0]!.target).toBe(`podman:${name}:one`);
    // Podman holds none of the layers yet: every one is sent.
    expect(first.layers.length).toBeGreaterThanOrEqual(v1.paths.length);
    for (const l of first.layers) {
      expect(l.action).toBe('sent');
      expect(l.bytesSent).toBe(l.size);
    }
    expect(first.layers.flatMap((l) => l.storePaths).sort()).toEqual([...v1.paths].sort());

    const diffIds = first.layers.map((l) => l.diffId);
    for (const tag of ['one', 'also']) {
      const img = await podmanInspect(`${name}:${tag}`);
      expect(img.RootFS.Layers).toEqual(diffIds);
      expect(img.Config.Entrypoint).toEqual([`${v1.app}/bin/app`]);
      expect(`sha256:${img.Id.replace(/^sha256:/, '')}`).toBe(first.targets[0]!.images[0]!.configDigest);
    }
    // Short names land under localhost/, once each (no docker.io/ duplicates from a tag call).
    // (Only this run's: a run at the same time loads the same image under its own name.)
    const tags = ((await podmanInspect(`${name}:one`)).RepoTags ?? []).filter((t) => t.includes(name));
    expect([...tags].sort()).toEqual([`localhost/${name}:also`, `localhost/${name}:one`]);

    // The local CLI on the service's store sees the same image, and its files.
    const local = JSON.parse((await podman(['image', 'inspect', `${name}:one`])).stdout) as PodmanInspect[];
    expect(local[0]!.RootFS.Layers).toEqual(diffIds);
    const app = `${v1.app}/bin/app`;
    await withMount(`${name}:one`, (root) => {
      const inImage = readFileSync(path.join(root, app));
      expect(inImage.equals(readFileSync(app))).toBe(true);
      expect(inImage.toString()).toContain('fixture app podman-v1');
      for (const p of v1.paths) expect(existsSync(path.join(root, p))).toBe(true);
    });
  });

  it('loads a second closure with a changed app path (podman:NAME:TAG form)', async () => {
    second = await nixociJson<LoadReport>([
      'load',
      '--graph',
      v2.graphFile,
      `podman:${name}:two`,
      '--host',
      host,
      '--entrypoint',
      `${v2.app}/bin/app`,
      '--cache-dir',
      cacheDir,
    ]);
    expect(second.targets[0]!.target).toBe(`podman:${name}:two`);
    // Podman holds every layer but the app's (from name:one): only that one is sent.
    expect(second.layers.map((l) => l.action)).toEqual([
      ...first.layers.slice(1).map(() => 'omitted'),
      'sent',
    ]);
    const before = first.layers.map((l) => l.diffId);
    const after = second.layers.map((l) => l.diffId);
    // Only the app's layer differs (it is planned last).
    expect(after.slice(0, -1)).toEqual(before.slice(0, -1));
    expect(after.at(-1)).not.toBe(before.at(-1));
    expect(second.layers.at(-1)!.storePaths).toEqual([v2.app]);

    const img = await podmanInspect(`${name}:two`);
    expect(img.RootFS.Layers).toEqual(after);
    expect(img.Config.Entrypoint).toEqual([`${v2.app}/bin/app`]);
    await withMount(`${name}:two`, (root) => {
      const app = readFileSync(path.join(root, v2.app, 'bin/app'));
      expect(app.equals(readFileSync(`${v2.app}/bin/app`))).toBe(true);
      expect(app.toString()).toContain('fixture app podman-v2');
      expect(existsSync(path.join(root, v1.app))).toBe(false);
    });
    // The first image is untouched.
    expect((await podmanInspect(`${name}:one`)).RootFS.Layers).toEqual(before);
  });

  it('inspects podman:NAME:TAG with the layers and their store paths', async () => {
    const r = await nixociJson<InspectReport>(['inspect', `podman:${name}:two`, '--host', host]);
    expect(r.image.layers.map((l) => l.diffId)).toEqual(second.layers.map((l) => l.diffId));
    expect(r.image.layers.map((l) => l.storePaths)).toEqual(second.layers.map((l) => l.storePaths));
    const text = await nixoci(['inspect', `podman:${name}:two`, '--host', host]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(v2.app);
  });

  it('finds the service through CONTAINER_HOST', async () => {
    const r = await nixoci(
      ['load', '--graph', v1.graphFile, `podman:${name}:env`, '--entrypoint', `${v1.app}/bin/app`, '-q'],
      { env: { CONTAINER_HOST: host, DOCKER_HOST: 'unix:///nonexistent/docker.sock' } },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await podmanInspect(`${name}:env`)).RootFS.Layers).toEqual(first.layers.map((l) => l.diffId));
  });

  it('loads into Podman named by DOCKER_HOST (docker-daemon:) as into Podman, never grouped', async () => {
    // Podman's docs suggest DOCKER_HOST=<its socket> for Docker tools. name:two holds all of
    // v2's layers: v2 again under a new tag sends no layer; a tiny group size must not make
    // a grouped load (Docker's classic store only).
    const r = await nixociJson<LoadReport>(
      ['load', '--graph', v2.graphFile, `${name}:docker`, '--cache-dir', cacheDir],
      {
        env: { DOCKER_HOST: host, NIXOCI_LOAD_GROUP_BYTES: '1000', CONTAINER_HOST: '', DOCKER_CONTEXT: '' },
      },
    );
    expect(r.targets[0]!.target).toBe(`docker-daemon:${name}:docker`);
    expect(r.layers.every((l) => l.action === 'omitted' && l.bytesSent === 0)).toBe(true);
    const notes = r.targets[0]!.notes ?? [];
    expect(notes.join('\n')).toContain('layer blobs omitted: the engine holds them');
    expect(notes.join('\n')).not.toMatch(/loading in|retried/);
    expect((await podmanInspect(`${name}:docker`)).RootFS.Layers).toEqual(r.layers.map((l) => l.diffId));
  });

  it("negotiates Podman's compat API and reports a rejected archive with its message", async () => {
    const client = new EngineClient(parseHost(host, 'test'), 'podman');
    const v = await client.negotiate();
    expect(v.Version).toMatch(/^\d+\./);
    expect(client.apiVersion).toBe(v.ApiVersion);
    await expect(client.loadImage(Readable.from([randomBytes(4096)]))).rejects.toThrow(
      /Podman at unix:.* rejected the image: .*(load|format)/,
    );
    // reached as a Docker engine (DOCKER_HOST): named Podman once its GET /version said so
    const asDocker = new EngineClient(parseHost(host, 'test'), 'docker');
    await asDocker.negotiate();
    await expect(asDocker.loadImage(Readable.from([randomBytes(4096)]))).rejects.toThrow(
      /^Podman at unix:.* rejected the image/,
    );
  });

  it('rejects podman:NAME:TAG together with --engine docker', async () => {
    const r = await nixoci(['load', '--graph', v1.graphFile, `podman:${name}:x`, '--engine', 'docker']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('conflicts with --engine docker');
  });

  it('names Podman and the address when nothing listens there', async () => {
    const r = await nixoci([
      'load',
      '--graph',
      v1.graphFile,
      `podman:${name}:nowhere`,
      '--host',
      `unix://${cacheDir}/no-podman.sock`,
      '-q',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Podman');
    expect(r.stderr).toContain(`${cacheDir}/no-podman.sock`);
  });
});
