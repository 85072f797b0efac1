// Retries, upload-form fallbacks, redirects and abort, through a fault-injecting proxy in front of
// the real registry (127.0.0.1:5000, or :5001 with basic auth).
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/core/digest.js';
import { DigestCache } from '../../src/layer/cache.js';
import { RegistryClient } from '../../src/registry/client.js';
import { parseReference } from '../../src/registry/reference.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
import { testEnv } from '../helpers/env.js';
import { reply, startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { fixture, imageOf, registryGet, uniqueRepo, verifyPushed } from './push-helpers.js';

const env = testEnv();
const fast = { attempts: 4, baseMs: 5, maxMs: 20, maxRetryAfterMs: 2000 };
const isUploadBody = (method: string | undefined, url: string | undefined): boolean =>
  method === 'PATCH' || (method === 'PUT' && (url ?? '').includes('/blobs/uploads/'));

describe('resilience', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
  });
  afterAll(async () => proxy.close());

  const push = async (name: string, opts: { abort?: AbortController; timeoutMs?: number } = {}) => {
    const { closure, app } = await fixture('v1');
    const { image } = imageOf(closure, app);
    const repo = uniqueRepo(name);
    const target = new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`), {
      retry: fast,
      concurrency: 2,
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
    const result = await target.write([image], opts.abort ? { signal: opts.abort.signal } : {});
    return { repo, result };
  };

  it('retries 503 with Retry-After and a dropped connection, reopening the streamed layer', async () => {
    proxy.seen.length = 0;
    let n503 = 0;
    let dropped = 0;
    proxy.fault = (req, res) => {
      if (isUploadBody(req.method, req.url) && n503 < 2) {
        n503++;
        reply(req, res, 503, { 'retry-after': '0' });
        return true;
      }
      if (req.method === 'PATCH' && dropped < 1) {
        dropped++;
        req.once('data', () => req.socket.destroy());
        return true;
      }
      return false;
    };
    const { repo, result } = await push('retry');
    proxy.fault = undefined;
    expect(n503).toBe(2);
    expect(dropped).toBe(1);
    expect(result.images[0]!.layers.every((l) => l.action === 'uploaded')).toBe(true);
    await verifyPushed(env.registry, repo, 't');
    // Every failed session was cancelled.
    expect(proxy.seen.filter((s) => s.method === 'DELETE').length).toBeGreaterThanOrEqual(3);
  });

  it('names every retry, its cause and its wait in the log (--verbose)', async () => {
    let n503 = 0;
    let dropped = 0;
    proxy.fault = (req, res) => {
      if (req.method === 'GET' && req.url?.includes('/manifests/') && n503 < 1) {
        n503++;
        reply(req, res, 503, { 'retry-after': '1' });
        return true;
      }
      if (req.method === 'PATCH' && dropped < 1) {
        dropped++;
        req.once('data', () => req.socket.destroy());
        return true;
      }
      return false;
    };
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('retry-log');
    const lines: string[] = [];
    await new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`), {
      retry: fast,
      concurrency: 2,
    }).write([imageOf(closure, app).image], { log: (l) => lines.push(l) });
    proxy.fault = undefined;
    expect(dropped).toBe(1);
    expect(lines).toContain(`GET /v2/${repo}/manifests/t: answered 503, retrying in 1.0 s (attempt 2 of 4)`);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          new RegExp(
            `^PATCH /v2/${repo}/blobs/uploads/[^?\\s]+: connection failed, retrying in \\d+\\.\\d s \\(attempt 2 of 4\\)$`,
          ),
        ),
      ]),
    );
    await verifyPushed(env.registry, repo, 't');
  });

  it('retries a request the registry never answers, once the timeout has passed', async () => {
    proxy.seen.length = 0;
    let stalled = 0;
    const held: import('node:http').ServerResponse[] = [];
    proxy.fault = (req, res) => {
      // The first two blob HEADs get no answer at all: only the client's timeout ends them.
      if (req.method === 'HEAD' && req.url?.includes('/blobs/') && stalled < 2) {
        stalled++;
        held.push(res);
        return true;
      }
      return false;
    };
    const started = Date.now();
    const { repo } = await push('stalled', { timeoutMs: 500 });
    proxy.fault = undefined;
    for (const r of held) r.destroy();
    expect(stalled).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    await verifyPushed(env.registry, repo, 't');
  });

  it('falls back to a monolithic PUT when chunked PATCH is refused (411)', async () => {
    proxy.seen.length = 0;
    proxy.fault = (req, res) => {
      if (req.method === 'PATCH') {
        reply(req, res, 411);
        return true;
      }
      return false;
    };
    const { repo } = await push('no-chunked');
    proxy.fault = undefined;
    await verifyPushed(env.registry, repo, 't');
    const puts = proxy.seen.filter((s) => s.method === 'PUT' && s.path.includes('/blobs/uploads/'));
    expect(puts.length).toBeGreaterThan(0);
    expect(puts.every((s) => !s.chunked)).toBe(true);
  });

  it('falls back to a streamed PATCH when the monolithic PUT is refused (405)', async () => {
    const { closure, app } = await fixture('v1');
    // Warm digests (cache) make the uploader try the monolithic form first.
    const cacheDir = mkdtempSync(path.join(tmpdir(), 'nixoci-cache-'));
    const warm = imageOf(closure, app, { cache: new DigestCache(cacheDir) });
    await new RegistryTarget(parseReference(`${env.registry}/${uniqueRepo('warm')}:t`)).write(
      [warm.image],
      {},
    );
    // A proxy of its own: blobs pushed through the shared one earlier would be mounted, not uploaded.
    const own = await startFaultProxy(env.registry);
    let refused = 0;
    own.fault = (req, res) => {
      // Layer blobs in one PUT are refused; the empty closing PUT after a PATCH and the config pass.
      if (
        req.method === 'PUT' &&
        (req.url ?? '').includes('/blobs/uploads/') &&
        Number(req.headers['content-length']) > 2000
      ) {
        refused++;
        reply(req, res, 405);
        return true;
      }
      return false;
    };
    const repo = uniqueRepo('no-monolithic');
    const r = await new RegistryTarget(parseReference(`${own.host}/${repo}:t`), { retry: fast }).write(
      [imageOf(closure, app, { cache: new DigestCache(cacheDir) }).image],
      {},
    );
    await own.close();
    expect(r.images[0]!.layers.every((l) => l.action === 'uploaded')).toBe(true);
    expect(refused).toBeGreaterThan(0);
    expect(own.seen.filter((s) => s.method === 'PATCH' && s.chunked).length).toBe(refused);
    await verifyPushed(env.registry, repo, 't');
  });

  it('starts an upload again when a failed closing PUT cost the session (as distribution cancels it)', async () => {
    // The first closing PUT after a PATCH and the first PUT of the config (with its bytes) fail
    // with a 500 once their session is cancelled upstream, as distribution does on any commit
    // error: the retried PUT meets 404 BLOB_UPLOAD_UNKNOWN.
    let afterPatch = 0;
    let config = 0;
    proxy.fault = (req, res) => {
      const url = new URL(req.url ?? '', `http://${env.registry}`);
      if (req.method !== 'PUT' || !url.pathname.includes('/blobs/uploads/')) return false;
      if (Number(req.headers['content-length'] ?? 0) > 64 << 10) return false;
      void buffer(req).then(async (body) => {
        if (
          (body.length === 0 && afterPatch++ === 0) ||
          (body.toString().includes('"rootfs"') && config++ === 0)
        ) {
          const session = new URL(url);
          session.searchParams.delete('digest');
          await fetch(session, { method: 'DELETE' });
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end('{"errors":[{"code":"UNKNOWN"}]}');
          return;
        }
        const up = await fetch(url, {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream' },
          body,
        });
        res.writeHead(up.status, Object.fromEntries(up.headers));
        res.end(Buffer.from(await up.arrayBuffer()));
      });
      return true;
    };
    const { repo, result } = await push('session-lost');
    proxy.fault = undefined;
    expect(afterPatch).toBeGreaterThan(1);
    // The config: its PUT, that PUT again (404), and the PUT of a new session.
    expect(config).toBe(3);
    expect(result.images[0]!.layers.some((l) => l.action === 'uploaded')).toBe(true);
    await verifyPushed(env.registry, repo, 't');
  });

  it('uploads when the registry refuses mounts altogether (405 UNSUPPORTED)', async () => {
    // A proxy of its own: what the shared one pushed would be known holders here.
    const own = await startFaultProxy(env.registry);
    let refused = 0;
    own.fault = (req, res) => {
      if (req.method === 'POST' && (req.url ?? '').includes('mount=')) {
        refused++;
        const body = '{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}';
        reply(req, res, 405, { 'content-type': 'application/json' }, body);
        return true;
      }
      return false;
    };
    const { closure, app } = await fixture('v1');
    // Known digests (a cache) and a first push that made its repository a known holder: the
    // second push tries to mount every layer from it.
    const cacheDir = mkdtempSync(path.join(tmpdir(), 'nixoci-cache-'));
    const pushTo = (repo: string) =>
      new RegistryTarget(parseReference(`${own.host}/${repo}:t`), { retry: fast }).write(
        [imageOf(closure, app, { cache: new DigestCache(cacheDir) }).image],
        {},
      );
    await pushTo(uniqueRepo('mount-source'));
    const repo = uniqueRepo('no-mounts');
    const r = await pushTo(repo).finally(() => own.close());
    expect(refused).toBe(r.images[0]!.layers.length);
    expect(r.images[0]!.layers.every((l) => l.action === 'uploaded')).toBe(true);
    await verifyPushed(env.registry, repo, 't');
  });

  it('says so when the registry opens an upload session without a Location', async () => {
    proxy.fault = (req, res) => {
      if (req.method !== 'POST') return false;
      reply(req, res, 202, { 'docker-upload-uuid': 'x' });
      return true;
    };
    const pushed = push('no-location');
    await expect(pushed).rejects.toMatchObject({
      code: 'REGISTRY',
      message: expect.stringMatching(/start upload: the registry answered 202 without a Location header$/),
    });
    proxy.fault = undefined;
  });

  it('takes a manifest PUT answered 202 Accepted (older Quay, distribution before 2.1) as stored', async () => {
    proxy.fault = (req, res) => {
      if (req.method !== 'PUT' || !(req.url ?? '').includes('/manifests/')) return false;
      // Stored by the registry, answered with 202 instead of its 201.
      void buffer(req).then(async (body) => {
        const up = await fetch(new URL(req.url ?? '', `http://${env.registry}`), {
          method: 'PUT',
          headers: { 'content-type': req.headers['content-type'] ?? '' },
          body,
        });
        await up.arrayBuffer();
        res.writeHead(up.status === 201 ? 202 : up.status, {
          'docker-content-digest': up.headers.get('docker-content-digest') ?? '',
        });
        res.end();
      });
      return true;
    };
    const { repo, result } = await push('manifest-202');
    proxy.fault = undefined;
    await verifyPushed(env.registry, repo, 't');
    const tagged = await registryGet(
      env.registry,
      `/v2/${repo}/manifests/t`,
      'application/vnd.oci.image.manifest.v1+json',
    );
    expect(sha256Digest(Buffer.from(await tagged.arrayBuffer()))).toBe(result.manifestDigest);
  });

  it('takes a streamed PATCH answered 204 No Content (not 202) as accepted', async () => {
    let patches = 0;
    proxy.fault = (req, res) => {
      if (req.method !== 'PATCH') return false;
      patches++;
      void buffer(req).then(async (body) => {
        const up = await fetch(new URL(req.url ?? '', `http://${env.registry}`), {
          method: 'PATCH',
          headers: { 'content-type': 'application/octet-stream' },
          body,
        });
        await up.arrayBuffer();
        res.writeHead(up.status === 202 ? 204 : up.status, { location: up.headers.get('location') ?? '' });
        res.end();
      });
      return true;
    };
    const { repo, result } = await push('patch-204');
    proxy.fault = undefined;
    expect(patches).toBeGreaterThan(0);
    expect(result.images[0]!.layers.some((l) => l.action === 'uploaded')).toBe(true);
    await verifyPushed(env.registry, repo, 't');
  });

  it('re-checks and re-sends blobs once on MANIFEST_BLOB_UNKNOWN', async () => {
    proxy.seen.length = 0;
    let refused = 0;
    proxy.fault = (req, res) => {
      if (req.method === 'PUT' && req.url?.includes('/manifests/') && refused === 0) {
        refused++;
        const body = JSON.stringify({
          errors: [{ code: 'MANIFEST_BLOB_UNKNOWN', message: 'blob unknown to registry' }],
        });
        reply(req, res, 400, { 'content-type': 'application/json' }, body);
        return true;
      }
      return false;
    };
    const { repo } = await push('blob-unknown');
    proxy.fault = undefined;
    expect(refused).toBe(1);
    const puts = proxy.seen
      .map((s, i) => [s, i] as const)
      .filter(([s]) => s.method === 'PUT' && s.path.includes('/manifests/'));
    expect(puts).toHaveLength(2);
    // Between the two manifest PUTs every blob was checked again.
    const between = proxy.seen.slice(puts[0]![1], puts[1]![1]).filter((s) => s.method === 'HEAD');
    expect(between.length).toBeGreaterThanOrEqual(2);
    await verifyPushed(env.registry, repo, 't');
  });

  it('aborts: throws ABORTED and cancels the open upload sessions', async () => {
    proxy.seen.length = 0;
    const abort = new AbortController();
    // Hold PATCH bodies so the abort lands mid-upload.
    proxy.fault = (req) => {
      if (req.method === 'PATCH') {
        req.once('data', () => abort.abort());
        req.resume();
        return true;
      }
      return false;
    };
    await expect(push('abort', { abort })).rejects.toMatchObject({ code: 'ABORTED' });
    proxy.fault = undefined;
    await new Promise((r) => setTimeout(r, 100));
    const patches = proxy.seen.filter((s) => s.method === 'PATCH').length;
    expect(patches).toBeGreaterThan(0);
    expect(proxy.seen.filter((s) => s.method === 'DELETE').length).toBeGreaterThanOrEqual(patches);
  });

  // Last: it leaves this process knowing where the fixture's layers are, so later pushes would
  // mount them instead of uploading.
  it('inner loop: the changed small layer goes as one monolithic PUT, alongside the config', async () => {
    // v1 pushed with a cache; v2 differs in the app path only, which the cache does not know yet.
    const cache = new DigestCache(mkdtempSync(path.join(tmpdir(), 'nixoci-cache-')));
    const v1 = await fixture('v1');
    const v2 = await fixture('v2');
    const repo = uniqueRepo('inner');
    const target = () => new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`), { retry: fast });
    await target().write([imageOf(v1.closure, v1.app, { cache }).image], {});
    proxy.seen.length = 0;
    const { image, stats } = imageOf(v2.closure, v2.app, { cache });
    const result = await target().write([image], {});
    const actions = result.images[0]!.layers.map((l) => l.action);
    expect(actions.filter((a) => a === 'uploaded')).toHaveLength(1);
    expect(actions.filter((a) => a === 'skipped')).toHaveLength(actions.length - 1);
    const appLayer = result.images[0]!.layers.find((l) => l.action === 'uploaded')!;
    // The app was read once (to make it in memory), not again for the upload.
    expect(stats.bytesRead).toBeLessThan(64 << 10);
    const seen = proxy.seen.map((q) => `${q.method} ${q.path.split('?')[0]}`);
    expect(seen.some((q) => q.startsWith('PATCH'))).toBe(false);
    // The config's HEAD goes out before the app layer's upload is done: they run side by side.
    const configHead = seen.findIndex(
      (q) => q.startsWith('HEAD') && q.endsWith(result.images[0]!.configDigest),
    );
    const appHead = seen.findIndex((q) => q.startsWith('HEAD') && q.endsWith(appLayer.digest));
    const lastPut = seen.findLastIndex((q) => q.startsWith('PUT') && q.includes('/blobs/uploads/'));
    expect(configHead).toBeGreaterThanOrEqual(0);
    expect(appHead).toBeGreaterThanOrEqual(0);
    expect(configHead).toBeLessThan(lastPut);
    expect(seen.filter((q) => q.startsWith('PUT') && q.includes('/blobs/uploads/'))).toHaveLength(2);
    expect(seen.at(-1)).toBe(`PUT /v2/${repo}/manifests/t`);
    await verifyPushed(env.registry, repo, 't');
  });
});

describe('redirects', () => {
  it('never forwards registry credentials to another origin', async () => {
    const basicProxy = await startFaultProxy(env.registryBasic);
    const auth = `Basic ${Buffer.from(`${env.registryBasicUser}:${env.registryBasicPassword}`).toString('base64')}`;
    const blob = Buffer.from(`{"hello":"${Math.random()}"}`);
    const digest = sha256Digest(blob);
    // A "blob store" on another origin (localhost vs 127.0.0.1) that records Authorization.
    const got: (string | undefined)[] = [];
    const store = createServer((req, res) => {
      got.push(req.headers.authorization);
      res.end(blob);
    });
    await new Promise<void>((r) => store.listen(0, '127.0.0.1', r));
    const storePort = (store.address() as AddressInfo).port;
    basicProxy.fault = (req, res) => {
      if (req.method === 'GET' && req.url?.includes('/blobs/sha256:') && req.headers.authorization === auth) {
        reply(req, res, 307, { location: `http://localhost:${storePort}/blob` });
        return true;
      }
      return false;
    };
    try {
      const client = new RegistryClient('reg', basicProxy.host, {
        what: 'test',
        creds: { username: env.registryBasicUser, password: env.registryBasicPassword },
        env: {},
      });
      const bytes = await client.getBlob('any/repo', digest);
      expect(bytes.equals(blob)).toBe(true);
      expect(got).toEqual([undefined]);
      expect(basicProxy.seen.some((s) => s.authorization)).toBe(true);
    } finally {
      store.close();
      await basicProxy.close();
    }
  });

  it('says so when a registry redirects in a loop', async () => {
    const loop = await startFaultProxy(env.registry);
    loop.fault = (req, res) => {
      reply(req, res, 302, { location: `http://${loop.host}/v2/loop/blobs/next` });
      return true;
    };
    try {
      const client = new RegistryClient('reg', loop.host, { what: 'test', env: {} });
      await expect(client.getBlob('any/repo', sha256Digest(Buffer.from('x')))).rejects.toMatchObject({
        message: expect.stringMatching(/more than 5 redirects \(the last to http:\/\/127\.0\.0\.1:\d+\)/),
      });
      expect(loop.seen.length).toBe(6);
    } finally {
      await loop.close();
    }
  });
});

it('reports an unreachable registry with a hint', async () => {
  const { closure, app } = await fixture('v1');
  const p = new RegistryTarget(parseReference('127.0.0.1:9/x:t'), { retry: fast }).write(
    [imageOf(closure, app).image],
    {},
  );
  await expect(p).rejects.toMatchObject({
    code: 'REGISTRY_UNREACHABLE',
    message: expect.stringContaining('http://127.0.0.1:9'),
  });
});
