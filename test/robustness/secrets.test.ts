// Secrets: push/build/load with a known password in --creds, the NIXOCI_ variables and a docker
// config.json, with --verbose and --json, succeeding and failing (wrong password, 500s, an
// unreachable registry). The password and its base64 forms never appear in stdout or stderr;
// a registry behind a token realm only ever sees Bearer tokens, the realm only what it asked for.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { reply, startFaultProxy } from '../registry/fault-proxy.js';
import { uniqueRepo } from '../registry/push-helpers.js';
import { spawnCli } from './robust-helpers.js';

const env = testEnv();
const user = env.registryBasicUser;
const pass = env.registryBasicPassword;
const work = mkdtempSync(path.join(tmpdir(), 'nixoci-secrets-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The secret as it could leak: plain, base64 of it, base64 of USER:SECRET (Basic), URL-encoded. */
function forms(u: string, secret: string): string[] {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return [
    secret,
    b64(secret),
    b64(`${u}:${secret}`),
    encodeURIComponent(secret),
    b64(`${u}:${secret}`).replace(/=+$/, ''),
  ];
}

let runs = 0;
async function run(
  args: string[],
  extraEnv: NodeJS.ProcessEnv,
  secrets: string[],
  expectCode?: number,
): Promise<string> {
  const home = mkdtempSync(path.join(work, 'home-'));
  const r = await spawnCli(args, {
    HOME: home,
    DOCKER_CONFIG: path.join(home, '.docker'),
    XDG_CACHE_HOME: path.join(home, 'cache'),
    ...extraEnv,
  }).done;
  runs++;
  if (expectCode !== undefined) expect(r.code, r.stderr).toBe(expectCode);
  const all = `${r.stdout}\n${r.stderr}`;
  for (const s of secrets)
    expect(
      all.includes(s),
      `secret form ${JSON.stringify(s.slice(0, 4))}… leaked in: ${args.join(' ')}`,
    ).toBe(false);
  // No bearer token (a JWT) either.
  expect(all).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}/);
  return all;
}

