// On a registry 20–150 ms away, the number of round trips made one after the other decides how long
// a push takes. A proxy in front of the real registry holds every answer back a little and gives
// each request its depth: 1 + the deepest request answered before it was sent. Requests that do not
// depend on each other must share a depth (counted, not timed).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '../../src/registry/reference.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
import { testEnv } from '../helpers/env.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { forward } from '../robustness/robust-helpers.js';
import { fixture, imageOf, uniqueRepo, verifyPushed } from './push-helpers.js';

const env = testEnv();
/** Long enough that requests sent together are all sent before the first answer comes back. */
const HOLD_MS = 40;

interface Exchange {
  readonly method: string;
  readonly path: string;
  readonly depth: number;
  status?: number;
}

describe('push: round trips to a remote registry', () => {
  let proxy: FaultProxy;
  let log: Exchange[] = [];
  let answered: Exchange[] = [];
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
    proxy.fault = (req, res) => {
      const x: Exchange = {
        method: req.method ?? '',
        path: req.url ?? '',
        depth: 1 + Math.max(0, ...answered.map((a) => a.depth)),
      };
      log.push(x);
      forward(env.registry, req, res, {
        delayMs: HOLD_MS,
        onAnswer: (status) => {
          x.status = status;
          answered.push(x);
        },
      });
      return true;
    };
  });
  afterAll(async () => proxy.close());

  const reset = (): void => {
    log = [];
    answered = [];
  };
  const depthOf = (method: string, path: RegExp): number[] =>
    log.filter((x) => x.method === method && path.test(x.path)).map((x) => x.depth);

  it('reads the tag and every --cache-from at once', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('rt-cache');
    const sources = [uniqueRepo('rt-src'), uniqueRepo('rt-src')];
    await new RegistryTarget(parseReference(`${proxy.host}/${sources[0]}:v1`)).write(
      [imageOf(closure, app).image],
      {},
    );
    reset();
    const target = new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`), {
      cacheFrom: sources.map((s) => parseReference(`${proxy.host}/${s}:v1`)),
    });
    const result = await target.write([imageOf(closure, app).image], {});
    // The first source's layers are mounted from it; the second one does not exist.
    expect(result.images[0]!.layers.filter((l) => l.action === 'uploaded')).toEqual([]);
    const reads = [repo, ...sources].map((r) => depthOf('GET', new RegExp(`^/v2/${r}/manifests/`)));
    expect(reads).toEqual([[1], [1], [1]]);
    await verifyPushed(env.registry, repo, 't');
  });

  it('puts the extra --tag manifests at once, after the tag', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('rt-tags');
    const target = new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`), { tags: ['a', 'b', 'c'] });
    await target.write([imageOf(closure, app).image], {});
    reset();
    // Unchanged: the tag's manifest is not sent again, the extra tags are (they may point elsewhere).
    await target.write([imageOf(closure, app).image], {});
    const [t] = depthOf('PUT', new RegExp(`^/v2/${repo}/manifests/t$`));
    expect(t).toBeUndefined();
    const extra = ['a', 'b', 'c'].map((tag) => depthOf('PUT', new RegExp(`^/v2/${repo}/manifests/${tag}$`)));
    expect(extra).toEqual([[2], [2], [2]]);
    for (const tag of ['t', 'a', 'b', 'c']) await verifyPushed(env.registry, repo, tag);
  });

  /** Depth of the request that put each blob in place (closing PUT, or mount), by its digest. */
  const confirmed = (): Map<string, number> =>
    new Map(
      log
        .filter((x) => x.path.includes('/blobs/uploads/'))
        .flatMap((x): [string, number][] => {
          const q = new URL(x.path, 'http://r').searchParams;
          const digest = x.method === 'PUT' ? q.get('digest') : x.method === 'POST' ? q.get('mount') : null;
          return digest ? [[digest, x.depth]] : [];
        }),
    );

  it('sends the config once every layer digest is known, not after the last layer is confirmed', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('rt-cold');
    reset();
    // A cold push: no digest is known before the layers are made (the big ones streamed).
    const { image } = imageOf(closure, app);
    await new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`), { concurrency: 8 }).write(
      [image],
      {},
    );
    const { manifest } = await verifyPushed(env.registry, repo, 't');
    const puts = confirmed();
    const layerPuts = manifest.layers.map((l) => puts.get(l.digest));
    expect(layerPuts.every((d) => d !== undefined)).toBe(true);
    const lastLayer = Math.max(...(layerPuts as number[]));
    // The config's HEAD went out before the registry had confirmed every layer…
    const [configHead] = depthOf('HEAD', new RegExp(`/blobs/${manifest.config.digest}$`));
    expect(configHead).toBeLessThanOrEqual(lastLayer);
    // …and the manifest right after the last blob (layer or config) was confirmed, not before.
    const lastBlob = Math.max(lastLayer, puts.get(manifest.config.digest)!);
    expect(depthOf('PUT', new RegExp(`^/v2/${repo}/manifests/t$`))).toEqual([lastBlob + 1]);
  });

  it('puts the manifests of several platforms at once, the index after them', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('rt-multi');
    reset();
    const images = (['amd64', 'arm64'] as const).map((arch) => imageOf(closure, app, { arch }).image);
    const target = new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`));
    await target.write(images, {});
    const byDigest = depthOf('PUT', new RegExp(`^/v2/${repo}/manifests/sha256:`));
    expect(byDigest).toHaveLength(2);
    expect(byDigest[0]).toBe(byDigest[1]);
    const [index] = depthOf('PUT', new RegExp(`^/v2/${repo}/manifests/t$`));
    expect(index).toBe(byDigest[0]! + 1);
  });
});
