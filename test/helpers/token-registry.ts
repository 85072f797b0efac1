// A token-auth docker-registry and its token server, both started by the test itself on free
// loopback ports (not the shared :5002/:5003 pair), for tests that need the token service to
// behave in a way of their own (its policy, its issuer, short-lived tokens).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { stateDir, testEnv } from './env.js';
import { startTokenServer, type TokenServer, type TokenServerOptions } from './token-server.js';

export interface TokenRegistry {
  /** 127.0.0.1:PORT of the registry (registry.nixoci.test:PORT with `tls`). */
  readonly host: string;
  readonly tokenServer: TokenServer;
  close(): Promise<void>;
}

export interface TokenRegistryOptions extends Partial<
  Pick<TokenServerOptions, 'users' | 'policy' | 'expiresIn' | 'anonymous' | 'issuedAt'>
> {
  /** The issuer the token server writes into its JWTs (default: the one the registry expects). */
  readonly tokenIssuer?: string;
  /**
   * Serve HTTPS with the test CA's certificate, as registry.nixoci.test:PORT, and name the token
   * server http://registry.nixoci.test:PORT/token (plain HTTP, not textually loopback).
   */
  readonly tls?: boolean;
}

/** The name of the test CA's registry certificate (127.0.0.1 in /etc/hosts). */
const TLS_NAME = 'registry.nixoci.test';

/** A port ≥ 20000 with a random offset, so parallel test files do not collide. */
const randomPort = (): number => 20000 + Math.floor(Math.random() * 30000);

export async function startTokenRegistry(o: TokenRegistryOptions = {}): Promise<TokenRegistry> {
  const env = testEnv();
  let tokenServer: TokenServer | undefined;
  for (let i = 0; !tokenServer; i++) {
    try {
      tokenServer = await startTokenServer({
        port: randomPort(),
        keyFile: env.tokenKeyFile,
        certFile: env.tokenCertFile,
        users: o.users ?? {},
        issuer: o.tokenIssuer ?? env.tokenIssuer,
        service: env.tokenService,
        ...(o.policy ? { policy: o.policy } : {}),
        ...(o.expiresIn !== undefined ? { expiresIn: o.expiresIn } : {}),
        ...(o.anonymous ? { anonymous: o.anonymous } : {}),
        ...(o.issuedAt ? { issuedAt: o.issuedAt } : {}),
      });
    } catch (e) {
      if (i >= 5) throw e;
    }
  }
  const realm = o.tls ? tokenServer.realm.replace('127.0.0.1', TLS_NAME) : tokenServer.realm;
  const dir = mkdtempSync(path.join(tmpdir(), 'nixoci-token-registry-'));
  for (let i = 0; ; i++) {
    const port = randomPort();
    const config = path.join(dir, 'config.yml');
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'storage')}`,
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '  secret: nixoci-test-own-token-registry',
        ...(o.tls
          ? [
              '  tls:',
              `    certificate: ${path.join(stateDir, 'auth', 'tls.crt')}`,
              `    key: ${path.join(stateDir, 'auth', 'tls.key')}`,
            ]
          : []),
        'auth:',
        '  token:',
        `    realm: ${realm}`,
        `    service: ${env.tokenService}`,
        `    issuer: ${env.tokenIssuer}`,
        `    rootcertbundle: ${env.tokenCertFile}`,
        '',
      ].join('\n'),
    );
    const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
    const host = `${o.tls ? TLS_NAME : '127.0.0.1'}:${port}`;
    if (await answers(host, child, realm, o.tls ? readFileSync(env.tlsCaFile) : undefined)) {
      const ts = tokenServer;
      return {
        host,
        tokenServer: ts,
        close: async () => {
          child.kill();
          await ts.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill();
    if (i >= 5) {
      await tokenServer.close();
      throw new Error(`docker-registry did not start on ${host}`);
    }
  }
}

/**
 * Waits until the registry answers /v2/ with a challenge naming our realm (not another server that
 * had the port), or its process ended.
 */
async function answers(host: string, child: ChildProcess, realm: string, ca?: Buffer): Promise<boolean> {
  const dispatcher = ca ? new Agent({ connect: { ca } }) : undefined;
  // a bound far above what a busy machine needs to start it
  for (const end = Date.now() + 90_000; Date.now() < end && child.exitCode === null;) {
    try {
      const res = await request(`${ca ? 'https' : 'http'}://${host}/v2/`, dispatcher ? { dispatcher } : {});
      await res.body.dump();
      if (res.statusCode === 401 && String(res.headers['www-authenticate']).includes(realm)) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
