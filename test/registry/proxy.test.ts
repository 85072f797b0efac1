import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { proxySettings, showProxy } from '../../src/registry/proxy.js';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { startHttpProxy, type HttpProxy } from '../helpers/http-proxy.js';
import { buildExampleClosure } from '../helpers/nix.js';
import { startTokenRegistry, type TokenRegistry } from '../helpers/token-registry.js';

// Which proxy a URL takes, as Go's httpproxy (what skopeo, crane and docker use) decides it.
describe('proxy settings from the environment', () => {
  const via = (env: NodeJS.ProcessEnv, url: string): string =>
    proxySettings(env).proxyFor(new URL(url))?.shown ?? 'direct';

  it('takes HTTPS_PROXY for https, HTTP_PROXY for http, upper case first, http:// when no scheme', () => {
    const env = {
      HTTPS_PROXY: 'proxy.corp:3128',
      https_proxy: 'http://lower:1',
      http_proxy: '10.0.0.1:8080',
    };
    expect(via(env, 'https://ghcr.io/v2/')).toBe('http://proxy.corp:3128');
    expect(via(env, 'http://ghcr.io/v2/')).toBe('http://10.0.0.1:8080');
    expect(via({ HTTPS_PROXY: '', https_proxy: 'http://lower:1' }, 'https://ghcr.io')).toBe('http://lower:1');
    expect(via({ HTTP_PROXY: 'http://p:1' }, 'https://ghcr.io')).toBe('direct');
    expect(proxySettings({}).any).toBe(false);
  });

  it('never proxies localhost or loopback IP literals, but does a name that resolves to loopback', () => {
    const env = { HTTPS_PROXY: 'http://p:1', HTTP_PROXY: 'http://p:1' };
    for (const u of [
      'http://localhost:5000',
      'http://127.0.0.1:5000',
      'https://127.9.8.7',
      'https://[::1]:5000',
    ])
      expect(via(env, u), u).toBe('direct');
    expect(via(env, 'https://registry.nixoci.test:5443')).toBe('http://p:1');
  });

  it('honours NO_PROXY: *, domains and their subdomains, .suffix, *.suffix, host:port, IPs, CIDRs', () => {
    const NO_PROXY =
      'corp.example, .internal.net,*.svc.local, registry.io:5443, 10.0.0.0/8, 192.168.1.5, 192.168.1.6:5000, [fd00::2]:443';
    const env = { HTTPS_PROXY: 'http://p:1', HTTP_PROXY: 'http://p:1', no_proxy: NO_PROXY };
    const direct = [
      'https://corp.example',
      'https://reg.corp.example',
      'https://REG.CORP.EXAMPLE',
      'https://a.internal.net',
      'https://a.svc.local',
      'https://registry.io:5443',
      'https://10.20.30.40',
      'https://192.168.1.5:8443',
      'http://192.168.1.6:5000',
      'https://[fd00::2]',
    ];
    const proxied = [
      'https://notcorp.example',
      'https://internal.net',
      'https://svc.local',
      'https://registry.io',
      'https://11.0.0.1',
      'https://192.168.1.6',
      'https://[fd00::2]:444',
    ];
    for (const u of direct) expect(via(env, u), u).toBe('direct');
    for (const u of proxied) expect(via(env, u), u).toBe('http://p:1');
    expect(via({ ...env, NO_PROXY: '*' }, 'https://ghcr.io')).toBe('direct');
  });

  it('masks the password, and refuses a SOCKS proxy when it would be used', () => {
    expect(showProxy(new URL('http://user:s3cret@proxy:3128'))).toBe('http://user:***@proxy:3128');
    const socks = proxySettings({ HTTPS_PROXY: 'socks5://user:s3cret@proxy:1080' });
    expect(() => socks.proxyFor(new URL('https://ghcr.io'))).toThrow(
      /HTTPS_PROXY: socks5 proxies are not supported/,
    );
    expect(socks.proxyFor(new URL('https://127.0.0.1:5000'))).toBeUndefined();
  });

  it('refuses a value with a scheme that is no URL, instead of reading its scheme as a host', () => {
    for (const value of ['http://u:s3cret@[::1', 'http://proxy:99999']) {
      const bad = proxySettings({ HTTPS_PROXY: value });
      let message = '';
      try {
        bad.proxyFor(new URL('https://ghcr.io'));
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message, value).toBe('HTTPS_PROXY is not a proxy URL');
    }
    expect(() =>
      proxySettings({ HTTPS_PROXY: 'ftp://proxy:21' }).proxyFor(new URL('https://ghcr.io')),
    ).toThrow(/HTTPS_PROXY: ftp proxies are not supported/);
  });
});

