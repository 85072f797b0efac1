// A registry on a port that browsers block (WHATWG fetch's "bad ports": 6000, 6665-6669, 10080,
// ...). undici's fetch refuses those ports; registries do listen there, and skopeo and docker talk
// to them, so nixoci must too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildExampleClosure } from '../helpers/nix.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { run } from './push-helpers.js';

const BAD_PORTS = [10080, 6666, 6667, 6668, 6669, 6665, 6697, 6000, 6566];

async function proxyOnBadPort(upstream: string): Promise<FaultProxy> {
  for (const port of BAD_PORTS) {
    try {
      return await startFaultProxy(upstream, port);
    } catch {
      // taken: try the next one
    }
  }
  throw new Error(`none of the ports ${BAD_PORTS.join(', ')} is free`);
}

describe('a registry on a port fetch blocks', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await proxyOnBadPort(testEnv().registry);
  });
  afterAll(async () => proxy.close());

  it('is pushed to and read from like any other', async () => {
    const { graphFile } = await buildExampleClosure();
    const ref = `docker://${proxy.host}/ports/hello:${Date.now()}`;
    const pushed = await nixociJson<{ manifestDigest: string; layers: { action: string }[] }>([
      'push',
      '--graph',
      graphFile,
      ref,
    ]);
    expect(pushed.layers.length).toBeGreaterThan(0);
    expect(proxy.seen.some((r) => r.method === 'PUT' && r.path.includes('/manifests/'))).toBe(true);

    // Not execFileSync: the proxy answering skopeo runs in this process.
    const digest = (
      await run('skopeo', ['inspect', '--format', '{{.Digest}}', '--tls-verify=false', ref])
    ).trim();
    expect(digest).toBe(pushed.manifestDigest);

    const inspected = await nixoci(['inspect', ref, '--json']);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(JSON.parse(inspected.stdout).image.manifestDigest).toBe(pushed.manifestDigest);
  });
});
