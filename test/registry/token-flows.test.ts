// Token auth against a docker-registry and token server of this file's own (test/helpers/
// token-registry.ts), for token services that behave in ways the shared :5002 pair does not.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '../../src/registry/reference.js';
import { registrySource } from '../../src/registry/read/registry-source.js';
import { RegistryTarget } from '../../src/registry/registry-target.js';
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
      message: expect.stringContaining(`read docker://${reg.host}/${repo}:v1 failed`),
      hint: expect.stringContaining('do not grant reading this repository'),
    });
    await expect(p).rejects.toMatchObject({ hint: expect.not.stringMatching(/push/) });
  });
});
