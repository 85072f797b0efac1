// Smoke tests of the test infrastructure itself: the real registries, token auth, the Docker
// engine and Nix (scripts/services, test/helpers, nix/closure-graph.nix, test/fixtures).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, dockerRmi, dockerRunOutput } from './helpers/docker.js';
import { testEnv } from './helpers/env.js';
import { buildExampleClosure, buildFixtureClosure, pathInfoJson } from './helpers/nix.js';
import { startTokenServer, type TokenServer } from './helpers/token-server.js';

interface GraphEntry {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  closureSize: number;
}
interface Graph {
  roots: string[];
  closure: GraphEntry[];
}

function tarOf(paths: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      'tar',
      ['-C', '/', '-c', '-f', '-', ...paths.map((p) => p.slice(1))],
      { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });
}

describe('registries', () => {
  it('plain registry answers /v2/ without auth', async () => {
    const res = await fetch(`http://${testEnv().registry}/v2/`);
    expect(res.status).toBe(200);
  });

  it('basic-auth registry wants the generated password', async () => {
    const env = testEnv();
    const url = `http://${env.registryBasic}/v2/`;
    expect((await fetch(url)).status).toBe(401);
    const good = Buffer.from(`${env.registryBasicUser}:${env.registryBasicPassword}`).toString('base64');
    expect((await fetch(url, { headers: { authorization: `Basic ${good}` } })).status).toBe(200);
    const bad = Buffer.from(`${env.registryBasicUser}:wrong`).toString('base64');
    expect((await fetch(url, { headers: { authorization: `Basic ${bad}` } })).status).toBe(401);
  });

  describe('token-auth registry', () => {
    let server: TokenServer;
    beforeAll(async () => {
      const env = testEnv();
      server = await startTokenServer({
        port: env.tokenPort,
        keyFile: env.tokenKeyFile,
        certFile: env.tokenCertFile,
        users: { alice: 'wonderland' },
        issuer: env.tokenIssuer,
        service: env.tokenService,
      });
    });
    afterAll(async () => {
      await server.close();
    });

    it('challenges with the test token server realm and accepts its tokens', async () => {
      const env = testEnv();
      const first = await fetch(`http://${env.registryToken}/v2/`);
      expect(first.status).toBe(401);
      const challenge = first.headers.get('www-authenticate') ?? '';
      expect(challenge).toContain(`realm="${server.realm}"`);
      expect(challenge).toContain(`service="${env.tokenService}"`);

      const basic = Buffer.from('alice:wonderland').toString('base64');
      const tokenRes = await fetch(
        `${server.realm}?service=${env.tokenService}&scope=${encodeURIComponent('repository:infra/smoke:pull,push')}`,
        { headers: { authorization: `Basic ${basic}` } },
      );
      expect(tokenRes.status).toBe(200);
      const { token } = (await tokenRes.json()) as { token: string };
      const ok = await fetch(`http://${env.registryToken}/v2/`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(ok.status).toBe(200);
      // scoped access: the repository does not exist yet, so 404 (not 401) proves the grant
      const tags = await fetch(`http://${env.registryToken}/v2/infra/smoke/tags/list`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(tags.status).toBe(404);

      const last = server.requests.at(-1);
      expect(last).toMatchObject({
        method: 'GET',
        path: '/token',
        authorization: true,
        user: 'alice',
        status: 200,
      });
      expect(last?.granted).toEqual([{ type: 'repository', name: 'infra/smoke', actions: ['pull', 'push'] }]);
    });

    it('anonymous tokens carry no access; refresh tokens work', async () => {
      const env = testEnv();
      const scope = 'repository:infra/smoke:pull';
      const anon = (await (
        await fetch(`${server.realm}?service=${env.tokenService}&scope=${scope}`)
      ).json()) as {
        token: string;
      };
      const denied = await fetch(`http://${env.registryToken}/v2/infra/smoke/tags/list`, {
        headers: { authorization: `Bearer ${anon.token}` },
      });
      expect(denied.status).toBe(401);

      const form = new URLSearchParams({
        grant_type: 'password',
        username: 'alice',
        password: 'wonderland',
        service: env.tokenService,
        scope,
        client_id: 'nixoci-test',
      });
      const pw = (await (await fetch(server.realm, { method: 'POST', body: form })).json()) as {
        access_token: string;
        refresh_token: string;
      };
      expect(pw.refresh_token).toMatch(/^[0-9a-f]+$/);
      const refreshed = await fetch(server.realm, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: pw.refresh_token,
          service: env.tokenService,
          scope,
        }),
      });
      expect(refreshed.status).toBe(200);
      const { access_token } = (await refreshed.json()) as { access_token: string };
      const ok = await fetch(`http://${env.registryToken}/v2/infra/smoke/tags/list`, {
        headers: { authorization: `Bearer ${access_token}` },
      });
      expect(ok.status).toBe(404);
    });
  });
});

describe('nix', () => {
  it('builds the fixture closure; a new tag changes the app path only', async () => {
    const v1 = await buildFixtureClosure({ tag: 'infra-1' });
    const v2 = await buildFixtureClosure({ tag: 'infra-2' });
    expect(v1.paths).toHaveLength(5);
    expect(v1.paths).toContain(v1.app);
    expect(v1.app).not.toBe(v2.app);
    const others = (c: { app: string; paths: string[] }): string[] => c.paths.filter((p) => p !== c.app);
    expect(others(v1)).toEqual(others(v2));

    const graph = JSON.parse(await readFile(v1.graphFile, 'utf8')) as Graph;
    expect(graph.roots).toEqual([v1.app]);
    expect(graph.closure.map((e) => e.path).sort()).toEqual(v1.paths);
    for (const e of graph.closure) {
      expect(e.narHash).toMatch(/^sha256:[0-9a-z]{52}$/);
      expect(e.narSize).toBeGreaterThan(0);
      expect(e.closureSize).toBeGreaterThanOrEqual(e.narSize);
      for (const r of e.references) expect(v1.paths).toContain(r);
    }

    const info = await pathInfoJson([v1.app]);
    const infoPaths = Array.isArray(info)
      ? (info as { path: string }[]).map((i) => i.path)
      : Object.keys(info as Record<string, unknown>);
    expect(infoPaths.sort()).toEqual(v1.paths);
  });
});

describe('docker engine', () => {
  const image = 'nixoci-infra-smoke:latest';
  afterAll(async () => {
    await dockerRmi(image);
  });

  it('runs an image made from a Nix closure with --network none', async () => {
    const ex = await buildExampleClosure();
    const tar = await tarOf(ex.paths);
    await docker(['import', '--change', `ENTRYPOINT ["${ex.app}/bin/hello"]`, '-', image], { input: tar });
    const out = await dockerRunOutput(image);
    expect(out).toContain('Hello from nixoci');
    expect(out).toContain('as pid 1 ');
  });
});
