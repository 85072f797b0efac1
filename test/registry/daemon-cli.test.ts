// `nixoci load` and `--to docker-daemon:` run in-process (src/cli/main.ts) against the test engine.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { tempDir } from './daemon-helpers.js';

interface JsonLayer {
  action: string;
  bytesSent: number;
  diffId: string;
}

const run = randomBytes(4).toString('hex');

async function cli(args: string[], isTTY = false): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const saved = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = testEnv().dockerHost;
  try {
    const code = await main(args, { out: (s) => void (out += s), err: (s) => void (err += s), isTTY });
    return { code, out, err };
  } finally {
    if (saved === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = saved;
  }
}

describe('nixoci load', () => {
  const cacheDir = tempDir('nixoci-daemon-cli-cache-');
  let v1: FixtureClosure;
  let v2: FixtureClosure;

  /** Images named after the store path, removed at the end. */
  const derived: string[] = [];
  beforeAll(async () => {
    v1 = await buildFixtureClosure({ tag: 'daemon-cli-v1' });
    v2 = await buildFixtureClosure({ tag: 'daemon-cli-v2' });
  });

  afterAll(async () => {
    const r = await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'], { check: false });
    await dockerRmi(...r.stdout.split('\n').filter((l) => l.includes(run) || derived.includes(l)));
  });

  it('loads with --json reports, then sends only the changed layer', async () => {
    const name = `nixoci-cli-${run}`;
    const common = ['--cache-dir', cacheDir, '--json'];
    const a = await cli([
      'load',
      '--graph',
      v1.graphFile,
      `${name}:one`,
      '--tag',
      'also',
      ...common,
      '--entrypoint',
      `${v1.app}/bin/app`,
    ]);
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    const ra = JSON.parse(a.out) as {
      command: string;
      layers: JsonLayer[];
      targets: { target: string; tags?: string[] }[];
    };
    expect(ra.command).toBe('load');
    expect(ra.targets[0]!.target).toBe(`docker-daemon:${name}:one`);
    expect(ra.targets[0]!.tags).toEqual([`${name}:one`, `${name}:also`]);
    expect(ra.layers.every((l) => l.action === 'sent' && l.bytesSent > 0)).toBe(true);
    expect(await dockerRunOutput(`${name}:also`)).toContain('fixture app daemon-cli-v1');

    const b = await cli([
      'load',
      '--graph',
      v2.graphFile,
      `${name}:two`,
      ...common,
      '--entrypoint',
      `${v2.app}/bin/app`,
    ]);
    expect(b.code).toBe(0);
    const rb = JSON.parse(b.out) as { layers: JsonLayer[]; targets: { notes: string[] }[] };
    // The customisation layer (if any) and the app change; everything before them is omitted.
    const sent = rb.layers.filter((l) => l.action === 'sent');
    expect(rb.layers.filter((l) => l.action === 'omitted').length).toBeGreaterThanOrEqual(
      rb.layers.length - 2,
    );
    expect(rb.layers.filter((l) => l.action === 'omitted').every((l) => l.bytesSent === 0)).toBe(true);
    const omitted = rb.layers.filter((l) => l.action === 'omitted').length;
    expect(rb.targets[0]!.notes).toContainEqual(
      expect.stringMatching(new RegExp(`^${omitted} layers omitted: the engine has them \\(from `)),
    );
    expect(sent.length).toBeGreaterThanOrEqual(1);
    expect(await dockerRunOutput(`${name}:two`)).toContain('fixture app daemon-cli-v2');
  });

  it('names the image after the top-level store path, tagged with a hash of the whole image', async () => {
    const load = async (extra: string[]): Promise<string> => {
      const r = await cli(['load', '--graph', v1.graphFile, '--cache-dir', cacheDir, '--json', ...extra]);
      expect(r.code, r.err).toBe(0);
      const target = (JSON.parse(r.out) as { targets: { target: string }[] }).targets[0]!.target;
      const ref = target.slice('docker-daemon:'.length);
      derived.push(ref);
      return ref;
    };
    const a = await load(['--entrypoint', `${v1.app}/bin/app`]);
    expect(a).toMatch(/^fixture-app:[0-9a-f]{32}$/);
    expect(await dockerRunOutput(a)).toContain('fixture app daemon-cli-v1');
    // another image of the same top-level path gets its own tag; the same image the same tag
    const b = await load(['--entrypoint', `${v1.app}/bin/app`, '--env', 'X=1']);
    expect(b).not.toBe(a);
    expect(await load(['--entrypoint', `${v1.app}/bin/app`])).toBe(a);
    expect(await dockerRunOutput(a)).toContain('fixture app daemon-cli-v1');
  });

  it('adds --tag to the default tag instead of replacing it', async () => {
    const name = `nixoci-cli-${run}-tags`;
    const extra = `extra-${run}`;
    const load = (args: string[]) =>
      cli(['load', '--graph', v1.graphFile, '--cache-dir', cacheDir, '-q', ...args, '--tag', extra]);
    expect((await load([name])).code).toBe(0);
    const unnamed = await load(['--json']);
    expect(unnamed.code).toBe(0);
    const own = (JSON.parse(unnamed.out) as { targets: { target: string }[] }).targets[0]!.target.slice(
      'docker-daemon:'.length,
    );
    derived.push(own);
    const ls = await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}']);
    const have = ls.stdout.split('\n');
    for (const t of [`${name}:latest`, `${name}:${extra}`, own, `fixture-app:${extra}`])
      expect(have, t).toContain(t);
    await dockerRmi(`${name}:latest`, `${name}:${extra}`, `fixture-app:${extra}`);
  });

  it("says without --json that of an index only the engine's platform was loaded, and that a reload sent nothing", async () => {
    const ref = `nixoci-cli-${run}-multi:v1`;
    const args = ['load', '--graph', v1.graphFile, '--cache-dir', cacheDir, '--arch', 'amd64,arm64', ref];
    const first = await cli(args);
    expect(first.code, first.err).toBe(0);
    const lines = first.err.trimEnd().split('\n');
    // the image ID, as `docker images` shows it (not the manifest digest, which the engine never shows)
    const id = (await docker(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim();
    expect(lines[0]).toMatch(new RegExp(`^docker-daemon:${ref} \\(amd64\\): image ID ${id} — `));
    expect(first.err).not.toContain('run it with');
    expect(lines).toContain(
      `docker-daemon:${ref}: loaded linux/amd64 only: an engine holds one platform per tag`,
    );
    const again = await cli(args);
    expect(again.code, again.err).toBe(0);
    expect(again.err).toContain(
      `docker-daemon:${ref}: unchanged: every tag already names this image in the engine; nothing sent\n`,
    );
    // on a terminal: how to run it (--verbose: no progress bar drawn)
    const tty = await cli([...args, '--verbose', '-H', testEnv().dockerHost], true);
    expect(tty.code, tty.err).toBe(0);
    expect(tty.err).toContain(`docker-daemon:${ref} (amd64): image ID ${id} — `);
    expect(tty.err).toContain(
      `docker-daemon:${ref}: run it with: docker -H ${testEnv().dockerHost} run --rm ${ref}\n`,
    );
    const json = await cli([...args, '--json']);
    expect(json.code, json.err).toBe(0);
    const report = JSON.parse(json.out) as {
      targets: { imageId?: string; images: { configDigest: string }[] }[];
    };
    expect(report.targets[0]!.imageId).toBe(id);
  });

  it('finds the layers of other tags of a repository named with docker.io/library/', async () => {
    // The engine shows (and its reference filter matches) docker.io/library/app as app: the new
    // tag must still find the one loaded before and send nothing but the config.
    const name = `docker.io/library/nixoci-cli-familiar-${run}`;
    const common = ['--graph', v1.graphFile, '--cache-dir', cacheDir, '--json'];
    const a = await cli(['load', ...common, `${name}:one`]);
    expect(a.code, a.err).toBe(0);
    const b = await cli(['load', ...common, `${name}:two`]);
    expect(b.code, b.err).toBe(0);
    const rb = JSON.parse(b.out) as { layers: JsonLayer[]; targets: { notes: string[] }[] };
    expect(rb.layers.map((l) => l.action)).toEqual(rb.layers.map(() => 'omitted'));
    const ls = await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}']);
    expect(ls.stdout.split('\n')).toContain(`nixoci-cli-familiar-${run}:two`);
  });

  it('accepts --to docker-daemon: in build, and rejects bad names', async () => {
    const name = `nixoci-cli-build-${run}`;
    const r = await cli([
      'build',
      '--graph',
      v1.graphFile,
      '--cache-dir',
      cacheDir,
      '--to',
      `docker-daemon:${name}:b`,
      '-q',
    ]);
    expect(r.code).toBe(0);
    expect((await docker(['image', 'inspect', `${name}:b`])).code).toBe(0);
    const bad = await cli(['load', '--graph', v1.graphFile, 'Not_Valid:x']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/not a repository name/);
    const digest = `sha256:${'0'.repeat(64)}`;
    const pinned = await cli(['load', '--graph', v1.graphFile, `app@${digest}`]);
    expect(pinned.code).toBe(2);
    expect(pinned.err).toContain(
      `docker-daemon:app@${digest}: an image is loaded under NAME[:TAG], not a digest`,
    );
  });

  it('refuses a --cache-from that is no image reference before loading, and takes image IDs and names', async () => {
    const name = `nixoci-cli-cachefrom-${run}`;
    const load = (cacheFrom: string, tag: string, ...more: string[]) =>
      cli([
        'load',
        '--graph',
        v1.graphFile,
        '--cache-dir',
        cacheDir,
        '--cache-from',
        cacheFrom,
        `${name}:${tag}`,
        ...more,
      ]);
    for (const bad of ['Upper:v1', 'two words', `${name}:a@sha256:abc`]) {
      const r = await load(bad, 'x');
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--cache-from ${JSON.stringify(bad)} is not an image reference`);
    }
    const ls = await docker(['image', 'ls', '--no-trunc', '--format', '{{.ID}}', `${name}:x`]);
    expect(ls.stdout.trim()).toBe('');

    const a = await cli(['load', '--graph', v1.graphFile, '--cache-dir', cacheDir, `${name}:a`, '-q']);
    expect(a.code).toBe(0);
    const id = (await docker(['image', 'inspect', '--format', '{{.Id}}', `${name}:a`])).stdout.trim();
    for (const good of [id, id.slice('sha256:'.length, 'sha256:'.length + 12), `${name}:a`]) {
      const r = await load(good, 'b', '-q');
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
    }
  });

  it('fails clearly when the engine is not there', async () => {
    const r = await cli([
      'load',
      '--graph',
      v1.graphFile,
      '--cache-dir',
      cacheDir,
      '--host',
      'unix:///nonexistent/docker.sock',
      'x:y',
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot connect to the Docker engine at unix:\/\/\/nonexistent\/docker.sock/);
    expect(r.err).toMatch(/^hint: /m);
  });
});
