// Auth against the real registries: htpasswd (basic) on :5001 and token auth on :5002, whose token
// server is test/helpers/token-server.ts issuing real JWTs the registry verifies.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NixociError } from '../../src/core/errors.js';
import { DigestCache } from '../../src/layer/cache.js';
import { parseReference } from '../../src/registry/reference.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
import { testEnv } from '../helpers/env.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { fixture, imageOf, registryGet, uniqueRepo, verifyPushed } from './push-helpers.js';

const env = testEnv();
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
const emptyHome = (): NodeJS.ProcessEnv => ({
  HOME: mkdtempSync(path.join(tmpdir(), 'nixoci-home-')),
  PATH: process.env.PATH,
});

describe('basic auth (htpasswd registry)', () => {
  const user = env.registryBasicUser;
  const pass = env.registryBasicPassword;

  it('pushes with the right password; the password never shows in --verbose', async () => {
    const { closure, app } = await fixture('v1');
    const { image } = imageOf(closure, app);
    const repo = uniqueRepo('basic');
    const lines: string[] = [];
    const r = await new RegistryTarget(parseReference(`${env.registryBasic}/${repo}:v1`), {
      creds: { username: user, password: pass },
      env: emptyHome(),
    }).write([image], { log: (l) => lines.push(l) });
    expect(r.images[0]!.layers.every((l) => l.action === 'uploaded')).toBe(true);
    await verifyPushed(env.registryBasic, repo, 'v1', basic(user, pass));
    const all = lines.join('\n');
    expect(all).toContain('using credentials from --creds');
    expect(all).not.toContain(pass);
    expect(all).not.toContain(Buffer.from(`${user}:${pass}`).toString('base64'));
  });

  it('takes credentials from a docker config.json', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-dockercfg-'));
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        auths: { [env.registryBasic]: { auth: Buffer.from(`${user}:${pass}`).toString('base64') } },
      }),
    );
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('basic-cfg');
    await new RegistryTarget(parseReference(`${env.registryBasic}/${repo}:v1`), {
      env: { ...emptyHome(), DOCKER_CONFIG: dir },
    }).write([imageOf(closure, app).image], {});
    await verifyPushed(env.registryBasic, repo, 'v1', basic(user, pass));
  });

  it('fails clearly with a wrong password, naming the registry, and pushes nothing', async () => {
    const { closure, app } = await fixture('v1');
    const { image, stats } = imageOf(closure, app);
    const repo = uniqueRepo('basic-wrong');
    const wrong = 'wrong-password-xyz';
    let err: unknown;
    try {
      await new RegistryTarget(parseReference(`${env.registryBasic}/${repo}:v1`), {
        creds: { username: user, password: wrong },
        env: emptyHome(),
      }).write([image], {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NixociError);
    const e = err as NixociError;
    expect(e.code).toBe('REGISTRY_AUTH');
    expect(e.message).toContain(`push to ${env.registryBasic}/${repo} failed`);
    expect(e.hint).toMatch(/credentials for 127\.0\.0\.1:5001/);
    expect(`${e.message} ${e.hint}`).not.toContain(wrong);
    expect(stats.bytesRead).toBe(0);
    const tags = await registryGet(env.registryBasic, `/v2/${repo}/tags/list`, undefined, basic(user, pass));
    expect(tags.status).toBe(404);
  });

  it('without credentials says to log in', async () => {
    const { closure, app } = await fixture('v1');
    const p = new RegistryTarget(parseReference(`${env.registryBasic}/${uniqueRepo('anon')}:v1`), {
      env: emptyHome(),
    }).write([imageOf(closure, app).image], {});
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      hint: expect.stringMatching(/nixoci login 127\.0\.0\.1:5001|--creds/),
    });
  });
});

