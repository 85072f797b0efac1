// Registries that echo what they were sent: some put the request's Authorization header, the
// token or the decoded password into their error bodies, and nixoci prints those bodies in its
// errors. A tiny HTTP server here plays such a registry (and its token realm) on a free loopback
// port; whatever nixoci sent must come back as *** in what it prints.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'hx-sec-echo-'));
const USER = 'hx-sec-user';
const PASSWORD = 'hx-sec-Pa55-w0rd';
const IDENTITY = 'hx-sec-identity-token-7f3a';
const TOKEN = 'hx-sec-bearer-token-91c2';

let server: Server;
let host: string;
/** Which challenge the registry sends: `basic`, or `bearer` with its realm on this server. */
let scheme: 'basic' | 'bearer' = 'basic';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** Every form a secret could be printed in. */
function forms(): string[] {
  return [PASSWORD, IDENTITY, TOKEN, b64(`${USER}:${PASSWORD}`), b64(PASSWORD), b64(IDENTITY), b64(TOKEN)];
}

async function body(req: IncomingMessage): Promise<string> {
  let s = '';
  for await (const c of req) s += (c as Buffer).toString();
  return s;
}

beforeAll(async () => {
  server = createServer((req, res) => {
    void (async () => {
      const sent = await body(req);
      if (req.url!.startsWith('/token')) {
        // the token realm: a token for anyone; what it was sent is echoed by the registry below
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ token: TOKEN, expires_in: 300 }));
        lastTokenRequest = `${req.headers.authorization ?? ''} ${sent}`;
        return;
      }
      const auth = req.headers.authorization;
      const challenge =
        scheme === 'basic'
          ? 'Basic realm="hx-sec"'
          : `Bearer realm="http://${host}/token",service="hx-sec",scope="repository:hx-sec-repo:pull"`;
      if (!auth) {
        res.writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
      // The echo: the header as sent, its credentials without the scheme, decoded, and what the
      // token realm was sent (a refresh token in a form).
      const value = auth.replace(/^\S+\s+/, '');
      const decoded = Buffer.from(value, 'base64').toString();
      const status = req.url!.endsWith('/t401') ? 401 : 500;
      res.writeHead(status, {
        'content-type': 'application/json',
        ...(status === 401 ? { 'www-authenticate': challenge } : {}),
      });
      res.end(
        JSON.stringify({
          errors: [
            {
              code: status === 401 ? 'UNAUTHORIZED' : 'UNKNOWN',
              message: `refused ${auth} = ${value} (${decoded}) realm got ${lastTokenRequest}`,
            },
          ],
        }),
      );
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
let lastTokenRequest = '';

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(work, { recursive: true, force: true });
});

function expectNoSecret(out: string): void {
  for (const f of forms()) expect(out, `${f} printed`).not.toContain(f);
}

describe('a registry echoing the credentials in its errors', () => {
  for (const status of ['t401', 't500']) {
    it(`has them blanked in what nixoci prints: basic auth, ${status}`, async () => {
      scheme = 'basic';
      const r = await nixoci([
        'inspect',
        `docker://${host}/hx-sec-repo:${status}`,
        '--creds',
        `${USER}:${PASSWORD}`,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('***');
      expect(r.stderr).toContain(status === 't401' ? ': 401 ' : ': 500 ');
      expectNoSecret(r.stdout + r.stderr);
    });

    it(`has them blanked in what nixoci prints: token auth with a password, ${status}`, async () => {
      scheme = 'bearer';
      lastTokenRequest = '';
      const r = await nixoci([
        'inspect',
        `docker://${host}/hx-sec-repo:${status}`,
        '--creds',
        `${USER}:${PASSWORD}`,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('***');
      expectNoSecret(r.stdout + r.stderr);
    });

    it(`has them blanked in what nixoci prints: token auth with an identity token, ${status}`, async () => {
      scheme = 'bearer';
      lastTokenRequest = '';
      const config = mkdtempSync(join(work, 'docker-'));
      writeFileSync(
        join(config, 'config.json'),
        JSON.stringify({ auths: { [host]: { auth: b64('<token>:'), identitytoken: IDENTITY } } }),
      );
      const r = await nixoci(['inspect', `docker://${host}/hx-sec-repo:${status}`], {
        env: { DOCKER_CONFIG: config, HOME: work },
      });
      expect(r.code).toBe(1);
      expect(lastTokenRequest).toContain(IDENTITY); // the realm was given it, and it is echoed
      expect(r.stderr).toContain('***');
      expectNoSecret(r.stdout + r.stderr);
    });
  }
});
