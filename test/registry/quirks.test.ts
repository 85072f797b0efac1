// Registries (and proxies in front of them) that stray from the distribution spec in ways seen in
// the wild, reproduced by a loopback proxy in front of the real registry (127.0.0.1:5000) that
// changes only the quirky answer; and a TLS front that does not set X-Forwarded-Proto, so the real
// registry writes plain-HTTP upload Locations.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DigestCache } from '../../src/layer/cache.js';
import { OciLayoutTarget } from '../../src/registry/oci-layout-target.js';
import { parseReference } from '../../src/registry/reference.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
import { stateDir, testEnv } from '../helpers/env.js';
import { reply, startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { fixture, imageOf, uniqueRepo, verifyPushed } from './push-helpers.js';

const env = testEnv();
const fast = { attempts: 3, baseMs: 5, maxMs: 20, maxRetryAfterMs: 100 };
const work = mkdtempSync(path.join(tmpdir(), 'hx-quirks-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('a registry with quirks, through a proxy', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
  });
  afterAll(async () => proxy.close());

  const target = (repo: string): RegistryTarget =>
    new RegistryTarget(parseReference(`${proxy.host}/${repo}:t`), { retry: fast, concurrency: 2 });

  it('HEAD on blobs answered 405: every blob is uploaded instead, and the push succeeds', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('hx-quirks-head405');
    let refused = 0;
    proxy.fault = (req, res) => {
      if (req.method === 'HEAD' && req.url?.includes('/blobs/')) {
        refused++;
        reply(req, res, 405, { allow: 'GET' });
        return true;
      }
      return false;
    };
    try {
      const result = await target(repo).write([imageOf(closure, app).image], {});
      expect(result.images[0]!.layers.every((l) => l.action === 'uploaded' || l.action === 'mounted')).toBe(
        true,
      );
    } finally {
      proxy.fault = undefined;
    }
    expect(refused).toBeGreaterThan(0);
    await verifyPushed(env.registry, repo, 't');
  });

  for (const [status, code] of [
    [415, 'MANIFEST_INVALID'],
    [400, 'MANIFEST_INVALID'],
  ] as const) {
    it(`an OCI manifest refused with ${status} ${code}: the hint says the registry takes no OCI manifests`, async () => {
      const { closure, app } = await fixture('v1');
      proxy.fault = (req, res) => {
        if (
          req.method === 'PUT' &&
          req.url?.includes('/manifests/') &&
          req.headers['content-type'] === 'application/vnd.oci.image.manifest.v1+json'
        ) {
          const body = { errors: [{ code, message: 'manifest invalid', detail: {} }] };
          reply(req, res, status, { 'content-type': 'application/json' }, JSON.stringify(body));
          return true;
        }
        return false;
      };
      try {
        const p = target(uniqueRepo('hx-quirks-nooci')).write([imageOf(closure, app).image], {});
        await expect(p).rejects.toMatchObject({
          code: 'REGISTRY',
          message: expect.stringContaining(`put manifest t: ${status} MANIFEST_INVALID`),
          hint: expect.stringMatching(
            /does not accept OCI image manifests .*no option for Docker media types.*skopeo copy --format v2s2/,
          ),
        });
      } finally {
        proxy.fault = undefined;
      }
    });
  }

  it('the first layer whose upload fails stops the others: no upload starts after it', async () => {
    const { closure, app } = await fixture('v1');
    // Digests known up front (from a build into a layout), so every layer goes as one PUT ?digest=
    // and the proxy can tell whose upload it is.
    const cache = new DigestCache(path.join(work, 'cache'));
    await new OciLayoutTarget(path.join(work, 'layout')).write([imageOf(closure, app, { cache }).image], {});
    const { image } = imageOf(closure, app, { cache });
    const layerDigests = image.layers.map((l) => l.known!.digest as string);
    expect(layerDigests.length).toBeGreaterThanOrEqual(4);
    const uploadOf = (url: string | undefined): string | undefined =>
      url?.includes('/blobs/uploads/')
        ? layerDigests.find((d) => url.includes(`digest=${encodeURIComponent(d)}`))
        : undefined;
    let victim: string | undefined;
    /** Index into proxy.seen of the victim's last (failed) upload. */
    let failedAt = -1;
    // A proxy of its own: a host no earlier push in this process went to, so no layer is known to
    // be held by another repository there (each would be mounted, not uploaded).
    const proxy = await startFaultProxy(env.registry);
    proxy.fault = (req, res, seen) => {
      const d = uploadOf(req.url);
      if (req.method === 'PUT' && d !== undefined && (victim ?? (victim = d)) === d) {
        failedAt = seen.length - 1;
        reply(req, res, 500, { 'content-type': 'application/json' }, '{"errors":[{"code":"UNKNOWN"}]}');
        return true;
      }
      return false;
    };
    const stopping = new RegistryTarget(parseReference(`${proxy.host}/${uniqueRepo('hx-quirks-stop')}:t`), {
      retry: fast,
      // One at a time, so that no other upload is legitimately under way when the last attempt at
      // the victim fails: every later one would have been started after the failure.
      concurrency: 1,
    });
    try {
      await expect(stopping.write([image], {})).rejects.toMatchObject({
        code: 'REGISTRY',
        message: expect.stringContaining('500'),
      });
      // A request of our own through the proxy, on a new connection: whatever the push had sent
      // before it rejected (the old code's next layer, started as the victim failed) has reached
      // the proxy by the time this is answered.
      await (await fetch(`http://${proxy.host}/v2/`)).arrayBuffer();
    } finally {
      await proxy.close();
    }
    // Every attempt at the victim was refused (retries included); after the last, no other layer's
    // upload was sent (the old code went on with every queued one).
    expect(failedAt).toBeGreaterThanOrEqual(0);
    expect(proxy.seen.filter((s) => s.method === 'PUT' && uploadOf(s.path) === victim)).toHaveLength(
      fast.attempts,
    );
    // Nothing about another layer (its HEAD, its upload) was asked after that.
    const others = layerDigests.filter((d) => d !== victim);
    const later = proxy.seen
      .slice(failedAt + 1)
      .filter((s) => others.some((d) => s.path.includes(d) || s.path.includes(encodeURIComponent(d))));
    expect(later).toEqual([]);
  });
});

