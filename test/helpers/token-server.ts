// A small Docker registry token server (https://distribution.github.io/distribution/spec/auth/token/)
// for tests: issues real JWTs signed with the key whose self-signed certificate is the token
// registry's rootcertbundle (the certificate travels in the JWT's x5c header).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';

export interface TokenAccess {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenRequestRecord {
  method: string;
  path: string;
  /** Query parameters (GET) or form fields (POST), every value kept; `password` is redacted. */
  query: Record<string, string[]>;
  /** An Authorization header was present. */
  authorization: boolean;
  /** The authenticated user, if the credentials were valid. */
  user?: string;
  /** Scopes asked for (GET `scope` params, POST `scope` split on spaces). */
  scopes: string[];
  /** HTTP status returned. */
  status: number;
  /** Access granted in the issued token, if one was issued. */
  granted?: TokenAccess[];
}

export interface TokenServerOptions {
  /** 127.0.0.1 port; 0 picks a free one. */
  port: number;
  keyFile: string;
  certFile: string;
  /** user name → password. */
  users: Record<string, string>;
  issuer: string;
  service: string;
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
  /** The `issued_at` the answers give (default: now); a skewed clock's, for tests. */
  issuedAt?: () => string;
  /**
   * Without credentials: 'grant' gives anonymous users the access `policy` allows for
   * user undefined (default: nothing, an empty-access token, like Docker Hub for a
   * private repository); 'deny' answers 401.
   */
  anonymous?: 'grant' | 'deny';
  /**
   * Which of the requested actions to grant. Default: authenticated users get everything
   * they ask for, anonymous users get nothing.
   */
  policy?: (user: string | undefined, access: TokenAccess) => string[];
}

export interface TokenServer {
  port: number;
  /** http://127.0.0.1:<port>/token */
  realm: string;
  /** Every request, in order. */
  requests: TokenRequestRecord[];
  /** Refresh tokens issued (POST with grant_type=password). */
  refreshTokens: Map<string, string>;
  /** Signs an arbitrary token (for tests that need expired / foreign-audience tokens). */
  issue(
    user: string | undefined,
    access: TokenAccess[],
    opts?: { expiresIn?: number; audience?: string },
  ): string;
  close(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function pemCertsToX5c(pem: string): string[] {
  const out: string[] = [];
  const re = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  for (const m of pem.matchAll(re)) out.push((m[1] ?? '').replace(/\s+/g, ''));
  if (out.length === 0) throw new Error('no certificate in cert file');
  return out;
}

/** "repository:foo/bar:pull,push" → {type, name, actions}; "repository(plugin):…" keeps the class in type. */
export function parseScope(scope: string): TokenAccess | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last <= first) return undefined;
  const actions = scope
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const key: KeyObject = createPrivateKey(readFileSync(opts.keyFile));
  const x5c = pemCertsToX5c(readFileSync(opts.certFile, 'utf8'));
  const alg = key.asymmetricKeyType === 'ec' ? 'ES256' : 'RS256';
  const expiresIn = opts.expiresIn ?? 300;
  const issuedAt = opts.issuedAt ?? ((): string => new Date().toISOString());
  const policy =
    opts.policy ?? ((user: string | undefined, a: TokenAccess) => (user === undefined ? [] : a.actions));
  const requests: TokenRequestRecord[] = [];
  const refreshTokens = new Map<string, string>();

  const issue = (
    user: string | undefined,
    access: TokenAccess[],
    o: { expiresIn?: number; audience?: string } = {},
  ): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg, x5c };
    const claims = {
      iss: opts.issuer,
      sub: user ?? '',
      aud: o.audience ?? opts.service,
      exp: now + (o.expiresIn ?? expiresIn),
      nbf: now - 10,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig =
      alg === 'ES256'
        ? sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' })
        : sign('sha256', Buffer.from(signingInput), key);
    return `${signingInput}.${b64url(sig)}`;
  };