describe('token auth (registry with a token server)', () => {
  let ts: TokenServer;
  const users = { alice: 'alice-secret', reader: 'reader-secret' };

  beforeAll(async () => {
    ts = await startTokenServer({
      port: env.tokenPort,
      keyFile: env.tokenKeyFile,
      certFile: env.tokenCertFile,
      users,
      issuer: env.tokenIssuer,
      service: env.tokenService,
      // reader may pull only (a CI token without write access); anonymous users get nothing
      policy: (user, a) => (user === undefined ? [] : user === 'reader' ? ['pull'] : a.actions),
    });
  });
  afterAll(async () => ts.close());

  it('gets a push token for the repository (and pull on the mount source) and pushes', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('token');
    ts.requests.length = 0;
    const cache = new DigestCache(mkdtempSync(path.join(tmpdir(), 'nixoci-cache-')));
    const r = await new RegistryTarget(parseReference(`${env.registryToken}/${repo}:v1`), {
      creds: { username: 'alice', password: users.alice },
      env: emptyHome(),
    }).write([imageOf(closure, app, { cache }).image], {});
    expect(r.images[0]!.layers.every((l) => l.action === 'uploaded')).toBe(true);
    expect(ts.requests.length).toBeGreaterThan(0);
    expect(ts.requests.every((q) => q.method === 'GET' && q.user === 'alice' && q.status === 200)).toBe(true);
    expect(ts.requests[0]!.scopes).toContain(`repository:${repo}:pull,push`);
    // One token for the whole push: cached until it expires.
    expect(ts.requests.length).toBe(1);

    ts.requests.length = 0;
    const repo2 = uniqueRepo('token-mount');
    const r2 = await new RegistryTarget(parseReference(`${env.registryToken}/${repo2}:v1`), {
      creds: { username: 'alice', password: users.alice },
      mountFrom: [repo],
      env: emptyHome(),
    }).write([imageOf(closure, app, { cache }).image], {});
    expect(r2.images[0]!.layers.every((l) => l.action === 'mounted')).toBe(true);
    expect(ts.requests[0]!.scopes).toEqual(
      expect.arrayContaining([`repository:${repo2}:pull,push`, `repository:${repo}:pull`]),
    );
  });

  it('exchanges an identity token (OAuth2 refresh token) from config.json by POST', async () => {
    const form = new URLSearchParams({
      grant_type: 'password',
      username: 'alice',
      password: users.alice,
      service: env.tokenService,
      client_id: 't',
    });
    const res = await fetch(ts.realm, { method: 'POST', body: form });
    const { refresh_token } = (await res.json()) as { refresh_token: string };
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-dockercfg-'));
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ auths: { [env.registryToken]: { identitytoken: refresh_token } } }),
    );
    ts.requests.length = 0;
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('token-oauth');
    await new RegistryTarget(parseReference(`${env.registryToken}/${repo}:v1`), {
      env: { ...emptyHome(), DOCKER_CONFIG: dir },
    }).write([imageOf(closure, app).image], {});
    // Every token comes from the refresh token, by POST (never a password grant, never a GET).
    // The first covers the repository; a second may add pull on repositories that earlier tests
    // in this process pushed the same layers to (mount sources).
    const seen = ts.requests.map((q) => [q.method, q.query.grant_type?.[0], q.user]);
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(seen.length).toBeLessThanOrEqual(2);
    for (const q of seen) expect(q).toEqual(['POST', 'refresh_token', 'alice']);
  });

  it('fails clearly with a wrong password', async () => {
    const { closure, app } = await fixture('v1');
    const p = new RegistryTarget(parseReference(`${env.registryToken}/${uniqueRepo('token-wrong')}:v1`), {
      creds: { username: 'alice', password: 'nope' },
      env: emptyHome(),
    }).write([imageOf(closure, app).image], {});
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      message: expect.stringContaining(`authentication to ${env.registryToken} failed`),
      hint: expect.stringContaining('check the credentials'),
    });
  });

  it('credentials the token service accepts but that may not push get a hint about rights, not the password', async () => {
    const { closure, app } = await fixture('v1');
    const p = new RegistryTarget(parseReference(`${env.registryToken}/${uniqueRepo('token-reader')}:v1`), {
      creds: { username: 'reader', password: 'reader-secret' },
      env: emptyHome(),
    }).write([imageOf(closure, app).image], {});
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      hint: expect.stringContaining('accepted the credentials, but they do not grant this operation'),
    });
  });

  it('anonymous users get a token without push access and a clear error', async () => {
    const { closure, app } = await fixture('v1');
    const p = new RegistryTarget(parseReference(`${env.registryToken}/${uniqueRepo('token-anon')}:v1`), {
      env: emptyHome(),
    }).write([imageOf(closure, app).image], {});
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      hint: expect.stringMatching(/log in|--creds/),
    });
  });
});
