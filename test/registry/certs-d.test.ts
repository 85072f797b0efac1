// certs.d directories, --cert-dir and client certificates (mutual TLS), against docker-registry
// processes this file starts itself (one per case, on ports the OS picks) with certificates it
// makes with openssl. Nothing is read from /etc or the real $HOME: NIXOCI_CERTS_D, HOME,
// XDG_CACHE_HOME and DOCKER_CONFIG point into a fresh temp dir for every run of nixoci.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

/** A name no resolver knows: only the test's own proxy below maps it (to 127.0.0.1). */
const PROXIED_NAME = 'hx-certs-registry.test';

let top: string;
let app: FixtureClosure;
/** ca.crt (signs the servers and the good client), server.*, client.cert/.key, and a stranger pair. */
let pki: string;

const run = (cmd: string, args: string[]): Promise<{ code: number; out: string }> =>
  new Promise((resolve) =>
    execFile(cmd, args, { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }),
    ),
  );

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

/** A key and a certificate for `cn` signed by `ca`, with the given X.509 extensions. */
function issue(dir: string, name: string, cn: string, ext: string, ca: string): void {
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${cn}`,
    '-keyout',
    path.join(dir, `${name}.key`),
    '-out',
    path.join(dir, `${name}.csr`),
  );
  writeFileSync(path.join(dir, `${name}.ext`), `${ext}\n`);
  openssl(
    'x509',
    '-req',
    '-in',
    path.join(dir, `${name}.csr`),
    '-CA',
    path.join(dir, `${ca}.crt`),
    '-CAkey',
    path.join(dir, `${ca}.key`),
    '-CAcreateserial',
    '-days',
    '2',
    '-sha256',
    '-extfile',
    path.join(dir, `${name}.ext`),
    '-out',
    path.join(dir, `${name}.cert`),
  );
}

beforeAll(async () => {
  top = mkdtempSync(path.join(tmpdir(), 'hx-certs-'));
  pki = path.join(top, 'pki');
  mkdirSync(pki);
  for (const ca of ['ca', 'stranger-ca'])
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-sha256',
      '-days',
      '2',
      '-subj',
      `/CN=hx-certs ${ca}`,
      '-keyout',
      path.join(pki, `${ca}.key`),
      '-out',
      path.join(pki, `${ca}.crt`),
    );
  issue(pki, 'server', '127.0.0.1', `subjectAltName=IP:127.0.0.1,DNS:${PROXIED_NAME}`, 'ca');
  issue(pki, 'client', 'hx-certs client', 'extendedKeyUsage=clientAuth', 'ca');
  issue(pki, 'stranger', 'hx-certs stranger', 'extendedKeyUsage=clientAuth', 'stranger-ca');
  app = await buildFixtureClosure({ tag: 'v1' });
}, 300_000);

afterAll(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

/** A free loopback port, as the OS hands them out. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Registry {
  readonly port: number;
  readonly storage: string;
  close(): void;
}

/**
 * A fresh docker-registry serving HTTPS with the test CA's certificate (and asking for client
 * certificates signed by it with `mtls`). It counts as started only once curl, trusting only this
 * run's fresh CA, gets `{}` from /v2/ (with the client pair under mTLS) from a process that is
 * still running: another server on a reused port cannot pass for it.
 */
async function startRegistry(mtls: boolean): Promise<Registry> {
  const dir = mkdtempSync(path.join(top, 'registry-'));
  for (let i = 0; ; i++) {
    const port = await freePort();
    const config = path.join(dir, 'config.yml');
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'storage')}`,
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '  secret: hx-certs-test',
        '  tls:',
        `    certificate: ${path.join(pki, 'server.cert')}`,
        `    key: ${path.join(pki, 'server.key')}`,
        ...(mtls ? ['    clientcas:', `      - ${path.join(pki, 'ca.crt')}`] : []),
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
    const pair = mtls ? ['--cert', path.join(pki, 'client.cert'), '--key', path.join(pki, 'client.key')] : [];
    // until it answers or ends, with a bound far above what a busy machine needs to start it
    for (const end = Date.now() + 90_000; Date.now() < end && child.exitCode === null;) {
      const r = await run('curl', [
        '-sS',
        '--max-time',
        '5',
        '--cacert',
        path.join(pki, 'ca.crt'),
        ...pair,
        `https://127.0.0.1:${port}/v2/`,
      ]);
      if (r.code === 0 && r.out.trim() === '{}' && child.exitCode === null)
        return { port, storage: path.join(dir, 'storage'), close: () => child.kill() };
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill();
    if (i >= 4) throw new Error(`docker-registry did not start (last port ${port})`);
  }
}

