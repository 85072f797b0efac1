// DaemonTarget against the real dockerd started by scripts/services (private socket): load a Nix
// closure, run it, reload after an app change (only the app layer travels), and the full retry when
// the engine no longer has the layers it was assumed to have.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Image } from '../../src/image/image.js';
import type { TargetResult } from '../../src/image/target.js';
import { DaemonTarget } from '../../src/registry/docker-daemon-target.js';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure } from '../helpers/nix.js';
import { buildSaltedClosure, closureOfGraph, imageOf, tempDir } from './daemon-helpers.js';

const run = randomBytes(4).toString('hex');
const name = `nixoci-daemon-test-${run}`;
const env = (): NodeJS.ProcessEnv => ({ DOCKER_HOST: testEnv().dockerHost });

async function inspectLayers(ref: string): Promise<string[]> {
  const r = await docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', ref]);
  return JSON.parse(r.stdout) as string[];
}

const actions = (r: TargetResult): string[] => r.images[0]!.layers.map((l) => l.action);
const bytesSent = (r: TargetResult): number => r.images[0]!.layers.reduce((n, l) => n + l.bytesSent, 0);

describe('DaemonTarget (docker engine)', () => {
  const cacheDir = tempDir('nixoci-daemon-cache-');
  let v1: Image;
  let first: TargetResult;

  beforeAll(async () => {
    const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
    v1 = imageOf(await closureOfGraph(fx.graphFile), cacheDir, [`${fx.app}/bin/app`]);
  });

  afterAll(async () => {
    const r = await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'], { check: false });
    await dockerRmi(...r.stdout.split('\n').filter((l) => l.includes(run)));
  });

  it('loads a Nix closure that runs, with the diffIDs nixoci computed', async () => {
    first = await new DaemonTarget({ engine: 'docker', name, tags: ['v1', 'extra'], env: env() }).write(
      [v1],
      {},
    );
    expect(actions(first).every((a) => a === 'sent')).toBe(true);
    const layers = first.images[0]!.layers;
    for (const [i, l] of layers.entries()) expect(l.bytesSent).toBe(v1.layers[i]!.tarSize());
    expect(await dockerRunOutput(`${name}:v1`)).toContain('fixture app daemon-v1');
    expect(await inspectLayers(`${name}:v1`)).toEqual(layers.map((l) => l.diffId));
    // Every name points at the same image, whose ID is the config digest.
    const id = (await docker(['image', 'inspect', '--format', '{{.Id}}', `${name}:extra`])).stdout.trim();
    expect(id).toBe(first.images[0]!.configDigest);
  });

  it('sends only the changed app layer on the next load', async () => {
    const fx = await buildFixtureClosure({ tag: 'daemon-v2' });
    const v2 = imageOf(await closureOfGraph(fx.graphFile), cacheDir, [`${fx.app}/bin/app`]);
    const n = v2.layers.length;
    expect(v2.layers[n - 1]!.planned.storePaths).toEqual([fx.app]);
    const r = await new DaemonTarget({ engine: 'docker', name, tags: ['v2'], env: env() }).write([v2], {});
    expect(actions(r)).toEqual([...Array<string>(n - 1).fill('omitted'), 'sent']);
    expect(bytesSent(r)).toBe(v2.layers[n - 1]!.tarSize());
    expect(r.notes.join('\n')).toMatch(/omitted/);
    expect(await dockerRunOutput(`${name}:v2`)).toContain('fixture app daemon-v2');
    expect(await inspectLayers(`${name}:v2`)).toEqual(r.images[0]!.layers.map((l) => l.diffId));
    // The shared layers are the very ones of v1.
    expect(r.images[0]!.layers.slice(0, n - 1).map((l) => l.diffId)).toEqual(
      first.images[0]!.layers.slice(0, n - 1).map((l) => l.diffId),
    );
  });

  it('reuses layers of --cache-from images under another name', async () => {
    const fx = await buildFixtureClosure({ tag: 'daemon-v3' });
    const v3 = imageOf(await closureOfGraph(fx.graphFile), cacheDir, [`${fx.app}/bin/app`]);
    const r = await new DaemonTarget({
      engine: 'docker',
      name: `${name}-other`,
      cacheFrom: [`${name}:v1`],
      env: env(),
    }).write([v3], {});
    expect(actions(r).filter((a) => a === 'sent')).toHaveLength(1);
    expect(await dockerRunOutput(`${name}-other:latest`)).toContain('fixture app daemon-v3');
  });

  it('retries with every layer when the engine lost the layers it was assumed to have', async () => {
    const salt = `${run}-${Date.now()}`;
    const saltedName = `${name}-salted`;
    const cache = tempDir('nixoci-daemon-cache-');
    const a = await buildSaltedClosure(salt, 'salted one');
    const imgA = imageOf(a.closure, cache, [`${a.app}/bin/app`]);
    await new DaemonTarget({ engine: 'docker', name: saltedName, tags: ['a'], env: env() }).write([imgA], {});
    expect(await dockerRunOutput(`${saltedName}:a`)).toContain('salted one');

    const b = await buildSaltedClosure(salt, 'salted two');
    const imgB = imageOf(b.closure, cache, [`${b.app}/bin/app`]);
    let removed = false;
    const target = new DaemonTarget({ engine: 'docker', name: saltedName, tags: ['b'], env: env() });
    const r = await target.write([imgB], {
      // Between the engine's answer (it has image a) and the load, image a and its layers go away:
      // the archive without them is refused, and the target must send everything.
      log: (line) => {
        if (!removed && /leading layers? shared/.test(line)) {
          removed = true;
          execFileSync(testEnv().dockerCli, [
            '-H',
            testEnv().dockerHost,
            'rmi',
            '--force',
            `${saltedName}:a`,
          ]);
        }
      },
    });
    expect(removed).toBe(true);
    expect(r.notes.join('\n')).toMatch(/retried with every layer/);
    expect(actions(r).every((x) => x === 'sent')).toBe(true);
    expect(bytesSent(r)).toBe(imgB.layers.reduce((n, l) => n + l.tarSize(), 0));
    expect(await dockerRunOutput(`${saltedName}:b`)).toContain('salted two');
    expect(await dockerRunOutput(`${saltedName}:b`)).toContain(salt);
  });
});