  const grant = (user: string | undefined, scopes: string[]): TokenAccess[] => {
    const out: TokenAccess[] = [];
    for (const s of scopes) {
      const a = parseScope(s);
      if (!a) continue;
      const actions = policy(user, a).filter((x) => a.actions.includes(x) || a.actions.includes('*'));
      if (actions.length > 0) out.push({ type: a.type, name: a.name, actions });
    }
    return out;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const fields: Record<string, string[]> = {};
    const add = (k: string, v: string): void => {
      (fields[k] ??= []).push(v);
    };
    let params: URLSearchParams = url.searchParams;
    if (req.method === 'POST') {
      params = new URLSearchParams(await readBody(req));
    }
    for (const [k, v] of params) add(k, k === 'password' ? '<redacted>' : v);
    const record: TokenRequestRecord = {
      method: req.method ?? '',
      path: url.pathname,
      query: fields,
      authorization: req.headers.authorization !== undefined,
      scopes: [],
      status: 0,
    };
    requests.push(record);
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const unauthorized = (msg: string): void =>
      reply(
        401,
        { errors: [{ code: 'UNAUTHORIZED', message: msg }] },
        { 'www-authenticate': 'Basic realm="nixoci-test-token"' },
      );

    if (url.pathname !== '/token') {
      reply(404, { errors: [{ code: 'NOT_FOUND', message: 'not found' }] });
      return;
    }
    const service = params.get('service');
    if (service !== null && service !== opts.service) {
      reply(400, { errors: [{ code: 'INVALID_SERVICE', message: `unknown service ${service}` }] });
      return;
    }

    if (req.method === 'GET') {
      record.scopes = params.getAll('scope').flatMap((s) => s.split(' ').filter((x) => x !== ''));
      let user: string | undefined;
      const auth = req.headers.authorization;
      if (auth !== undefined) {
        const m = /^Basic\s+(.+)$/i.exec(auth);
        if (!m?.[1]) return unauthorized('unsupported authorization');
        const decoded = Buffer.from(m[1], 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        const name = colon < 0 ? decoded : decoded.slice(0, colon);
        const pass = colon < 0 ? '' : decoded.slice(colon + 1);
        if (!Object.hasOwn(opts.users, name) || opts.users[name] !== pass)
          return unauthorized('bad credentials');
        user = name;
        record.user = name;
      } else if (opts.anonymous === 'deny') {
        return unauthorized('authentication required');
      }
      const access = grant(user, record.scopes);
      record.granted = access;
      const token = issue(user, access);
      reply(200, { token, access_token: token, expires_in: expiresIn, issued_at: issuedAt() });
      return;
    }

    if (req.method === 'POST') {
      record.scopes = (params.get('scope') ?? '').split(' ').filter((x) => x !== '');
      const grantType = params.get('grant_type');
      let user: string | undefined;
      let refresh: string | undefined;
      if (grantType === 'password') {
        const name = params.get('username') ?? '';
        const pass = params.get('password') ?? '';
        if (!Object.hasOwn(opts.users, name) || opts.users[name] !== pass)
          return unauthorized('bad credentials');
        user = name;
        refresh = randomBytes(24).toString('hex');
        refreshTokens.set(refresh, name);
      } else if (grantType === 'refresh_token') {
        const rt = params.get('refresh_token') ?? '';
        const name = refreshTokens.get(rt);
        if (name === undefined) return unauthorized('invalid refresh token');
        user = name;
        refresh = rt;
      } else {
        reply(400, {
          errors: [{ code: 'UNSUPPORTED', message: `unsupported grant_type ${String(grantType)}` }],
        });
        return;
      }
      record.user = user;
      const access = grant(user, record.scopes);
      record.granted = access;
      const token = issue(user, access);
      reply(200, {
        access_token: token,
        refresh_token: refresh,
        expires_in: expiresIn,
        scope: record.scopes.join(' '),
        issued_at: issuedAt(),
      });
      return;
    }

    reply(405, { errors: [{ code: 'UNSUPPORTED', message: 'method not allowed' }] });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    realm: `http://127.0.0.1:${port}/token`,
    requests,
    refreshTokens,
    issue,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