/** A fresh HOME, cache, docker config and certs.d root for one run of nixoci. */
function freshEnv(extra: NodeJS.ProcessEnv = {}): { env: NodeJS.ProcessEnv; certsD: string } {
  const dir = mkdtempSync(path.join(top, 'run-'));
  const certsD = path.join(dir, 'certs.d');
  mkdirSync(certsD);
  const env: NodeJS.ProcessEnv = {
    HOME: path.join(dir, 'home'),
    XDG_CACHE_HOME: path.join(dir, 'cache'),
    DOCKER_CONFIG: path.join(dir, 'docker'),
    REGISTRY_AUTH_FILE: path.join(dir, 'auth.json'),
    NIXOCI_CERTS_D: certsD,
    HTTPS_PROXY: '',
    https_proxy: '',
    HTTP_PROXY: '',
    http_proxy: '',
    NO_PROXY: '',
    no_proxy: '',
    NODE_EXTRA_CA_CERTS: '',
    ...extra,
  };
  return { env, certsD };
}

/** A certs.d directory `root/HOST` holding the given files of the test PKI (under their new names). */
function certDir(root: string, host: string, files: Record<string, string>): string {
  const dir = path.join(root, host);
  mkdirSync(dir, { recursive: true });
  for (const [name, from] of Object.entries(files)) cpSync(path.join(pki, from), path.join(dir, name));
  return dir;
}

const push = (ref: string, env: NodeJS.ProcessEnv, more: string[] = []) =>
  nixoci(['push', '--graph', app.graphFile, `docker://${ref}`, '--json', ...more], { env });

/** The digest skopeo reads back, trusting (and authenticating with) `dir` as its --cert-dir. */
async function skopeoDigest(ref: string, dir: string): Promise<string> {
  const r = await run('skopeo', ['inspect', '--cert-dir', dir, `docker://${ref}`]);
  expect(r.code, r.out).toBe(0);
  return (JSON.parse(r.out) as { Digest: string }).Digest;
}

/** The one error line, after checking the run failed with exit 1 and printed no stack trace. */
function failure(r: { code: number; stdout: string; stderr: string }): string {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^nixoci: error: /);
  return r.stderr;
}

const TLS_REFUSED = /refused the TLS connection: (bad certificate|certificate required) \(TLS alert\)/;

describe('a registry with a private CA', () => {
  it('is trusted through its certs.d directory, and refused with the TLS hint without it', async () => {
    const reg = await startRegistry(false);
    try {
      const host = `127.0.0.1:${reg.port}`;
      const without = freshEnv();
      const err = failure(await push(`${host}/hx-certs-ca/app:v1`, without.env));
      expect(err).toContain('--ca-file');
      expect(existsSync(path.join(reg.storage, 'docker/registry/v2/repositories/hx-certs-ca'))).toBe(false);

      const { env, certsD } = freshEnv();
      const dir = certDir(certsD, host, { 'ca.crt': 'ca.crt' });
      const r = await push(`${host}/hx-certs-ca/app:v1`, env);
      expect(r.code, r.stderr).toBe(0);
      const { manifestDigest } = JSON.parse(r.stdout) as { manifestDigest: string };
      expect(await skopeoDigest(`${host}/hx-certs-ca/app:v1`, dir)).toBe(manifestDigest);
    } finally {
      reg.close();
    }
  }, 120_000);
});

