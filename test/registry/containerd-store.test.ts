// Loads into Docker 26 with the containerd image store (scripts/services runs it beside the 20.10
// engine): an OCI archive without the layer blobs the engine holds from nixoci's earlier loads.
// `nixoci` runs in-process (src/cli/main.ts); each test has its own cache directory, so what
// nixoci recorded about the engine comes from this test only.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { stateDir } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { tempDir } from './daemon-helpers.js';

const run = promisify(execFile);
const id = randomBytes(4).toString('hex');
const repo = `hx-ctrd-${id}`;

/** The engine's coordinates; empty when scripts/setup could not fetch it (the tests then skip). */
function engine(): { host: string; cli: string } {
  try {
    const env = JSON.parse(readFileSync(join(stateDir, 'env.json'), 'utf8')) as Record<string, string>;
    return {
      host: env.NIXOCI_TEST_DOCKER_CONTAINERD_HOST ?? '',
      cli: env.NIXOCI_TEST_DOCKER_CONTAINERD_CLI ?? '',
    };
  } catch {
    return { host: '', cli: '' };
  }
}
const { host, cli } = engine();
if (!host)
  console.warn(
    'skipping containerd-store tests: no NIXOCI_TEST_DOCKER_CONTAINERD_HOST in .state/env.json (scripts/setup fetches trixie dockerd; scripts/services start runs it)',
  );

async function docker(args: string[]): Promise<string> {
  const r = await run(cli, ['-H', host, ...args], { encoding: 'utf8', timeout: 120_000 });
  return r.stdout;
}

interface Report {
  layers: { action: string; bytesSent: number; digest: string }[];
  targets: {
    notes: string[];
    manifestDigest: string;
    imageId?: string;
    tags?: string[];
    images: { architecture: string; manifestDigest: string }[];
  }[];
}

