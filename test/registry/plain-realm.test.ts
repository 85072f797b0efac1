// A loopback registry (plain HTTP, as loopback registries are spoken to) whose Bearer challenge
// names a plain-HTTP token realm on another host: the password would cross the network in clear.
// nixoci asks such a realm for an anonymous token instead, unless --insecure-registry names it.
// The registry and its realm are one tiny server here on a free loopback port; "another host" is
// registry.nixoci.test, which the test services map to 127.0.0.1 (as the TLS registry's tests use).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';

const USER = 'hx-sec-user';
const PASSWORD = 'hx-sec-realm-Pa55';
const OTHER = 'registry.nixoci.test';

let server: Server;
let port: number;
/** The realm the registry names. */
let realmHost = '';
/** What the realm was sent: its Authorization header, '' without one. */
const realmSaw: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url!.startsWith('/token')) {
      const auth = req.headers.authorization ?? '';
      realmSaw.push(auth);
      // no anonymous tokens: only the user's credentials get one
      if (auth !== `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`) {
        res.writeHead(401).end();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token: 'hx-sec-tok', expires_in: 300 }));
      return;
    }
    if (req.headers.authorization !== 'Bearer hx-sec-tok') {
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="http://${realmHost}/token",service="hx-sec",scope="repository:hx-sec-repo:pull"`,
      });
      res.end();
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const inspect = (extra: string[] = []) =>
  nixoci([
    'inspect',
    `docker://127.0.0.1:${port}/hx-sec-repo:v1`,
    '--creds',
    `${USER}:${PASSWORD}`,
    ...extra,
  ]);

describe('a plain-HTTP token realm', () => {
  it('on another host gets no credentials: an anonymous token is asked for, and its refusal explained', async () => {
    realmHost = `${OTHER}:${port}`;
    realmSaw.length = 0;
    const r = await inspect();
    expect(realmSaw.length).toBeGreaterThan(0);
    expect(realmSaw.every((a) => a === '')).toBe(true);
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toEqual([
      `nixoci: error: read docker://127.0.0.1:${port}/hx-sec-repo:v1: authentication to 127.0.0.1:${port} failed: its token realm http://${OTHER}:${port} is plain HTTP on another host, so no credentials were sent to it, and it gave no anonymous token`,
      `hint: if ${OTHER}:${port} is trusted, pass --insecure-registry ${OTHER}:${port}`,
    ]);
    expect(r.stderr).not.toContain(PASSWORD);
  });

  it('named with --insecure-registry gets the credentials', async () => {
    realmHost = `${OTHER}:${port}`;
    realmSaw.length = 0;
    const r = await inspect(['--insecure-registry', `${OTHER}:${port}`]);
    expect(realmSaw.some((a) => a.startsWith('Basic '))).toBe(true);
    // the token worked: the registry's own answer is what fails
    expect(r.stderr).toContain('no such manifest');
  });

  it("on the registry's own (loopback) host gets the credentials", async () => {
    realmHost = `127.0.0.1:${port}`;
    realmSaw.length = 0;
    const r = await inspect();
    expect(realmSaw.some((a) => a.startsWith('Basic '))).toBe(true);
    expect(r.stderr).toContain('no such manifest');
  });
});
