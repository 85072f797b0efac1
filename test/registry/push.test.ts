// Pushes real Nix closures to the real distribution registry (scripts/services, 127.0.0.1:5000) and
// reads them back with skopeo, plain HTTP and the real Docker engine.
import { getEventListeners } from 'node:events';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDigest } from '../../src/core/digest.js';
import { DigestCache } from '../../src/layer/cache.js';
import { parseReference } from '../../src/registry/reference.js';
import { RegistryClient } from '../../src/registry/client.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
import type { TargetResult } from '../../src/image/target.js';
import { testEnv } from '../helpers/env.js';
import { docker, dockerRmi } from '../helpers/docker.js';
import { fixture, imageOf, registryGet, run, uniqueRepo, verifyPushed } from './push-helpers.js';

const env = testEnv();
const reg = env.registry;
const actions = (r: TargetResult): string[] => r.images.flatMap((i) => i.layers.map((l) => l.action));
const sent = (r: TargetResult): number =>
  r.images.flatMap((i) => i.layers).reduce((n, l) => n + l.bytesSent, 0);

describe('RegistryTarget against docker-registry', () => {
  const repo = uniqueRepo('app');
  const cacheDir = mkdtempSync(path.join(tmpdir(), 'nixoci-cache-'));
  let first: TargetResult;

  beforeAll(async () => {
    await fixture('v1');
    await fixture('v2');
  });

  it('pushes a closure that skopeo and plain HTTP read back, digests and sizes verified', async () => {
    const { closure, app } = await fixture('v1');
    const { image, stats } = imageOf(closure, app, { cache: new DigestCache(cacheDir) });
    first = await new RegistryTarget(parseReference(`docker://${reg}/${repo}:v1`), {
      tags: ['latest'],
    }).write([image], {});
    expect(actions(first).every((a) => a === 'uploaded')).toBe(true);
    expect(stats.bytesRead).toBeGreaterThan(0);
    expect(sent(first)).toBe(first.images[0]!.layers.reduce((n, l) => n + l.size, 0));

    const { manifest } = await verifyPushed(reg, repo, 'v1');
    expect(manifest.layers.map((l) => l.digest)).toEqual(first.images[0]!.layers.map((l) => l.digest));
    const latest = await registryGet(
      reg,
      `/v2/${repo}/manifests/latest`,
      'application/vnd.oci.image.manifest.v1+json',
    );
    expect(latest.headers.get('docker-content-digest')).toBe(first.manifestDigest);

    const inspect = JSON.parse(
      await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg}/${repo}:v1`]),
    ) as {
      Digest: string;
      Layers: string[];
      Architecture: string;
    };
    expect(inspect.Digest).toBe(first.manifestDigest);
    expect(inspect.Layers).toEqual(manifest.layers.map((l) => l.digest));
    expect(inspect.Architecture).toBe('amd64');
    const out = mkdtempSync(path.join(tmpdir(), 'nixoci-skopeo-'));
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      `docker://${reg}/${repo}:v1`,
      `oci:${out}/layout:v1`,
    ]);
    expect(existsSync(path.join(out, 'layout', 'index.json'))).toBe(true);
  });

  it('pushes nothing and reads nothing again when unchanged, even with an empty cache (stateless)', async () => {
    const { closure, app } = await fixture('v1');
    const warm = imageOf(closure, app, { cache: new DigestCache(cacheDir) });
    const again = await new RegistryTarget(parseReference(`${reg}/${repo}:v1`)).write([warm.image], {});
    expect(sent(again)).toBe(0);
    expect(warm.stats.bytesRead).toBe(0);
    expect(again.manifestDigest).toBe(first.manifestDigest);

    const cold = imageOf(closure, app, { cache: new DigestCache(null) });
    const stateless = await new RegistryTarget(parseReference(`${reg}/${repo}:v1`)).write([cold.image], {});
    expect(actions(stateless).every((a) => a === 'reused')).toBe(true);
    expect(cold.stats.bytesRead).toBe(0);
    expect(sent(stateless)).toBe(0);
    expect(stateless.manifestDigest).toBe(first.manifestDigest);
  });

  it('uploads exactly the changed layer after one store path changed, with an empty cache', async () => {
    const { closure, app } = await fixture('v2');
    const cold = imageOf(closure, app, { cache: new DigestCache(null) });
    const r = await new RegistryTarget(parseReference(`${reg}/${repo}:v1`)).write([cold.image], {});
    const layers = r.images[0]!.layers;
    expect(layers.filter((l) => l.action === 'uploaded').map((l) => l.storePaths)).toEqual([[app]]);
    expect(layers.filter((l) => l.action !== 'uploaded').every((l) => l.action === 'reused')).toBe(true);
    // Only the app path (a few hundred bytes of script) was read from the store.
    expect(cold.stats.bytesRead).toBeGreaterThan(0);
    expect(cold.stats.bytesRead).toBeLessThan(10_000);
    await verifyPushed(reg, repo, 'v1');
  });

  it('mounts every layer into a second repository (no layer bytes sent)', async () => {
    const { closure, app } = await fixture('v1');
    const { image, stats } = imageOf(closure, app, { cache: new DigestCache(cacheDir) });
    const repo2 = uniqueRepo('mounted');
    const r = await new RegistryTarget(parseReference(`${reg}/${repo2}:v1`), { mountFrom: [repo] }).write(
      [image],
      {},
    );
    expect(actions(r).every((a) => a === 'mounted')).toBe(true);
    expect(sent(r)).toBe(0);
    expect(stats.bytesRead).toBe(0);
    await verifyPushed(reg, repo2, 'v1');

    // Stateless: digests from --cache-from's annotations, blobs mounted from its repository.
    const cold = imageOf(closure, app, { cache: new DigestCache(null) });
    const repo3 = uniqueRepo('cachefrom');
    const r3 = await new RegistryTarget(parseReference(`${reg}/${repo3}:x`), {
      cacheFrom: [parseReference(`${reg}/${repo2}:v1`)],
    }).write([cold.image], {});
    expect(actions(r3).every((a) => a === 'mounted')).toBe(true);
    expect(cold.stats.bytesRead).toBe(0);
    await verifyPushed(reg, repo3, 'x');
  });

  it('pushes a multi-arch index that skopeo resolves per architecture', async () => {
    const a = await fixture('v1');
    const b = await fixture('v2');
    const amd = imageOf(a.closure, a.app, { cache: new DigestCache(cacheDir), arch: 'amd64' });
    const arm = imageOf(b.closure, b.app, { cache: new DigestCache(cacheDir), arch: 'arm64' });
    const repoM = uniqueRepo('multi');
    const r = await new RegistryTarget(parseReference(`${reg}/${repoM}:multi`)).write(
      [amd.image, arm.image],
      {},
    );
    expect(r.images.map((i) => i.architecture)).toEqual(['amd64', 'arm64']);
    const raw = JSON.parse(
      await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg}/${repoM}:multi`]),
    ) as {
      mediaType: string;
      manifests: { digest: string; platform: { architecture: string } }[];
    };
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests.map((m) => [m.platform.architecture, m.digest])).toEqual([
      ['amd64', r.images[0]!.manifestDigest],
      ['arm64', r.images[1]!.manifestDigest],
    ]);
    for (const img of r.images) await verifyPushed(reg, repoM, img.manifestDigest);
    const out = mkdtempSync(path.join(tmpdir(), 'nixoci-skopeo-'));
    await run('skopeo', [
      'copy',
      '--override-arch',
      'arm64',
      '--src-tls-verify=false',
      `docker://${reg}/${repoM}:multi`,
      `dir:${out}/arm`,
    ]);
    const cfgDigest = r.images[1]!.configDigest.slice('sha256:'.length);
    expect(existsSync(path.join(out, 'arm', cfgDigest))).toBe(true);
    // Layers shared by both architectures were pushed once.
    const shared = r.images[1]!.layers.filter((l) => r.images[0]!.layers.some((x) => x.digest === l.digest));
    expect(shared.length).toBeGreaterThan(0);
    // ... and reported once: the second image's copy is `skipped`, 0 bytes, as in an OCI layout
    for (const l of shared) {
      const first = r.images[0]!.layers.find((x) => x.digest === l.digest)!;
      // (the first may be mounted: earlier tests pushed these layers to another repository)
      expect(['uploaded', 'mounted']).toContain(first.action);
      expect([l.action, l.bytesSent]).toEqual(['skipped', 0]);
    }

    // Unchanged: the index at the tag names both manifests, which were just read: nothing is PUT.
    const lines: string[] = [];
    const again = await new RegistryTarget(parseReference(`${reg}/${repoM}:multi`)).write(
      [amd.image, arm.image],
      { log: (l) => lines.push(l) },
    );
    expect(again.manifestDigest).toBe(r.manifestDigest);
    expect(lines.filter((l) => /^(PUT|POST|PATCH) /.test(l))).toEqual([]);
  });

  it("leaves no listener on the run's signal after each upload session it opens", async () => {
    // The whole run shares one AbortSignal; an upload's grace period hooked it and never let go,
    // so a push of more than a few layers printed MaxListenersExceededWarning.
    const client = new RegistryClient(reg, reg, { what: 'test', env: {} });
    const signal = new AbortController().signal;
    const listening = (): number => getEventListeners(signal, 'abort').length;
    const r = uniqueRepo('listeners');
    for (let i = 0; i < 12; i++) {
      await client.cancelUpload(await client.startUpload(r, signal));
      await client.mountBlob(r, parseDigest(`sha256:${'0'.repeat(64)}`), 'nowhere/else', signal);
    }
    expect(listening()).toBe(0);
  });

  it('is pulled and run by the real Docker engine', async () => {
    const name = `${reg}/${repo}:v1`;
    await dockerRmi(name);
    await docker(['pull', name]);
    const { stdout } = await docker(['run', '--rm', '--network', 'none', name]);
    expect(stdout).toContain('fixture app v2');
    expect(stdout).toContain('fixture-data run: ok');
    await dockerRmi(name);
  });
});