async function nixoci(args: string[]): Promise<Report> {
  let out = '';
  let err = '';
  const saved = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = host;
  try {
    const code = await main([...args, '--json'], {
      out: (s) => void (out += s),
      err: (s) => void (err += s),
      isTTY: false,
    });
    expect(err).toBe('');
    expect(code).toBe(0);
    return JSON.parse(out) as Report;
  } finally {
    if (saved === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = saved;
  }
}

const sent = (r: Report): number => r.layers.reduce((n, l) => n + l.bytesSent, 0);

describe.skipIf(!host)('load into the containerd image store', () => {
  const dirs: string[] = [];
  const cacheDir = (): string => {
    const d = tempDir('hx-ctrd-cache-');
    dirs.push(d);
    return d;
  };
  let v1: FixtureClosure;
  let v2: FixtureClosure;
  let v3: FixtureClosure;
  const load = (c: FixtureClosure, ref: string, cache: string, more: string[] = []): Promise<Report> =>
    nixoci([
      'load',
      '--graph',
      c.graphFile,
      '--entrypoint',
      `${c.app}/bin/app`,
      ref,
      '--cache-dir',
      cache,
      ...more,
    ]);

  beforeAll(async () => {
    const build = (t: string): Promise<FixtureClosure> => buildFixtureClosure({ tag: `hx-ctrd-${id}-${t}` });
    [v1, v2, v3] = await Promise.all([build('a'), build('b'), build('c')]);
  });

  afterAll(async () => {
    const refs = (await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'])).split('\n');
    const ours = refs.filter((r) => r.startsWith(`${repo}:`));
    if (ours.length > 0) await run(cli, ['-H', host, 'rmi', '--force', ...ours]).catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('loads an OCI archive that runs; an unchanged re-load sends nothing; a change sends its layer only', async () => {
    const cache = cacheDir();
    const a = await load(v1, `${repo}:one`, cache, ['--tag', 'also']);
    expect(a.layers.every((l) => l.action === 'sent' && l.bytesSent > 0)).toBe(true);
    // the containerd store names an image by its manifest digest
    expect(a.targets[0]!.imageId).toBe(a.targets[0]!.manifestDigest);
    expect(a.targets[0]!.tags).toEqual([`${repo}:one`, `${repo}:also`]);
    expect(await docker(['run', '--rm', '--network', 'none', `${repo}:also`])).toContain(
      `fixture app hx-ctrd-${id}-a`,
    );
    const inspected = JSON.parse(await docker(['image', 'inspect', `${repo}:one`])) as {
      Id: string;
      RootFS: { Layers: string[] };
    }[];
    expect(inspected[0]!.Id).toBe(a.targets[0]!.manifestDigest);
    expect(inspected[0]!.RootFS.Layers).toEqual(a.layers.map((l) => l.digest));

    const again = await load(v1, `${repo}:one`, cache, ['--tag', 'also']);
    expect(sent(again)).toBe(0);
    expect(again.layers.every((l) => l.action === 'omitted')).toBe(true);
    expect(again.targets[0]!.notes.join('\n')).toContain('unchanged');

    // The same closure but its app: only the app layer's blob travels, under a new tag too.
    const b = await load(v2, `${repo}:two`, cache);
    expect(b.layers.map((l) => l.action)).toEqual(['omitted', 'omitted', 'omitted', 'omitted', 'sent']);
    expect(b.layers[4]!.bytesSent).toBeGreaterThan(0);
    expect(b.targets[0]!.notes.join('\n')).toContain('4 layer blobs omitted');
    expect(await docker(['run', '--rm', '--network', 'none', `${repo}:two`])).toContain(
      `fixture app hx-ctrd-${id}-b`,
    );

    // inspect reads what `docker save` of this engine writes
    let out = '';
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = host;
    try {
      const code = await main(['inspect', `docker-daemon:${repo}:two`, '--json'], {
        out: (s) => void (out += s),
        err: () => undefined,
        isTTY: false,
      });
      expect(code).toBe(0);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
    expect(out).toContain(b.layers[4]!.digest);
  });

  it('retries with every blob when a recorded blob is gone', async () => {
    const cache = cacheDir();
    const a = await load(v1, `${repo}:retry-a`, cache);
    // A record that claims the engine holds v3's app layer (it never saw it) under an image it has:
    // nixoci leaves the blob out, the engine refuses, the retry sends every blob.
    const planned = await nixoci([
      'build',
      '--graph',
      v3.graphFile,
      '--entrypoint',
      `${v3.app}/bin/app`,
      '--to',
      `oci:${join(cache, 'layout')}`,
      '--cache-dir',
      cache,
    ]);
    const file = join(cache, 'engine-loads.json');
    const records = JSON.parse(readFileSync(file, 'utf8')) as {
      engines: Record<string, { id: string; blobs: string[] }[]>;
    };
    const [engineId] = Object.keys(records.engines);
    records.engines[engineId!]![0]!.blobs.push(planned.layers[4]!.digest);
    writeFileSync(file, JSON.stringify(records));
    expect(records.engines[engineId!]![0]!.id).toBe(a.targets[0]!.manifestDigest);

    const c = await load(v3, `${repo}:retry-c`, cache);
    expect(c.targets[0]!.notes.join('\n')).toContain('retried with every blob');
    expect(c.layers.every((l) => l.action === 'sent' && l.bytesSent > 0)).toBe(true);
    expect(await docker(['run', '--rm', '--network', 'none', `${repo}:retry-c`])).toContain(
      `fixture app hx-ctrd-${id}-c`,
    );
  });

  it('loads several --arch as one image with both platforms', async () => {
    const cache = cacheDir();
    const r = await load(v1, `${repo}:multi`, cache, ['--arch', 'amd64,arm64']);
    expect(r.targets[0]!.notes.join('\n')).toContain('linux/amd64, linux/arm64 as one image');
    const inspected = JSON.parse(await docker(['image', 'inspect', `${repo}:multi`])) as { Id: string }[];
    // the image is the index over both platforms' manifests (its digest, not either manifest's)
    expect(r.targets[0]!.images.map((i) => i.architecture)).toEqual(['amd64', 'arm64']);
    expect(r.targets[0]!.images.map((i) => i.manifestDigest)).not.toContain(r.targets[0]!.manifestDigest);
    expect(inspected[0]!.Id).toBe(r.targets[0]!.manifestDigest);
    expect(await docker(['run', '--rm', '--network', 'none', `${repo}:multi`])).toContain(
      `fixture app hx-ctrd-${id}-a`,
    );
  });
});