describe('an HTTPS registry behind a TLS front that does not set X-Forwarded-Proto', () => {
  let front: Server;
  let host: string;
  beforeAll(async () => {
    // TLS ends here; the real registry gets plain HTTP with the Host header as sent, and so writes
    // its upload Locations as http://registry.nixoci.test:PORT/…
    const [uHost, uPort] = env.registry.split(':');
    front = createServer(
      {
        cert: readFileSync(path.join(stateDir, 'auth', 'tls.crt')),
        key: readFileSync(path.join(stateDir, 'auth', 'tls.key')),
      },
      (req, res) => {
        const up = request(
          { host: uHost, port: Number(uPort), method: req.method, path: req.url, headers: req.headers },
          (ur) => {
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            ur.pipe(res);
          },
        );
        up.on('error', () => res.destroy());
        req.pipe(up);
      },
    );
    await new Promise<void>((resolve, reject) => {
      front.once('error', reject);
      front.listen(0, '127.0.0.1', resolve);
    });
    host = `registry.nixoci.test:${(front.address() as AddressInfo).port}`;
  });
  afterAll(
    () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        front.closeAllConnections();
      }),
  );

  it('uploads to the http:// Location of its own host over HTTPS, and the push succeeds', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('hx-quirks-tlsfront');
    await new RegistryTarget(parseReference(`${host}/${repo}:t`), {
      caFile: env.tlsCaFile,
      retry: fast,
    }).write([imageOf(closure, app).image], {});
    await verifyPushed(env.registry, repo, 't');
  });
});
