import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { RegistryClient } from '../../src/registry/client.js';
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

    // The CA in NODE_EXTRA_CA_CERTS works as with any Node program (bin/nixoci.js passes it on
    // to the connections nixoci makes, src/core/tls-trust.ts).
    const viaEnv = await nixociJson<Report>(['push', '--graph', graphFile, ref], {
      env: { NODE_EXTRA_CA_CERTS: env.tlsCaFile },
    });
    expect(viaEnv.manifestDigest).toBe(pushed.manifestDigest);
    expect(viaEnv.layers.map((l) => l.action)).toEqual(['skipped', 'skipped', 'skipped']);

    const missing = await nixoci(['push', '--graph', graphFile, '--ca-file', '/nonexistent/ca.pem', ref]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/ca\.pem/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);

    // A file that is no PEM CA (here a DER certificate) is refused as such, not dropped in silence.
    const der = join(mkdtempSync(join(tmpdir(), 'nixoci-der-')), 'ca.der');
    execFileSync('openssl', ['x509', '-in', env.tlsCaFile, '-outform', 'der', '-out', der]);
    const notPem = await nixoci(['push', '--graph', graphFile, '--ca-file', der, ref]);
    expect(notPem.code).toBe(2);
    expect(notPem.stderr).toContain(`nixoci: error: --ca-file ${der} holds no PEM certificate\n`);
  });

  it('speaks plain HTTP to a non-loopback name only with --insecure-registry', async () => {
    // The plain-HTTP registry, by a name that is not loopback by its spelling (/etc/hosts maps it
    // to 127.0.0.1): HTTPS by default, which it does not speak.
    const env = testEnv();
    const { graphFile } = await buildExampleClosure();
    const port = env.registry.split(':')[1]!;
    const host = `registry.nixoci.test:${port}`;
    const ref = `docker://${host}/insecure/hello:${Date.now()}`;
    const refused = await nixoci(['push', '--quiet', '--graph', graphFile, ref]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `nixoci: error: cannot reach https://${host}: the server does not speak TLS (plain HTTP?)\n` +
        `hint: pass --insecure-registry ${host} if it serves plain HTTP\n`,
    );
    // as a URL or in another case, as users copy it from a registry's address
    for (const insecure of [host, 'registry.nixoci.test', `http://Registry.Nixoci.Test:${port}/`]) {
      const pushed = await nixociJson<Report>([
        'push',
        '--graph',
        graphFile,
        '--insecure-registry',
        insecure,
        ref,
      ]);
      expect(pushed.layers.length).toBe(3);
    }
    const raw = execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', ref], { encoding: 'utf8' });
    expect(JSON.parse(raw).layers).toHaveLength(3);
    const withPath = await nixoci(['push', '--graph', graphFile, '--insecure-registry', `${host}/v2/`, ref]);
    expect(withPath.code).toBe(2);
    expect(withPath.stderr).toMatch(/--insecure-registry .*\/v2\/: give a registry HOST or HOST:PORT/);
  });

  it('reads NODE_EXTRA_CA_CERTS for HTTPS connections only', async () => {
    const env = testEnv();
    const { graphFile } = await buildExampleClosure();
    const extra = { NODE_EXTRA_CA_CERTS: '/nonexistent/extra.pem' };
    // Plain HTTP to the loopback registry: the file is never opened (no warning), so a push pays
    // nothing for a CA bundle it does not use.
    const plain = await nixoci(
      ['push', '--quiet', '--graph', graphFile, `docker://${env.registry}/tls/plain:${Date.now()}`],
      { env: extra },
    );
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toBe('');
    // HTTPS: read then, and a file that cannot be read is ignored with a warning, as Node does.
    const secure = await nixoci(
      [
        'push',
        '--quiet',
        '--graph',
        graphFile,
        '--ca-file',
        env.tlsCaFile,
        `docker://${env.registryTls}/tls/hello:${Date.now()}`,
      ],
      { env: extra },
    );
    expect(secure.code, secure.stderr).toBe(0);
    expect(secure.stderr).toMatch(/^nixoci: warning: ignoring extra certs from \/nonexistent\/extra\.pem/);
  });

  it('fetches tokens from an HTTPS realm trusted through the same --ca-file', async () => {
    const env = testEnv();
    // A token realm with a certificate from the test CA (scripts/services made it for this host).
    const auth = dirname(env.tlsCaFile);
    const seen: string[] = [];
    const server = createServer(
      { cert: readFileSync(join(auth, 'tls.crt')), key: readFileSync(join(auth, 'tls.key')) },
      (req, res) => {
        seen.push(req.url ?? '');
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ token: 'realm-token', expires_in: 300 }));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const realm = `https://registry.nixoci.test:${(server.address() as AddressInfo).port}/token`;
    const challenge = `Bearer realm="${realm}",service="svc",scope="repository:tls/hello:pull"`;
    try {
      const trusted = new RegistryClient(env.registryTls, env.registryTls, {
        what: 'test',
        caFile: env.tlsCaFile,
        env: {},
      });
      expect(await trusted.auth.onUnauthorized(challenge, false)).toBe(true);
      expect(await trusted.auth.header()).toBe('Bearer realm-token');
      expect(seen).toEqual(['/token?service=svc&scope=repository%3Atls%2Fhello%3Apull']);

      // Without --ca-file the realm's certificate is not trusted either.
      const untrusted = new RegistryClient(env.registryTls, env.registryTls, { what: 'test', env: {} });
      await untrusted.auth.onUnauthorized(challenge, false);
      await expect(untrusted.auth.header()).rejects.toThrow(/certificate|self.signed|issuer/i);
      expect(seen).toHaveLength(1);
    } finally {
      server.close();
    }
  });
});
