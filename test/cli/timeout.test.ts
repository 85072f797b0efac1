import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { buildExampleClosure } from '../helpers/nix.js';

describe('a registry that accepts connections and never answers', () => {
  it('fails after the retries with one clear line naming the registry and --timeout', async () => {
    const sockets: Socket[] = [];
    const server = createServer((s) => sockets.push(s)); // reads nothing, answers nothing
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const { graphFile } = await buildExampleClosure();
      const r = await nixoci([
        'push',
        '--graph',
        graphFile,
        '--timeout',
        '1',
        `docker://127.0.0.1:${port}/x:y`,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^nixoci: error: http://127\\.0\\.0\\.1:${port} did not answer: `));
      expect(r.stderr).toMatch(/hint: .*--timeout SECONDS/);
      expect(r.stderr.trim().split('\n')).toHaveLength(2);
      // retried, not given up on the first silence
      expect(sockets.length).toBeGreaterThan(1);
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });
});
