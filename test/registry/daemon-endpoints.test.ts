// Engine discovery: DOCKER_HOST=tcp:// (through a loopback TCP forwarder to the private socket), a
// docker context created by the real docker CLI, ssh:// (through a stand-in `ssh` that runs the real
// `docker system dial-stdio`), and the errors when nothing answers.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createTlsServer } from 'node:tls';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NixociError } from '../../src/core/errors.js';
import type { Image } from '../../src/image/image.js';
import { DaemonTarget } from '../../src/registry/docker-daemon-target.js';
import { EngineClient } from '../../src/registry/engine/client.js';
import { connectEngine } from '../../src/registry/engine/connect.js';
import { discoverEndpoints, parseHost } from '../../src/registry/engine/discover.js';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { nixoci } from '../helpers/cli.js';
import { repoRoot, testEnv } from '../helpers/env.js';
import { buildFixtureClosure } from '../helpers/nix.js';
import { closureOfGraph, imageOf, tempDir } from './daemon-helpers.js';

const run = randomBytes(4).toString('hex');
const socketPath = (): string => testEnv().dockerHost.replace(/^unix:\/\//, '');

describe('DaemonTarget engine discovery', () => {
  let image: Image;
  let forwarder: Server;
  let port = 0;

  beforeAll(async () => {
    const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
    image = imageOf(await closureOfGraph(fx.graphFile), tempDir('nixoci-daemon-cache-'), [
      `${fx.app}/bin/app`,
    ]);
    forwarder = createServer((c) => {
      const u = connect(socketPath());
      c.pipe(u).pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
    });
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
    port = (forwarder.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => forwarder.close(() => resolve()));
    const r = await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'], { check: false });
    await dockerRmi(...r.stdout.split('\n').filter((l) => l.includes(run)));
  });

  it('loads through DOCKER_HOST=tcp://', async () => {
    const name = `nixoci-tcp-${run}`;
    const r = await new DaemonTarget({
      engine: 'docker',
      name,
      env: { DOCKER_HOST: `tcp://127.0.0.1:${port}` },
    }).write([image], {});
    expect(r.target).toBe(`docker-daemon:${name}:latest`);
    expect(await dockerRunOutput(`${name}:latest`)).toContain('fixture app daemon-v1');
  });

  it('says so when TLS is asked for and the engine answers in plain HTTP', async () => {
    const err = await connectEngine({
      engine: 'docker',
      host: `tcp://127.0.0.1:${port}`,
      env: { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: tempDir('nixoci-no-certs-') },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NixociError);
    expect((err as NixociError).message).toBe(
      `cannot connect to the Docker engine at tcp://127.0.0.1:${port}: it answered in plain HTTP, not TLS`,
    );
    expect((err as NixociError).hint).toMatch(/unset DOCKER_TLS_VERIFY/);
  });

  it('loads through DOCKER_HOST=tcp:// with TLS, trusting DOCKER_CERT_PATH/ca.pem or NODE_EXTRA_CA_CERTS', async () => {
    // A TLS front for the private socket, with the test CA's certificate for registry.nixoci.test
    // (127.0.0.1 in /etc/hosts), as `dockerd --tlsverify` would serve.
    const auth = path.dirname(testEnv().tlsCaFile);
    const front = createTlsServer(
      { cert: readFileSync(path.join(auth, 'tls.crt')), key: readFileSync(path.join(auth, 'tls.key')) },
      (c) => {
        const u = connect(socketPath());
        c.pipe(u).pipe(c);
        c.on('error', () => u.destroy());
        u.on('error', () => c.destroy());
      },
    );
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const tlsPort = (front.address() as { port: number }).port;
    const host = `tcp://registry.nixoci.test:${tlsPort}`;
    const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
    const withCa = tempDir('nixoci-docker-certs-');
    writeFileSync(path.join(withCa, 'ca.pem'), readFileSync(testEnv().tlsCaFile));
    const empty = tempDir('nixoci-docker-certs-empty-');
    const load = (certs: string, extra: Record<string, string>, tag: string) =>
      nixoci(
        ['load', '--graph', fx.graphFile, '--entrypoint', `${fx.app}/bin/app`, `nixoci-tls-${run}:${tag}`],
        {
          env: { DOCKER_HOST: host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs, ...extra },
        },
      );
    try {
      const viaCertPath = await load(withCa, {}, 'a');
      expect(viaCertPath.code, viaCertPath.stderr).toBe(0);
      const viaExtraCas = await load(empty, { NODE_EXTRA_CA_CERTS: testEnv().tlsCaFile }, 'b');
      expect(viaExtraCas.code, viaExtraCas.stderr).toBe(0);
      expect(await dockerRunOutput(`nixoci-tls-${run}:b`)).toContain('fixture app daemon-v1');
      const untrusted = await load(empty, {}, 'c');
      expect(untrusted.code).toBe(1);
      expect(untrusted.stderr).toMatch(
        new RegExp(
          `^nixoci: error: cannot connect to the Docker engine at ${host}: .*(certificate|issuer)`,
          'i',
        ),
      );
      expect(untrusted.stderr).toMatch(/\nhint: put the CA of the engine's certificate in DOCKER_CERT_PATH/);
    } finally {
      front.close();
    }
  });

  it('loads through the current docker context', async () => {
    const config = tempDir('nixoci-docker-config-');
    const cli = (args: string[]): void => {
      const { DOCKER_HOST: _h, DOCKER_CONTEXT: _c, ...rest } = process.env;
      execFileSync(testEnv().dockerCli, args, { env: { ...rest, DOCKER_CONFIG: config }, stdio: 'pipe' });
    };
    cli(['context', 'create', 'nixoci-test', '--docker', `host=${testEnv().dockerHost}`]);
    cli(['context', 'use', 'nixoci-test']);
    expect(discoverEndpoints({ engine: 'docker', env: { DOCKER_CONFIG: config } })).toMatchObject([
      { kind: 'unix', socketPath: socketPath() },
    ]);
    const name = `nixoci-context-${run}`;
    await new DaemonTarget({ engine: 'docker', name, env: { DOCKER_CONFIG: config } }).write([image], {});
    expect(await dockerRunOutput(`${name}:latest`)).toContain('fixture app daemon-v1');
  });

  it('loads through ssh:// with `docker system dial-stdio`', async () => {
    const bin = tempDir('nixoci-fake-ssh-');
    const argsFile = path.join(bin, 'args');
    // Stands in for ssh: records its arguments, then runs the remote command locally against the
    // test engine (the remote command is `docker system dial-stdio`, as the docker CLI runs it).
    writeFileSync(
      path.join(bin, 'ssh'),
      `#!/bin/sh\necho "$@" >> ${argsFile}\nwhile [ "$1" != "--" ]; do shift; done\nshift 3\nexec ${testEnv().dockerCli} -H ${testEnv().dockerHost} "$@"\n`,
    );
    chmodSync(path.join(bin, 'ssh'), 0o755);
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath ?? ''}`;
    try {
      const name = `nixoci-ssh-${run}`;
      await new DaemonTarget({
        engine: 'docker',
        name,
        host: 'ssh://builder@remote.example:2222',
        env: {},
      }).write([image], {});
      expect(await dockerRunOutput(`${name}:latest`)).toContain('fixture app daemon-v1');
    } finally {
      process.env.PATH = savedPath;
    }
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(argsFile, 'utf8')).toContain(
      '-p 2222 -- builder@remote.example docker system dial-stdio',
    );
  });

  it('names every address it tried when no engine answers', async () => {
    const dir = tempDir('nixoci-no-engine-');
    const err = await connectEngine({ engine: 'podman', env: { XDG_RUNTIME_DIR: dir } }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NixociError);
    expect((err as NixociError).code).toBe('DAEMON_UNREACHABLE');
    expect((err as NixociError).message).toContain(`unix://${dir}/podman/podman.sock`);
    expect((err as NixociError).message).toContain('unix:///run/podman/podman.sock');
    expect((err as NixociError).hint).toMatch(/podman system service/);

    const one = await connectEngine({ engine: 'docker', host: `unix://${dir}/docker.sock` }).catch(
      (e: unknown) => e,
    );
    expect((one as NixociError).code).toBe('DAEMON_UNREACHABLE');
    expect((one as NixociError).message).toContain(`${dir}/docker.sock`);
  });

  it('says when the socket path is a directory or a file, not a socket', async () => {
    const dir = tempDir('nixoci-not-socket-');
    const file = path.join(dir, 'docker.sock');
    writeFileSync(file, '');
    for (const [p, what] of [
      [dir, 'a directory'],
      [file, 'a file'],
    ] as const) {
      const err = await connectEngine({ engine: 'docker', host: `unix://${p}` }).catch((e: unknown) => e);
      expect((err as NixociError).code).toBe('DAEMON_UNREACHABLE');
      expect((err as NixociError).message).toBe(
        `cannot connect to the Docker engine at unix://${p}: ${p} is ${what}, not a socket`,
      );
      expect((err as NixociError).hint).toBe("name the engine's socket, e.g. unix:///var/run/docker.sock");
    }
  });

  it('stops with a clear error when the engine speaks an API older than 1.25', async () => {
    // A stand-in for an old engine (none of that age runs here): it answers every request the way
    // Docker 1.12 would answer GET /version. The other questions go out alongside /version; the
    // error must still be the version's, not theirs.
    const dir = tempDir('nixoci-old-engine-');
    const sock = path.join(dir, 'docker.sock');
    const seen: string[] = [];
    const old = createHttpServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.setHeader('api-version', '1.24');
      res.setHeader('content-type', 'application/json');
      if (req.url === '/version')
        res.end(JSON.stringify({ ApiVersion: '1.24', Version: '1.12.6', Arch: 'amd64', Os: 'linux' }));
      else res.writeHead(404).end(JSON.stringify({ message: 'page not found' }));
    });
    await new Promise<void>((resolve) => old.listen(sock, resolve));
    try {
      const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
      const r = await nixoci(['load', '--graph', fx.graphFile, '--host', `unix://${sock}`, `old-${run}:v1`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `nixoci: error: the Docker engine at unix://${sock} speaks Engine API 1.24, older than 1.25\n` +
          'hint: upgrade the engine (version 1.12.6) to Docker ≥ 1.13 or Podman ≥ 3\n',
      );
      expect(seen).toContain('GET /version');
      expect(seen.filter((l) => l.startsWith('POST'))).toEqual([]);
    } finally {
      old.close();
    }
  });

  it('names the answer when something at the address answers JSON of another shape', async () => {
    // A stand-in for a server that is not an engine (or a broken proxy in front of one): JSON, but
    // not what GET /version or GET /info answer. That is an engine error, not a nixoci bug.
    const dir = tempDir('nixoci-odd-engine-');
    const sock = path.join(dir, 'docker.sock');
    let odd = '/version';
    const server = createHttpServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === odd) res.end(odd === '/info' ? '[]' : '{"Foo":1}');
      else if (req.url === '/version')
        res.end(JSON.stringify({ ApiVersion: '1.41', Version: '20.10', Arch: 'amd64' }));
      else res.writeHead(404).end(JSON.stringify({ message: 'page not found' }));
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
      const load = (): ReturnType<typeof nixoci> =>
        nixoci(['load', '--graph', fx.graphFile, '--host', `unix://${sock}`, `odd-${run}:v1`]);
      let r = await load();
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `nixoci: error: the Docker engine at unix://${sock}: GET /version: unexpected answer at ApiVersion: Required\n` +
          'hint: see the engine log for details\n',
      );
      odd = '/info';
      r = await load();
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`^nixoci: error: the Docker engine at unix://${sock}: GET /info: unexpected answer: `),
      );
      expect(r.stderr).not.toMatch(/internal error/);
    } finally {
      server.close();
    }
  });

  it('says the connection broke when the engine goes away during a load', async () => {
    // A stand-in engine that drops the connection in the middle of the archive, or after it has
    // answered 200 and started its progress stream (a crash or restart while importing).
    const dir = tempDir('nixoci-dropping-engine-');
    const sock = path.join(dir, 'docker.sock');
    let answered = false;
    const server = createHttpServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/version')
        res.end(JSON.stringify({ ApiVersion: '1.41', Version: '20.10', Arch: 'amd64' }));
      else if (req.url === '/info') res.end('{}');
      else if (req.url?.startsWith('/images/json')) res.end('[]');
      else if (req.url?.includes('/images/load')) {
        let n = 0;
        req.on('data', (c: Buffer) => {
          n += c.length;
          if (!answered && n > 100_000) req.socket.destroy();
        });
        req.on('end', () => {
          res.writeHead(200).write('{"stream":"Loading layer"}\n');
          setTimeout(() => req.socket.destroy(), 100);
        });
      } else res.writeHead(404).end(JSON.stringify({ message: 'no such image' }));
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
      const load = (): ReturnType<typeof nixoci> =>
        nixoci(['load', '--graph', fx.graphFile, '--host', `unix://${sock}`, `drop-${run}:v1`]);
      for (const when of ['while sending', 'after the answer']) {
        answered = when === 'after the answer';
        const r = await load();
        expect(r.code, when).toBe(1);
        expect(r.stderr, when).toMatch(
          new RegExp(`^nixoci: error: the connection to the Docker engine at unix://${sock} broke: `),
        );
        expect(r.stderr, when).toMatch(/\nhint: did the engine stop or restart\? See the engine log\n$/);
      }
    } finally {
      server.close();
    }
  });

  it('gives up on an engine that takes the connection but never answers, and Ctrl-C still wins', async () => {
    const dir = tempDir('nixoci-silent-');
    const sock = path.join(dir, 'docker.sock');
    const server = createServer(() => undefined); // accepts, reads nothing, answers nothing
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const client = new EngineClient(parseHost(`unix://${sock}`, 'test', {}), 'docker', 300);
      const err = await client.negotiate().catch((e: unknown) => e);
      expect((err as NixociError).code).toBe('DAEMON_UNREACHABLE');
      expect((err as NixociError).message).toBe(
        `the Docker engine at unix://${sock} did not answer GET /version within 0.3 s`,
      );
      expect((err as NixociError).hint).toMatch(
        /^check that the engine is running and not hung \(`docker version`\)/,
      );
      // an interrupt before the limit is an interrupt, not a timeout
      const c = new AbortController();
      setTimeout(() => c.abort(), 50);
      const slow = new EngineClient(parseHost(`unix://${sock}`, 'test', {}), 'docker', 30_000);
      expect(((await slow.negotiate(c.signal).catch((e: unknown) => e)) as NixociError).code).toBe('ABORTED');
    } finally {
      server.close();
    }
  });

  it('stops reading an engine answer far larger than any real one', async () => {
    const dir = tempDir('nixoci-endless-');
    const sock = path.join(dir, 'docker.sock');
    let sent = 0;
    const chunk = Buffer.alloc(1 << 20, 0x20);
    const server = createHttpServer((req, res) => {
      if (req.url === '/version') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ ApiVersion: '1.43', Version: '24.0.0' }));
        return;
      }
      // GET /info: an endless JSON body (what a broken proxy or another program might send)
      res.setHeader('content-type', 'application/json');
      res.write('{"Driver":"');
      const limit = 4 * 2 ** 30;
      const more = (): void => {
        while (sent < limit) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', more);
            return;
          }
        }
      };
      res.on('close', () => res.removeAllListeners('drain'));
      more();
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const client = new EngineClient(parseHost(`unix://${sock}`, 'test', {}), 'docker');
      await client.negotiate();
      const err = await client.info().catch((e: unknown) => e);
      expect((err as NixociError).message).toMatch(/answer is larger than 64 MiB: not an Engine API answer/);
      expect(sent).toBeLessThan(256 << 20);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('says so when what listens at the address does not speak HTTP', async () => {
    const dir = tempDir('nixoci-not-http-');
    const sock = path.join(dir, 'docker.sock');
    const server = createServer((c) => c.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const err = await connectEngine({ engine: 'docker', host: `unix://${sock}` }).catch((e: unknown) => e);
      expect((err as NixociError).code).toBe('DAEMON_UNREACHABLE');
      expect((err as NixociError).message).toMatch(
        new RegExp(`^the Docker engine at unix://${sock} does not answer in HTTP: HPE_`),
      );
      expect((err as NixociError).hint).toMatch(/^is this the engine's address\?/);
    } finally {
      server.close();
    }
  });

  it('refuses images of other architectures than the engine, naming the flag that picks one', async () => {
    const dir = tempDir('nixoci-s390x-engine-');
    const sock = path.join(dir, 'docker.sock');
    const server = createHttpServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/version')
        res.end(JSON.stringify({ ApiVersion: '1.41', Version: '20.10', Arch: 's390x' }));
      else if (req.url === '/info') res.end('{}');
      else if (req.url?.startsWith('/images/json')) res.end('[]');
      else res.writeHead(404).end(JSON.stringify({ message: 'no such image' }));
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
      const r = await nixoci([
        'load',
        '--graph',
        fx.graphFile,
        '--arch',
        'amd64,arm64',
        '--host',
        `unix://${sock}`,
        `arch-${run}:v1`,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        'nixoci: error: the engine runs on s390x, and no image was built for it\n' +
          'hint: an engine holds one platform per tag: pick the image to load with --arch amd64 or --arch arm64\n',
      );
    } finally {
      server.close();
    }
  });

  it("says permission denied, and what to do, when the socket is not the user's", async () => {
    // As root every socket opens; run nixoci as `nobody` against the engine's root:docker 0660
    // socket. The checkout may not be readable by nobody, so bin/ and dist/ are copied.
    const dir = tempDir('nixoci-nobody-');
    chmodSync(dir, 0o755);
    for (const d of ['bin', 'dist']) cpSync(path.join(repoRoot, d), path.join(dir, d), { recursive: true });
    cpSync(path.join(repoRoot, 'package.json'), path.join(dir, 'package.json'));
    const cache = path.join(dir, 'cache');
    mkdirSync(cache, { mode: 0o777 });
    chmodSync(cache, 0o777);
    const fx = await buildFixtureClosure({ tag: 'daemon-v1' });
    const r = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        path.join(dir, 'bin', 'nixoci.js'),
        'load',
        '--graph',
        fx.graphFile,
        '--host',
        `unix://${socketPath()}`,
        `nobody-${run}:v1`,
      ],
      { encoding: 'utf8', env: { ...process.env, HOME: cache, XDG_CACHE_HOME: cache } },
    );
    expect(r.status, r.stderr).toBe(1);
    // The hint names the socket's own group (test/robustness/other-user.test.ts covers the others).
    const group = execFileSync('stat', ['-c', '%G', socketPath()], { encoding: 'utf8' }).trim();
    expect(r.stderr).toBe(
      `nixoci: error: cannot connect to the Docker engine at unix://${socketPath()}: permission denied\n` +
        `hint: ${socketPath()} is open to group ${group}: add yourself to it (\`sudo usermod -aG ${group} $USER\`) and log in again, or use a rootless engine\n`,
    );
  });

  it('reports a load the engine rejects, with its message', async () => {
    const bad: Image = { ...image, platform: { architecture: 'amd64', os: 'windows' as 'linux' } };
    const err = await new DaemonTarget({
      engine: 'docker',
      name: `nixoci-bad-${run}`,
      env: { DOCKER_HOST: testEnv().dockerHost },
    })
      .write([bad], {})
      .catch((e: unknown) => e);
    expect((err as NixociError).code).toBe('DAEMON');
    expect((err as NixociError).message).toMatch(/rejected the image: .*(operating system|windows)/i);
  });
});

