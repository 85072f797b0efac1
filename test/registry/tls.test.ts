import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:https';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
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

    // --insecure-registry for it (docker's way to skip verification): plain HTTP is answered with
    // "HTTPS only", and the hint must not send the user back to --insecure-registry
    const insecure = await nixoci([
      'push',
      '--graph',
      graphFile,
      '--insecure-registry',
      env.registryTls,
      ref,
    ]);
    expect(insecure.code).toBe(1);
    expect(insecure.stderr).toMatch(
      /^nixoci: error: cannot reach https:\/\/registry\.nixoci\.test:5443: .*certificate/,
    );
    expect(insecure.stderr).toContain(
      `hint: ${env.registryTls} serves HTTPS only: pass --ca-file with the CA that signed its certificate (nixoci does not skip certificate checks, --insecure-registry included)\n`,
    );

    const missing = await nixoci(['push', '--graph', graphFile, '--ca-file', '/nonexistent/ca.pem', ref]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/ca\.pem/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);

    // A file that is no PEM CA (here a DER certificate) is refused as such, not dropped in silence.
    const der = join(mkdtempSync(join(tmpdir(), 'nixoci-der-')), 'ca.der');
    execFileSync('openssl', ['x509', '-in', env.tlsCaFile, '-outform', 'der', '-out', der]);
    const notPem = await nixoci(['push', '--graph', graphFile, '--ca-file', der, ref]);
    expect(notPem.code).toBe(2);
    expect(notPem.stderr).toContain(
      `nixoci: error: nixoci push: --ca-file ${der} holds no PEM certificate\n`,
    );
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

  it('speaks HTTPS to a loopback registry that serves only TLS, as docker and crane do', async () => {
    // A TLS front for the plain registry on 127.0.0.1, with a certificate from the test CA for that
    // address. Loopback means plain HTTP by default; its "HTTP request to an HTTPS server" answer
    // switches the run to HTTPS.
    const env = testEnv();
    const { graphFile } = await buildExampleClosure();
    const auth = dirname(env.tlsCaFile);
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-tls-'));
    const key = join(dir, 'ip.key');
    execFileSync(
      'openssl',
      [
        'req',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-keyout',
        key,
        '-out',
        join(dir, 'ip.csr'),
      ],
      { stdio: 'ignore' },
    );
    writeFileSync(join(dir, 'ip.ext'), 'subjectAltName=IP:127.0.0.1\n');
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        join(dir, 'ip.csr'),
        '-CA',
        env.tlsCaFile,
        '-CAkey',
        join(auth, 'ca.key'),
        '-CAcreateserial',
        '-CAserial',
        join(dir, 'ca.srl'),
        '-days',
        '2',
        '-extfile',
        join(dir, 'ip.ext'),
        '-out',
        join(dir, 'ip.crt'),
      ],
      { stdio: 'ignore' },
    );
    const [upHost, upPort] = env.registry.split(':');
    let overTls = 0;
    const tls = createServer(
      { cert: readFileSync(join(dir, 'ip.crt')), key: readFileSync(key) },
      (req, res) => {
        overTls++;
        const up = httpRequest(
          { host: upHost, port: Number(upPort), method: req.method, path: req.url, headers: req.headers },
          (ur) => {
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            ur.pipe(res);
          },
        );
        up.on('error', () => res.destroy());
        req.pipe(up);
      },
    );
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    const tlsPort = (tls.address() as AddressInfo).port;
    // In front of it, what Go's net/http (the registry's server) does with a connection that does
    // not start with a TLS handshake record (0x16): a 400 saying so (Node's TLS server would just
    // close it). A handshake is forwarded to the TLS server as it is.
    const server = createNetServer((socket) => {
      socket.once('data', (first: Buffer) => {
        if (first[0] !== 0x16) {
          socket.end('HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n');
          return;
        }
        const inner = connect(tlsPort, '127.0.0.1', () => {
          inner.write(first);
          socket.pipe(inner);
          inner.pipe(socket);
        });
        inner.on('error', () => socket.destroy());
        socket.on('error', () => inner.destroy());
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const ref = `docker://127.0.0.1:${(server.address() as AddressInfo).port}/tls/loopback:${Date.now()}`;
    try {
      const pushed = await nixociJson<Report>([
        'push',
        '--graph',
        graphFile,
        '--ca-file',
        env.tlsCaFile,
        ref,
      ]);
      expect(pushed.layers.length).toBe(3);
      expect(overTls).toBeGreaterThan(3);
      const inspected = await nixoci(['inspect', '--json', '--ca-file', env.tlsCaFile, ref]);
      expect(inspected.code, inspected.stderr).toBe(0);
      expect(JSON.parse(inspected.stdout).image.manifestDigest).toBe(pushed.manifestDigest);
      // Without the CA: the certificate is named, not a 400 from the registry.
      const untrusted = await nixoci(['push', '--quiet', '--graph', graphFile, ref]);
      expect(untrusted.code).toBe(1);
      expect(untrusted.stderr).toMatch(
        /^nixoci: error: cannot reach https:\/\/127\.0\.0\.1:\d+: .*certificate/,
      );
      // loopback: plain HTTP was tried first, so --insecure-registry would change nothing
      expect(untrusted.stderr).toMatch(/hint: 127\.0\.0\.1:\d+ serves HTTPS only: pass --ca-file/);
    } finally {
      server.close();
      tls.close();
      tls.closeAllConnections();
    }
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
