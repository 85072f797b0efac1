// A registry (and token server) of our own that answers `nixoci inspect docker://…` with bodies far
// larger than any real one: the CLI must stop reading early (bounded memory), fail with one clear
// line and exit 1. The server counts what it managed to send before the client hung up.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { clearErrorProblems } from '../robustness/robust-helpers.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const config = Buffer.from(
  JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
);
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: sha(config),
      size: config.length,
    },
    layers: [],
  }),
);

/** Where the server sends an endless body (cut at `cap`, so that an unbounded reader still ends). */
type Endless = 'manifest' | 'config' | 'error' | 'token';

interface Hostile {
  readonly host: string;
  sent: number;
  endless: Endless | undefined;
  close(): Promise<void>;
}

const CAP = 512 << 20;

function endless(h: Hostile, res: ServerResponse, status: number, headers: Record<string, string>): void {
  res.writeHead(status, headers);
  const chunk = Buffer.alloc(1 << 20, 0x20);
  const more = (): void => {
    while (h.sent < CAP) {
      h.sent += chunk.length;
      if (!res.write(chunk)) return;
    }
    res.end();
  };
  res.on('drain', more);
  more();
}

async function startHostile(): Promise<Hostile> {
  const h: Hostile = { host: '', sent: 0, endless: undefined, close: async () => undefined };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '';
    if (url.startsWith('/token')) {
      if (h.endless === 'token') return endless(h, res, 200, { 'content-type': 'application/json' });
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ token: 'hx-g-token' }));
    }
    if (h.endless === 'token' && req.headers.authorization !== 'Bearer hx-g-token') {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${h.host}/token",service="x"` });
      return res.end();
    }
    if (h.endless === 'error') return endless(h, res, 500, { 'content-type': 'application/json' });
    if (url.includes('/manifests/')) {
      const type = { 'content-type': 'application/vnd.oci.image.manifest.v1+json' };
      if (h.endless === 'manifest') return endless(h, res, 200, type);
      res.writeHead(200, type);
      return res.end(manifest);
    }
    if (url.includes('/blobs/')) {
      if (h.endless === 'config') return endless(h, res, 200, {});
      res.writeHead(200);
      return res.end(config);
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(h, {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

describe('a registry that answers with endless bodies', () => {
  let h: Hostile;
  beforeAll(async () => {
    h = await startHostile();
  });
  afterAll(async () => h.close());

  const cases: [Endless, RegExp][] = [
    ['manifest', /manifest 1 is larger than 8 MiB/],
    ['config', /blob sha256:\w+ is larger than 64 MiB/],
    ['error', /get manifest 1: 500/],
    ['token', /token server .* sent an unreadable answer/],
  ];
  it.each(cases)(
    'an endless %s is cut short: one clear line, exit 1',
    async (what, says) => {
      h.endless = what;
      h.sent = 0;
      const r = await nixoci(['inspect', '--timeout', '10', `docker://${h.host}/hx-g-endless:1`]);
      expect(r.code, r.stderr).toBe(1);
      expect(clearErrorProblems(r.stderr)).toEqual([]);
      expect(r.stderr.split('\n')[0]).toMatch(says);
      // Reading stopped at the limit (plus what socket buffers took); the 500 is asked 5 times.
      expect(h.sent).toBeLessThan(
        (what === 'config' ? 64 : what === 'error' ? 5 * 8 : 8) * 2 ** 20 + (32 << 20),
      );
    },
    120_000,
  );
});
