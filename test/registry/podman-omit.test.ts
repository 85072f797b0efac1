// Loads into the real Podman (scripts/services, .state/podman.sock) that leave out the layer blobs
// its storage holds: an OCI archive with only what it lacks (docs/daemon.md). `podman run` is
// refused by this sandbox (rlimits), so the image's app is run by chroot into `podman image mount`.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadContainerdStore } from '../../src/registry/containerd-load.js';
import { EngineClient } from '../../src/registry/engine/client.js';
import { parseHost } from '../../src/registry/engine/discover.js';
import { nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { podman, podmanRmi } from '../helpers/podman.js';
import { closureOfGraph, imageOf, tempDir } from './daemon-helpers.js';

const run = promisify(execFile);
const id = randomBytes(4).toString('hex');
const repo = `hx-podman-${id}`;

interface Report {
  layers: { action: string; bytesSent: number; size: number; diffId: string; digest: string }[];
  targets: {
    notes: string[] | null;
    imageId?: string;
    tags?: string[];
    images: { configDigest: string }[];
  }[];
}

/** The app of the image under `ref`, run by chroot into the image's mounted root filesystem. */
async function runApp(ref: string, app: string): Promise<string> {
  const root = (await podman(['image', 'mount', ref])).stdout.trim();
  try {
    expect(path.isAbsolute(root)).toBe(true);
    return (await run('chroot', [root, `${app}/bin/app`], { encoding: 'utf8', timeout: 60_000 })).stdout;
  } finally {
    await podman(['image', 'unmount', ref]);
  }
}

async function layersOf(ref: string): Promise<{ id: string; layers: string[]; tags: string[] }> {
  const [img] = JSON.parse((await podman(['image', 'inspect', ref], { remote: true })).stdout) as {
    Id: string;
    RootFS: { Layers: string[] };
    RepoTags: string[] | null;
  }[];
  return { id: img!.Id, layers: img!.RootFS.Layers, tags: img!.RepoTags ?? [] };
}

describe('nixoci load into Podman, without the blobs it holds', () => {
  const host = testEnv().podmanHost;
  const cacheDir = tempDir('hx-podman-cache-');
  const refs: string[] = [];
  let v1: FixtureClosure;
  let v2: FixtureClosure;
  let v3: FixtureClosure;
  const load = (c: FixtureClosure, tag: string, more: string[] = []): Promise<Report> => {
    refs.push(`${repo}:${tag}`, ...more.filter((_, i) => more[i - 1] === '--tag').map((t) => `${repo}:${t}`));
    return nixociJson<Report>([
      'load',
      '--graph',
      c.graphFile,
      '--entrypoint',
      `${c.app}/bin/app`,
      `podman:${repo}:${tag}`,
      '--host',
      host,
      '--cache-dir',
      cacheDir,
      ...more,
    ]);
  };

  beforeAll(async () => {
    const build = (t: string): Promise<FixtureClosure> =>
      buildFixtureClosure({ tag: `hx-podman-${id}-${t}` });
    [v1, v2, v3] = await Promise.all([build('a'), build('b'), build('c')]);
  });

  afterAll(async () => {
    await podmanRmi(...refs);
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it('sends only a changed layer, names every tag once, and sends nothing for an unchanged image', async () => {
    const a = await load(v1, 'one');
    expect(a.layers.every((l) => l.action === 'sent' && l.bytesSent === l.size)).toBe(true);

    // The same closure but its app, under a new tag of the repository: only the app layer travels.
    const b = await load(v2, 'two', ['--tag', 'also']);
    expect(b.layers.map((l) => l.action)).toEqual(['omitted', 'omitted', 'omitted', 'omitted', 'sent']);
    expect(b.layers.slice(0, 4).every((l) => l.bytesSent === 0)).toBe(true);
    expect(b.layers[4]!.bytesSent).toBe(b.layers[4]!.size);
    expect((b.targets[0]!.notes ?? []).join('\n')).toContain('4 layer blobs omitted');
    const two = await layersOf(`${repo}:two`);
    expect(two.layers).toEqual(b.layers.map((l) => l.diffId));
    expect(`sha256:${two.id.replace(/^sha256:/, '')}`).toBe(b.targets[0]!.images[0]!.configDigest);
    // one name from the archive, one from Podman's own tag call: no docker.io/ duplicates
    expect([...two.tags].sort()).toEqual([`localhost/${repo}:also`, `localhost/${repo}:two`]);
    expect(await runApp(`${repo}:two`, v2.app)).toContain(`fixture app hx-podman-${id}-b`);
    // the first image is untouched
    expect((await layersOf(`${repo}:one`)).layers).toEqual(a.layers.map((l) => l.diffId));

    const again = await load(v2, 'two', ['--tag', 'also']);
    expect(again.layers.every((l) => l.action === 'omitted' && l.bytesSent === 0)).toBe(true);
    expect((again.targets[0]!.notes ?? []).join('\n')).toContain('unchanged');
  });

  it('retries with every blob when a blob taken as held is not there', async () => {
    // Digests of v3's layers into the cache (an OCI layout build), then an image of them.
    const layout = path.join(cacheDir, 'layout');
    await nixociJson(['build', '--graph', v3.graphFile, '--to', `oci:${layout}`, '--cache-dir', cacheDir]);
    const image = imageOf(await closureOfGraph(v3.graphFile), cacheDir, [`${v3.app}/bin/app`]);
    const app = image.layers.at(-1)!.known!.digest;
    const client = new EngineClient(parseHost(host, 'test'), 'podman');
    await client.negotiate();
    refs.push(`${repo}:retry`);
    const notes: string[] = [];
    // Podman never saw v3's app layer: left out, it refuses the archive, and the retry sends it.
    const r = await loadContainerdStore(
      {
        client,
        engineId: undefined,
        images: [image],
        name: repo,
        tags: ['retry'],
        ids: new Map(),
        cacheDir: null,
        scheme: 'podman',
        notes,
        podman: { held: new Set([app]) },
      },
      {},
    );
    expect(notes.join('\n')).toContain('retried with every blob');
    expect(r.images[0]!.layers.every((l) => l.action === 'sent' && l.bytesSent > 0)).toBe(true);
    expect(await runApp(`${repo}:retry`, v3.app)).toContain(`fixture app hx-podman-${id}-c`);
  });
});
