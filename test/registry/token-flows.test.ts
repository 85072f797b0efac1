// Token auth against a docker-registry and token server of this file's own (test/helpers/
// token-registry.ts), for token services that behave in ways the shared :5002 pair does not; and
// the basic-auth registry (:5001) where the same hints apply.
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '../../src/registry/reference.js';
import { registrySource } from '../../src/registry/read/registry-source.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
import { testEnv } from '../helpers/env.js';
import { startTokenRegistry, type TokenRegistry } from '../helpers/token-registry.js';
import { fixture, imageOf, uniqueRepo } from './push-helpers.js';

const emptyHome = (): NodeJS.ProcessEnv => ({
  HOME: mkdtempSync(path.join(tmpdir(), 'nixoci-home-')),
  PATH: process.env.PATH,
});

describe('a registry that refuses the tokens of its token service (issuer mismatch)', () => {
  let reg: TokenRegistry;
  beforeAll(async () => {
    reg = await startTokenRegistry({ users: { alice: 'alice-secret' }, tokenIssuer: 'another-issuer' });
  });
  afterAll(async () => reg.close());

  it('says the registry refused the token (invalid_token), not that the account lacks rights', async () => {
    const { closure, app } = await fixture('v1');
    const p = new RegistryTarget(parseReference(`${reg.host}/${uniqueRepo('invalid-token')}:v1`), {
      creds: { username: 'alice', password: 'alice-secret' },
      env: emptyHome(),
    }).write([imageOf(closure, app).image], {});
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      hint: expect.stringContaining('refused the token its token service issued (invalid_token)'),
    });
    await expect(p).rejects.toMatchObject({ hint: expect.not.stringContaining('write access') });
    // The token service was asked, and did hand out tokens.
    expect(reg.tokenServer.requests.some((q) => q.status === 200 && q.user === 'alice')).toBe(true);
  });
});

describe('reading an image the credentials may not pull', () => {
  let reg: TokenRegistry;
  beforeAll(async () => {
    reg = await startTokenRegistry({
      users: { alice: 'alice-secret', outsider: 'outsider-secret' },
      policy: (user, a) => (user === 'alice' ? a.actions : []),
    });
  });
  afterAll(async () => reg.close());

  it('gets a hint about reading the repository, not about pushing to it', async () => {
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('read-denied');
    await new RegistryTarget(parseReference(`${reg.host}/${repo}:v1`), {
      creds: { username: 'alice', password: 'alice-secret' },
      env: emptyHome(),
    }).write([imageOf(closure, app).image], {});
    const p = registrySource(parseReference(`docker://${reg.host}/${repo}:v1`), {
      creds: { username: 'outsider', password: 'outsider-secret' },
      env: emptyHome(),
    }).manifest();
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      message: expect.stringContaining(`read docker://${reg.host}/${repo}:v1: get manifest v1: `),
      hint: expect.stringContaining('do not grant reading this repository'),
    });
    await expect(p).rejects.toMatchObject({ hint: expect.not.stringMatching(/push/) });
  });
});

describe('refused credentials: the hint names where they came from', () => {
  let reg: TokenRegistry;
  beforeAll(async () => {
    reg = await startTokenRegistry({ users: { alice: 'alice-secret' } });
  });
  afterAll(async () => reg.close());

  it('a credential helper whose password the token server refuses', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-helper-'));
    mkdirSync(path.join(dir, 'bin'));
    const helper = path.join(dir, 'bin', 'docker-credential-stale');
    writeFileSync(helper, `#!/bin/sh\necho '{"Username":"alice","Secret":"old-password"}'\n`);
    chmodSync(helper, 0o755);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'stale' } }));
    const { closure, app } = await fixture('v1');
    const p = new RegistryTarget(parseReference(`${reg.host}/${uniqueRepo('stale-helper')}:v1`), {
      env: { ...emptyHome(), DOCKER_CONFIG: dir, PATH: `${path.join(dir, 'bin')}:${process.env.PATH}` },
    }).write([imageOf(closure, app).image], {});
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      hint: expect.stringContaining(
        `check the credentials for ${reg.host}, which came from docker-credential-stale`,
      ),
    });
    await expect(p).rejects.toMatchObject({ hint: expect.not.stringContaining('old-password') });
  });

  it('a docker config entry whose password a basic-auth registry refuses', async () => {
    const env = testEnv();
    const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-dockercfg-'));
    const config = path.join(dir, 'config.json');
    const auth = Buffer.from(`${env.registryBasicUser}:old-password`).toString('base64');
    writeFileSync(config, JSON.stringify({ auths: { [env.registryBasic]: { auth } } }));
    const { closure, app } = await fixture('v1');
    const p = new RegistryTarget(parseReference(`${env.registryBasic}/${uniqueRepo('stale-config')}:v1`), {
      env: { ...emptyHome(), DOCKER_CONFIG: dir },
    }).write([imageOf(closure, app).image], {});
    await expect(p).rejects.toMatchObject({
      code: 'REGISTRY_AUTH',
      hint: expect.stringContaining(
        `check the credentials for ${env.registryBasic}, which came from ${config}`,
      ),
    });
    await expect(p).rejects.toMatchObject({ hint: expect.not.stringContaining(auth) });
  });
});

