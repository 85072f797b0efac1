import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildExampleClosure } from '../helpers/nix.js';

interface Report {
  manifestDigest: string;
  layers: { action: string }[];
}

// The HTTPS registry of scripts/services: a certificate from a test CA, under a host name that is
// not loopback by its spelling, so nixoci speaks HTTPS to it as to any remote registry.
describe('HTTPS registry', () => {
  it('is trusted with --ca-file, and refused with a hint without it', async () => {
    const env = testEnv();
    const { graphFile } = await buildExampleClosure();
    const ref = `docker://${env.registryTls}/tls/hello:${Date.now()}`;

    const refused = await nixoci(['push', '--graph', graphFile, ref]);
    expect(refused.code).toBe(1);
    expect(refused.stderr, refused.stderr).toMatch(
      /^nixoci: error: cannot reach https:\/\/registry\.nixoci\.test:5443: .*certificate/,
    );
    expect(refused.stderr).toMatch(/hint: pass --ca-file/);

    const pushed = await nixociJson<Report>(['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, ref]);
    expect(pushed.layers.length).toBe(3);
    const raw = execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', ref], { encoding: 'utf8' });
    expect(JSON.parse(raw).layers).toHaveLength(3);
    const digest = execFileSync('skopeo', ['inspect', '--format', '{{.Digest}}', '--tls-verify=false', ref], {
      encoding: 'utf8',
    }).trim();
    expect(digest).toBe(pushed.manifestDigest);

    const missing = await nixoci(['push', '--graph', graphFile, '--ca-file', '/nonexistent/ca.pem', ref]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/ca\.pem/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
  });
});