// A registry reached by a name that is not loopback by its spelling goes through the proxy, as
// it would on a CI runner behind a corporate proxy.
describe('pushing and reading through an HTTP proxy', () => {
  const env = testEnv();
  let proxy: HttpProxy;
  let authProxy: HttpProxy;
  let graphFile: string;
  const tlsRef = (tag: string): string => `docker://${env.registryTls}/hx-i-proxy/app:${tag}-${Date.now()}`;
  const plainName = `registry.nixoci.test:${env.registry.split(':')[1]}`;

  beforeAll(async () => {
    proxy = await startHttpProxy();
    authProxy = await startHttpProxy({ credentials: 'puser:p-s3cret' });
    ({ graphFile } = await buildExampleClosure());
  });
  afterAll(async () => {
    await proxy?.close();
    await authProxy?.close();
  });

  it('pushes to and inspects an HTTPS registry through CONNECT, and says so with --verbose', async () => {
    const ref = tlsRef('connect');
    const before = proxy.records.length;
    const proxied = { HTTPS_PROXY: proxy.url };
    const pushed = await nixoci(['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, ref, '-v'], {
      env: proxied,
    });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stderr).toContain(
      `https://${env.registryTls}: through the proxy ${proxy.url} (HTTPS_PROXY)`,
    );
    const tunnels = proxy.records.slice(before);
    expect(tunnels.length).toBeGreaterThan(0);
    expect(
      tunnels.every((r) => r.method === 'CONNECT' && r.target === env.registryTls && r.status === 200),
    ).toBe(true);
    // no tunnel without a request (how many requests share one depends on how they overlap, which a
    // busy machine changes: 5 tunnels for 6 requests here, 11 for 14 on a loaded one)
    const requests = pushed.stderr.match(/^(GET|HEAD|POST|PUT|PATCH|DELETE) \/v2\//gm) ?? [];
    expect(tunnels.length).toBeLessThanOrEqual(requests.length);

    const mid = proxy.records.length;
    const read = await nixociJson<{ image: unknown }>(['inspect', '--ca-file', env.tlsCaFile, ref], {
      env: proxied,
    });
    expect(read.image).toBeDefined();
    expect(proxy.records.length).toBeGreaterThan(mid);
  });

  it('sends plain HTTP (--insecure-registry NAME) to the proxy whole, streamed uploads included', async () => {
    const ref = `docker://${plainName}/hx-i-proxy/plain:${Date.now()}`;
    const before = proxy.records.length;
    const r = await nixociJson<{ layers: { action: string }[] }>(
      ['push', '--graph', graphFile, '--insecure-registry', plainName, '--compression', 'none', ref],
      { env: { HTTP_PROXY: proxy.url } },
    );
    expect(r.layers.length).toBe(3);
    const forwarded = proxy.records.slice(before);
    expect(forwarded.some((f) => f.method === 'PUT' && f.target.includes('/manifests/'))).toBe(true);
    expect(forwarded.every((f) => f.target.startsWith(`http://${plainName}/v2/`))).toBe(true);
  });

  it('goes direct to NO_PROXY hosts and to loopback registries', async () => {
    const before = proxy.records.length;
    const bypass = await nixoci(
      ['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, tlsRef('no-proxy')],
      {
        env: { HTTPS_PROXY: proxy.url, NO_PROXY: 'localhost,.nixoci.test' },
      },
    );
    expect(bypass.code, bypass.stderr).toBe(0);
    const loopback = await nixoci(
      ['push', '--graph', graphFile, `docker://${env.registry}/hx-i-proxy/lo:1`],
      {
        env: { HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url },
      },
    );
    expect(loopback.code, loopback.stderr).toBe(0);
    expect(proxy.records.length).toBe(before);
  });

  it('sends a user alone as Go does (user:), and a percent-encoded password decoded', async () => {
    for (const [credentials, userinfo] of [
      ['tokenuser:', 'tokenuser'],
      ['puser:p@ss:w/rd', 'puser:p%40ss%3Aw%2Frd'],
    ] as const) {
      const p = await startHttpProxy({ credentials });
      try {
        const r = await nixoci(['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, tlsRef('user')], {
          env: { HTTPS_PROXY: `http://${userinfo}@${p.url.replace('http://', '')}` },
        });
        expect(r.code, r.stderr).toBe(0);
        expect(p.records.every((x) => x.status === 200)).toBe(true);
      } finally {
        await p.close();
      }
    }
  });

  it('a proxy that wants credentials: one line naming the proxy, without its password', async () => {
    const ref = tlsRef('auth');
    const bare = authProxy.url.replace('http://', '');
    const none = await nixoci(['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, ref], {
      env: { HTTPS_PROXY: bare },
    });
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(
      `nixoci: error: the proxy ${authProxy.url} (HTTPS_PROXY) refused the connection to ${env.registryTls}: 407 Proxy Authentication Required\n` +
        `hint: the proxy, not the registry, wants a user and password: set HTTPS_PROXY to http://USER:PASSWORD@${bare}\n`,
    );

    const wrong = await nixoci(['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, ref, '-v'], {
      env: { HTTPS_PROXY: `http://puser:wrong-s3cret@${bare}` },
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`nixoci: error: the proxy http://puser:***@${bare} (HTTPS_PROXY) refused`);
    expect(wrong.stderr).toContain('refused the user and password in HTTPS_PROXY');
    expect(wrong.stderr).not.toContain('wrong-s3cret');
    // refused once, not retried five times
    expect(authProxy.records.filter((r) => r.status === 407)).toHaveLength(2);

    const right = await nixoci(['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, ref, '-v'], {
      env: { HTTPS_PROXY: `http://puser:p-s3cret@${bare}` },
    });
    expect(right.code, right.stderr).toBe(0);
    expect(right.stderr).toContain(`through the proxy http://puser:***@${bare} (HTTPS_PROXY)`);
    expect(right.stderr).not.toContain('p-s3cret');
    expect(authProxy.records.at(-1)).toMatchObject({ method: 'CONNECT', status: 200 });

    // plain HTTP is forwarded, and the proxy's 407 is told the same way
    const plain = await nixoci(
      [
        'push',
        '--graph',
        graphFile,
        '--insecure-registry',
        plainName,
        `docker://${plainName}/hx-i-proxy/p:1`,
      ],
      { env: { HTTP_PROXY: authProxy.url } },
    );
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(
      /^nixoci: error: the proxy http:\/\/127\.0\.0\.1:\d+ \(HTTP_PROXY\) refused the connection to registry\.nixoci\.test:\d+: 407/,
    );
  });

  it('a proxy that is not there: says it is the proxy, not the registry', async () => {
    const r = await nixoci(['push', '--graph', graphFile, '--ca-file', env.tlsCaFile, tlsRef('down')], {
      env: { HTTPS_PROXY: 'http://puser:p-s3cret@127.0.0.1:1' },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `nixoci: error: cannot reach the proxy http://puser:***@127.0.0.1:1 (HTTPS_PROXY) for https://${env.registryTls}: connect ECONNREFUSED 127.0.0.1:1\n` +
        'hint: the proxy, not the registry, is unreachable: check HTTPS_PROXY, or add the host to NO_PROXY to connect directly\n',
    );
  });
});

/** A proxy that takes connections and never answers: the sockets it holds, its URL, and close(). */
async function silentProxy(): Promise<{ held: Set<Socket>; url: string; close: () => void }> {
  const held = new Set<Socket>();
  const silent = createNetServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
  });
  // a port the system picks: a guessed one may be another test's (listen then fails)
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  return {
    held,
    url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
    close: () => {
      for (const s of held) s.destroy();
      silent.close();
    },
  };
}

// These took 5 minutes (an unanswered CONNECT) and 15 s (Ctrl-C during one) before: each test's
// time limit is the check, not a clock in the test.
describe('a proxy that takes the connection and never answers the CONNECT', () => {
  const env = testEnv();
  let graphFile: string;
  beforeAll(async () => {
    ({ graphFile } = await buildExampleClosure());
  }, 600_000);

  it('fails within --timeout, not after 5 minutes, naming the proxy', async () => {
    const silent = await silentProxy();
    try {
      const r = await nixoci(
        [
          'push',
          '--graph',
          graphFile,
          '--timeout',
          '2',
          '--ca-file',
          env.tlsCaFile,
          `docker://${env.registryTls}/hx-i-proxy/silent:1`,
        ],
        { env: { HTTPS_PROXY: silent.url } },
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `nixoci: error: the proxy ${silent.url} (HTTPS_PROXY) did not answer the CONNECT for ${env.registryTls}\n`,
      );
    } finally {
      silent.close();
    }
  }, 60_000);

  it('ends the run at once on Ctrl-C, not when the connect timeout gives up', async () => {
    const silent = await silentProxy();
    try {
      const child = spawn(
        cliBin,
        [
          'push',
          '--graph',
          graphFile,
          '--ca-file',
          env.tlsCaFile,
          `docker://${env.registryTls}/hx-i-proxy/interrupted:1`,
        ],
        { env: { ...process.env, HTTPS_PROXY: silent.url }, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      // the CONNECT has been sent: the proxy holds the connection
      while (silent.held.size === 0) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(stderr).toBe('nixoci: interrupted\n');
    } finally {
      silent.close();
    }
    // the time limit is the check: without Ctrl-C the run waits out --timeout (300 s)
  });
});

describe('token auth through a proxy', () => {
  let reg: TokenRegistry;
  let proxy: HttpProxy;
  beforeAll(async () => {
    reg = await startTokenRegistry({ tls: true, users: { alice: 'alice-secret' } });
    proxy = await startHttpProxy();
  });
  afterAll(async () => {
    await reg?.close();
    await proxy?.close();
  });

  it('reaches the registry by CONNECT and its plain-HTTP token realm by HTTP_PROXY', async () => {
    const env = testEnv();
    const { graphFile } = await buildExampleClosure();
    const home = mkdtempSync(path.join(tmpdir(), 'nixoci-home-'));
    // --insecure-registry lets credentials go to the plain-HTTP realm (the registry answers that it
    // speaks HTTPS only, and is spoken to over HTTPS from then on).
    const r = await nixoci(
      [
        'push',
        '--graph',
        graphFile,
        '--creds',
        'alice:alice-secret',
        '--insecure-registry',
        reg.host,
        '--ca-file',
        env.tlsCaFile,
        `docker://${reg.host}/hx-i-proxy/token:1`,
      ],
      { env: { HOME: home, HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(
      proxy.records.some((q) => q.method === 'CONNECT' && q.target === reg.host && q.status === 200),
    ).toBe(true);
    expect(
      proxy.records.some(
        (q) =>
          q.method === 'GET' &&
          q.target.startsWith(`http://registry.nixoci.test:${reg.tokenServer.port}/token?`) &&
          q.status === 200,
      ),
    ).toBe(true);
    expect(reg.tokenServer.requests.some((q) => q.user === 'alice' && q.status === 200)).toBe(true);
  });
});