describe('an HTTPS registry whose token realm is plain HTTP on another name', () => {
  let reg: TokenRegistry;
  beforeAll(async () => {
    reg = await startTokenRegistry({
      tls: true,
      users: { alice: 'alice-secret' },
      // a public repository: anyone may pull
      policy: (user, a) => (user === undefined ? a.actions.filter((x) => x === 'pull') : a.actions),
    });
  });
  afterAll(async () => reg.close());

  it('reads anonymously, also when given credentials, which it never sends there', async () => {
    const env = testEnv();
    const { closure, app } = await fixture('v1');
    const repo = uniqueRepo('http-realm');
    // Pushed with --insecure-registry, which allows the plain HTTP realm for credentials.
    await new RegistryTarget(parseReference(`${reg.host}/${repo}:v1`), {
      creds: { username: 'alice', password: 'alice-secret' },
      insecureRegistries: [reg.host],
      caFile: env.tlsCaFile,
      env: emptyHome(),
    }).write([imageOf(closure, app).image], {});

    const manifest = await registrySource(parseReference(`docker://${reg.host}/${repo}:v1`), {
      caFile: env.tlsCaFile,
      env: emptyHome(),
    }).manifest();
    expect(manifest.layers.length).toBeGreaterThan(0);
    expect(reg.tokenServer.requests.at(-1)).toMatchObject({ authorization: false, status: 200 });

    // With credentials but without --insecure-registry: the realm gets none, only the anonymous
    // request, and the public repository is read all the same.
    const asked = reg.tokenServer.requests.length;
    const again = await registrySource(parseReference(`docker://${reg.host}/${repo}:v1`), {
      creds: { username: 'alice', password: 'alice-secret' },
      caFile: env.tlsCaFile,
      env: emptyHome(),
    }).manifest();
    expect(again.layers.length).toBeGreaterThan(0);
    expect(reg.tokenServer.requests.length).toBeGreaterThan(asked);
    for (const r of reg.tokenServer.requests.slice(asked)) expect(r).toMatchObject({ authorization: false });
  });
});

describe('a token server whose clock is a year behind (issued_at a year ago, expires_in 300)', () => {
  let reg: TokenRegistry;
  beforeAll(async () => {
    reg = await startTokenRegistry({
      users: { alice: 'alice-secret' },
      issuedAt: () => new Date(Date.now() - 365 * 24 * 3600 * 1000).toISOString(),
    });
  });
  afterAll(async () => reg.close());

  it('counts the lifetime from the local clock: one token for the whole push, not one per request', async () => {
    const { closure, app } = await fixture('v1');
    const { image } = imageOf(closure, app);
    await new RegistryTarget(parseReference(`${reg.host}/${uniqueRepo('hx-quirks-skewed')}:v1`), {
      creds: { username: 'alice', password: 'alice-secret' },
      env: emptyHome(),
    }).write([image], {});
    // One token request per scope set this push needs (push on the target): the layers' HEADs,
    // uploads, the config and the manifest all went with it.
    expect(image.layers.length).toBeGreaterThan(2);
    expect(reg.tokenServer.requests.filter((q) => q.status === 200)).toHaveLength(1);
  });
});