describe('engine address parsing', () => {
  it('follows the docker CLI precedence', () => {
    const home = tempDir('nixoci-home-');
    expect(discoverEndpoints({ engine: 'docker', env: {}, home })).toMatchObject([
      { socketPath: '/var/run/docker.sock' },
    ]);
    expect(
      discoverEndpoints({ engine: 'docker', env: { DOCKER_HOST: 'unix:///a.sock' }, home }),
    ).toMatchObject([{ socketPath: '/a.sock' }]);
    expect(
      discoverEndpoints({
        engine: 'docker',
        host: 'unix:///b.sock',
        env: { DOCKER_HOST: 'unix:///a.sock' },
        home,
      }),
    ).toMatchObject([{ socketPath: '/b.sock', source: '--host' }]);
    expect(
      discoverEndpoints({ engine: 'podman', env: { XDG_RUNTIME_DIR: '/run/user/7' }, home }).map(
        (e) => e.address,
      ),
    ).toEqual(['unix:///run/user/7/podman/podman.sock', 'unix:///run/podman/podman.sock']);
  });

  it('says which field of a docker CLI config or context is wrong', () => {
    const config = tempDir('nixoci-docker-config-');
    const file = path.join(config, 'config.json');
    writeFileSync(file, JSON.stringify({ currentContext: 5 }));
    const message = (): string => {
      try {
        discoverEndpoints({ engine: 'docker', env: { DOCKER_CONFIG: config } });
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    };
    expect(message()).toBe(
      `cannot read the docker CLI config ${file}: currentContext: Expected string, received number`,
    );
    // a context whose meta.json lacks its endpoints
    writeFileSync(file, JSON.stringify({ currentContext: 'broken' }));
    const id = createHash('sha256').update('broken').digest('hex');
    mkdirSync(path.join(config, 'contexts', 'meta', id), { recursive: true });
    writeFileSync(path.join(config, 'contexts', 'meta', id, 'meta.json'), JSON.stringify({ Name: 'broken' }));
    expect(message()).toMatch(
      /^docker context "broken" \(currentContext in .*\): cannot read .*meta\.json: Endpoints: Required$/,
    );
  });

  it('parses tcp, TLS and ssh addresses', () => {
    const certs = tempDir('nixoci-certs-');
    for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(path.join(certs, f), '');
    expect(parseHost('tcp://10.0.0.1', 'x', {})).toMatchObject({
      kind: 'tcp',
      host: '10.0.0.1',
      port: 2375,
      tls: undefined,
    });
    expect(parseHost('tcp://h:1234', 'x', { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs })).toMatchObject(
      {
        port: 1234,
        tls: {
          verify: true,
          ca: path.join(certs, 'ca.pem'),
          cert: path.join(certs, 'cert.pem'),
          key: path.join(certs, 'key.pem'),
        },
      },
    );
    expect(parseHost('tcp://h', 'x', { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs })).toMatchObject({
      port: 2376,
    });
    expect(parseHost('ssh://me@host:22/run/d.sock', 'x', {})).toMatchObject({
      kind: 'ssh',
      destination: 'me@host',
      port: 22,
      remoteSocket: '/run/d.sock',
    });
    // no scheme: tcp, as `docker -H 127.0.0.1:2375` and DOCKER_HOST=localhost:2375 take it
    expect(parseHost('127.0.0.1:2375', 'x', {})).toMatchObject({
      kind: 'tcp',
      host: '127.0.0.1',
      port: 2375,
      address: 'tcp://127.0.0.1:2375',
    });
    expect(parseHost('localhost:1234', 'x', {})).toMatchObject({
      kind: 'tcp',
      host: 'localhost',
      port: 1234,
    });
    expect(parseHost(':1234', 'x', {})).toMatchObject({ kind: 'tcp', host: 'localhost', port: 1234 });
    expect(() => parseHost('ftp://h', '--host', {})).toThrow(/unsupported scheme/);
    expect(() => parseHost('unix://relative', '--host', {})).toThrow(/absolute/);
    // typed as --host: a usage error (exit 2); from DOCKER_HOST: configuration (exit 1)
    const code = (source: string): unknown => {
      try {
        parseHost('bogus://x', source, {});
      } catch (e) {
        return (e as { code?: string }).code;
      }
    };
    expect([code('--host'), code('DOCKER_HOST')]).toEqual(['USAGE', 'TARGET_INVALID']);
  });
});