describe('secrets never appear in output', () => {
  let fx: FixtureClosure;
  const secrets = forms(user, pass);
  beforeAll(async () => {
    fx = await buildFixtureClosure({ tag: 'secrets' });
  });

  it('--creds, NIXOCI_ variables and config.json; --verbose and --json; success and failure', async () => {
    const ref = (): string => `${env.registryBasic}/${uniqueRepo('secret')}:t`;
    const base = (): string[] => ['--graph', fx.graphFile, '--verbose'];
    const cfg = path.join(work, 'cfg');
    mkdirSync(cfg);
    writeFileSync(
      path.join(cfg, 'config.json'),
      JSON.stringify({
        auths: { [env.registryBasic]: { auth: Buffer.from(`${user}:${pass}`).toString('base64') } },
      }),
    );
    const envCreds = { NIXOCI_REGISTRY_USER: user, NIXOCI_REGISTRY_PASSWORD: pass };
    const out = await run(['push', ...base(), '--json', '--creds', `${user}:${pass}`, ref()], {}, secrets, 0);
    expect(out).toContain('using credentials from --creds');
    await run(['push', ...base(), '--json', ref()], envCreds, secrets, 0);
    await run(['push', ...base(), ref()], { DOCKER_CONFIG: cfg }, secrets, 0);
    await run(
      ['build', ...base(), '--json', '--to', `docker://${ref()}`, '--to', `oci:${path.join(work, 'oci')}:t`],
      { DOCKER_CONFIG: cfg },
      secrets,
      0,
    );
    await run(
      ['load', ...base(), '--json', 'nixoci-secrets:t'],
      { ...envCreds, DOCKER_HOST: env.dockerHost },
      secrets,
      0,
    );

    // Failures: a wrong password (itself a secret), a failing registry, an unreachable one.
    const wrong = 'wr0ng-S3cret-value';
    const wrongForms = forms(user, wrong);
    await run(['push', ...base(), '--json', '--creds', `${user}:${wrong}`, ref()], {}, wrongForms, 1);
    await run(
      ['push', ...base(), ref()],
      { NIXOCI_REGISTRY_USER: user, NIXOCI_REGISTRY_PASSWORD: wrong },
      wrongForms,
      1,
    );
    const proxy = await startFaultProxy(env.registryBasic);
    proxy.fault = (req, res) => {
      if (!req.headers.authorization) return false;
      reply(req, res, 500, { 'content-type': 'text/plain' }, `echo: ${req.headers.authorization}`);
      return true;
    };
    try {
      // The registry echoes the Authorization header in its error body: nixoci must not print it.
      await run(
        ['push', ...base(), '--creds', `${user}:${pass}`, `${proxy.host}/${uniqueRepo('secret')}:t`],
        {},
        secrets,
        1,
      );
    } finally {
      await proxy.close();
    }
    await run(
      ['push', ...base(), '--creds', `${user}:${pass}`, `127.0.0.1:9/${uniqueRepo('secret')}:t`],
      {},
      secrets,
      1,
    );
    // Credentials written into a reference (as in a URL) are refused without being echoed.
    const inRef = `docker://${user}:${pass}@${env.registryBasic}/${uniqueRepo('secret')}:t`;
    for (const args of [
      ['push', ...base(), inRef],
      ['build', ...base(), '--to', inRef],
      ['push', ...base(), '--cache-from', inRef, ref()],
      ['inspect', inRef],
    ]) {
      const err = await run(args, {}, secrets, 2);
      expect(err).toMatch(/"docker:\/\/\*\*\*@.*" is invalid: credentials do not go in an image reference/);
    }
  }, 180_000);

  it('a token realm gets the credentials, the registry only Bearer tokens', async () => {
    const users = { alice: 'alice-T0ken-secret' };
    const ts: TokenServer = await startTokenServer({
      port: env.tokenPort,
      keyFile: env.tokenKeyFile,
      certFile: env.tokenCertFile,
      users,
      issuer: env.tokenIssuer,
      service: env.tokenService,
    });
    const proxy = await startFaultProxy(env.registryToken);
    const schemes = new Set<string>();
    proxy.fault = (req) => {
      if (req.headers.authorization) schemes.add(req.headers.authorization.split(' ')[0]!);
      return false;
    };
    try {
      const repo = uniqueRepo('secret-token');
      const out = await run(
        [
          'push',
          '--graph',
          fx.graphFile,
          '--verbose',
          '--json',
          '--creds',
          `alice:${users.alice}`,
          `${proxy.host}/${repo}:t`,
        ],
        {},
        forms('alice', users.alice),
        0,
      );
      expect(out).toContain('"manifestDigest"');
      expect([...schemes]).toEqual(['Bearer']);
      expect(ts.requests.length).toBeGreaterThan(0);
      for (const q of ts.requests) {
        expect(q.user).toBe('alice');
        // Only scopes on this repository (the one pushed, and the pull the challenge named).
        expect(q.scopes.length).toBeGreaterThan(0);
        for (const sc of q.scopes) expect(sc).toMatch(new RegExp(`^repository:${repo}:(pull|pull,push)$`));
      }
      // A wrong password fails at the realm, and is not printed.
      await run(
        [
          'push',
          '--graph',
          fx.graphFile,
          '--verbose',
          '--creds',
          'alice:not-the-Secret-123',
          `${proxy.host}/${repo}:t2`,
        ],
        {},
        forms('alice', 'not-the-Secret-123'),
        1,
      );
    } finally {
      await proxy.close();
      await ts.close();
    }
    console.log(
      `[robustness] secrets: runs=${runs} (push/build/load; --creds, env, config.json; --verbose/--json; 5 failing) secrets leaked=0`,
    );
  }, 120_000);
});