describe('a registry that requires a client certificate (http.tls.clientcas)', () => {
  it('takes the pair from the host’s certs.d directory; skopeo reads the image back', async () => {
    const reg = await startRegistry(true);
    try {
      const host = `127.0.0.1:${reg.port}`;
      const { env, certsD } = freshEnv();
      const dir = certDir(certsD, host, {
        'ca.crt': 'ca.crt',
        'client.cert': 'client.cert',
        'client.key': 'client.key',
      });
      const r = await push(`${host}/hx-certs-mtls-d/app:v1`, env);
      expect(r.code, r.stderr).toBe(0);
      const { manifestDigest } = JSON.parse(r.stdout) as { manifestDigest: string };
      expect(await skopeoDigest(`${host}/hx-certs-mtls-d/app:v1`, dir)).toBe(manifestDigest);
    } finally {
      reg.close();
    }
  }, 120_000);

  it('takes the pair from --cert-dir instead of certs.d', async () => {
    const reg = await startRegistry(true);
    try {
      const host = `127.0.0.1:${reg.port}`;
      const { env, certsD } = freshEnv();
      // certs.d has the CA only: were it read, the push would go without a client certificate
      certDir(certsD, host, { 'ca.crt': 'ca.crt' });
      const own = certDir(path.join(top, `cert-dir-${reg.port}`), 'd', {
        'ca.crt': 'ca.crt',
        'me.cert': 'client.cert',
        'me.key': 'client.key',
      });
      const r = await push(`${host}/hx-certs-mtls-flag/app:v1`, env, ['--cert-dir', own]);
      expect(r.code, r.stderr).toBe(0);
      const { manifestDigest } = JSON.parse(r.stdout) as { manifestDigest: string };
      expect(await skopeoDigest(`${host}/hx-certs-mtls-flag/app:v1`, own)).toBe(manifestDigest);
    } finally {
      reg.close();
    }
  }, 120_000);

  it('without a client certificate: exit 1, one error naming the registry, the alert and where it looked', async () => {
    const reg = await startRegistry(true);
    try {
      const host = `127.0.0.1:${reg.port}`;
      // The registry really refuses a client without a certificate (curl trusts its CA, sends none).
      const curl = await run('curl', [
        '-sS',
        '--max-time',
        '10',
        '--cacert',
        path.join(pki, 'ca.crt'),
        `https://${host}/v2/`,
      ]);
      expect(curl.code, curl.out).not.toBe(0);
      const { env, certsD } = freshEnv();
      const dir = certDir(certsD, host, { 'ca.crt': 'ca.crt' });
      const err = failure(await push(`${host}/hx-certs-mtls-none/app:v1`, env));
      expect(err).toMatch(TLS_REFUSED);
      expect(err).toContain(`nixoci: error: ${host} refused`);
      expect(err).toContain(`looked in ${dir}`);
      expect(err).toContain('--cert-dir');
      expect(existsSync(path.join(reg.storage, 'docker/registry/v2/repositories/hx-certs-mtls-none'))).toBe(
        false,
      );
    } finally {
      reg.close();
    }
  }, 120_000);

  it('with a certificate of another CA: exit 1, naming the certificate refused', async () => {
    const reg = await startRegistry(true);
    try {
      const host = `127.0.0.1:${reg.port}`;
      const { env, certsD } = freshEnv();
      const dir = certDir(certsD, host, {
        'ca.crt': 'ca.crt',
        'x.cert': 'stranger.cert',
        'x.key': 'stranger.key',
      });
      const err = failure(await push(`${host}/hx-certs-mtls-bad/app:v1`, env));
      expect(err).toMatch(TLS_REFUSED);
      expect(err).toContain(`for the client certificate ${path.join(dir, 'x.cert')}`);
    } finally {
      reg.close();
    }
  }, 120_000);

  it('through HTTPS_PROXY: the pair goes inside the tunnel, and its absence is named as directly', async () => {
    const reg = await startRegistry(true);
    const proxy = await startTunnelProxy(reg.port);
    try {
      const host = `${PROXIED_NAME}:${reg.port}`;
      const proxyEnv = { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` };
      const none = freshEnv(proxyEnv);
      certDir(none.certsD, host, { 'ca.crt': 'ca.crt' });
      const err = failure(await push(`${host}/hx-certs-mtls-proxy/app:v1`, none.env));
      expect(err).toMatch(TLS_REFUSED);
      expect(err).toContain(`${host} through the proxy http://127.0.0.1:${proxy.port}`);
      expect(proxy.connects.length).toBeGreaterThan(0);

      const { env, certsD } = freshEnv(proxyEnv);
      certDir(certsD, host, { 'ca.crt': 'ca.crt', 'client.cert': 'client.cert', 'client.key': 'client.key' });
      const r = await push(`${host}/hx-certs-mtls-proxy/app:v1`, env);
      expect(r.code, r.stderr).toBe(0);
      expect(proxy.connects.every((c) => c === `${host}`)).toBe(true);
    } finally {
      await proxy.close();
      reg.close();
    }
  }, 120_000);
});

describe('certs.d files that cannot be used', () => {
  it('a .cert without its .key, and a FIFO: exit 1 naming the file, nothing waited on', async () => {
    // no registry: the directory is read before any connection
    const host = '127.0.0.1:9';
    const a = freshEnv();
    const dir = certDir(a.certsD, host, { 'client.cert': 'client.cert' });
    const err = failure(await push(`${host}/hx-certs-files/app:v1`, a.env));
    expect(err).toContain(`${path.join(dir, 'client.cert')} has no matching client.key`);

    const b = freshEnv();
    const fifoDir = certDir(b.certsD, host, { 'client.cert': 'client.cert' });
    execFileSync('mkfifo', [path.join(fifoDir, 'client.key')]);
    const fifo = failure(await push(`${host}/hx-certs-files/app:v1`, b.env));
    expect(fifo).toContain(`${path.join(fifoDir, 'client.key')} is not a regular file`);

    // --cert-dir is a flag: its problems are usage errors
    const c = freshEnv();
    const r = await push(`${host}/hx-certs-files/app:v1`, c.env, ['--cert-dir', fifoDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not a regular file');
  }, 60_000);
});

/**
 * A CONNECT-only proxy that sends every tunnel to 127.0.0.1:`port`, whatever host it names (so a
 * non-loopback name, which nixoci sends through the proxy, needs no resolver entry).
 */
async function startTunnelProxy(
  port: number,
): Promise<{ port: number; connects: string[]; close(): Promise<void> }> {
  const connects: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createHttpServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req, client: Socket) => {
    connects.push(String(req.url));
    const upstream = connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connects,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
