import type { Dispatcher } from 'undici';
import { exchange, readAtMost } from '../transport.js';
import { z } from 'zod';
import { NixociError, reason } from '../../core/errors.js';
import { checkCredentials } from '../registry-error.js';
import type { Credentials } from './credentials.js';

const tokenResponse = z.object({
  token: z.string().optional(),
  access_token: z.string().optional(),
  expires_in: z.number().optional(),
  issued_at: z.string().optional(),
  refresh_token: z.string().optional(),
});

export interface BearerToken {
  readonly token: string;
  /** Epoch ms after which the token is not used any more. */
  readonly expiresAt: number;
}

export interface TokenRequest {
  readonly realm: URL;
  readonly service: string | undefined;
  readonly scopes: readonly string[];
  readonly credentials: Credentials | undefined;
  /** For messages: where the credentials came from (`--creds`, a file, a helper). */
  readonly credentialSource?: string;
  /** For messages: the registry that sent the challenge. */
  readonly registry: string;
  readonly dispatcher?: Dispatcher;
  readonly signal?: AbortSignal;
}

/** A token answer (a JWT or two and a few fields) is read up to this size. */
const MAX_TOKEN_ANSWER = 1 << 20;
/** The spec's default when a token server gives no expires_in. */
const DEFAULT_EXPIRY_S = 60;
/** Tokens are dropped this long before they expire, so one never lapses mid-request. */
const EXPIRY_MARGIN_MS = 10_000;

/**
 * Gets a bearer token from the realm a registry's challenge named (distribution's token auth):
 * an OAuth2 POST with the refresh token when there is an identity token, else a GET with basic
 * credentials (or anonymous). Credentials go to the realm only because the registry named it.
 */
export async function fetchToken(req: TokenRequest): Promise<BearerToken> {
  const c = req.credentials;
  const oauth = c?.identityToken !== undefined;
  const url = new URL(req.realm);
  const headers: Record<string, string> = { 'user-agent': 'nixoci', accept: 'application/json' };
  let body: string | undefined;
  if (oauth) {
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: c.identityToken!,
      client_id: 'nixoci',
    });
    if (req.service) form.set('service', req.service);
    if (req.scopes.length > 0) form.set('scope', req.scopes.join(' '));
    body = form.toString();
    headers['content-type'] = 'application/x-www-form-urlencoded';
  } else {
    if (req.service) url.searchParams.set('service', req.service);
    for (const s of req.scopes) url.searchParams.append('scope', s);
    if (c?.username !== undefined && c.password !== undefined) {
      url.searchParams.set('account', c.username);
      headers.authorization = basicAuth(c.username, c.password);
    }
  }
  const started = Date.now();
  let text: string;
  let status: number;
  try {
    // Redirects are not followed: credentials go only where the registry's challenge pointed.
    const res = await exchange(url, {
      method: oauth ? 'POST' : 'GET',
      headers,
      body: body ?? null,
      ...(req.dispatcher ? { dispatcher: req.dispatcher } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
    });
    status = res.status;
    // A token answer is a few KB; a longer one is cut short (and then is not JSON).
    text = (await readAtMost(res, MAX_TOKEN_ANSWER)).bytes.toString();
  } catch (e) {
    if (req.signal?.aborted) throw new NixociError('ABORTED', 'aborted', { cause: e });
    // A proxy's refusal, already said in full (src/registry/proxy-dispatcher.ts).
    if (e instanceof NixociError) throw e;
    throw new NixociError(
      'REGISTRY_UNREACHABLE',
      `authentication to ${req.registry} failed: cannot reach token server ${url.origin}: ${reason((e as { cause?: unknown }).cause ?? e)}`,
      {
        hint: 'the registry named this token server in its WWW-Authenticate challenge; check that it is reachable',
        cause: e,
      },
    );
  }
  if (status === 401 || status === 403) {
    throw new NixociError(
      'REGISTRY_AUTH',
      `authentication to ${req.registry} failed: the token server ${url.origin} refused the credentials (${status})`,
      {
        hint: c
          ? checkCredentials(req.registry, req.credentialSource)
          : `log in: nixoci login ${req.registry}, or pass --creds USER:PASSWORD`,
      },
    );
  }
  if (status < 200 || status > 299) {
    const redirect = status >= 300 && status < 400;
    throw new NixociError(
      'REGISTRY_AUTH',
      `authentication to ${req.registry} failed: the token server ${url.origin} answered ${status}${redirect ? ' (a redirect, which is not followed with credentials)' : ''}`,
      {
        hint: redirect
          ? 'the registry must name the token server itself in its WWW-Authenticate realm'
          : 'the token server is failing; try again later',
      },
    );
  }
  let parsed: z.infer<typeof tokenResponse>;
  try {
    parsed = tokenResponse.parse(JSON.parse(text));
  } catch {
    throw new NixociError(
      'REGISTRY_AUTH',
      `authentication to ${req.registry} failed: the token server ${url.origin} sent an unreadable answer`,
      {
        hint: 'it must answer JSON with a "token" or "access_token"',
      },
    );
  }
  const token = parsed.access_token ?? parsed.token;
  if (!token) {
    throw new NixociError(
      'REGISTRY_AUTH',
      `authentication to ${req.registry} failed: the token server ${url.origin} sent no token`,
      {
        hint: 'it must answer JSON with a "token" or "access_token"',
      },
    );
  }
  // The lifetime counts from when the token was asked for by the local clock, as docker does: a
  // token server whose issued_at is skewed (a year old) would otherwise give tokens that are
  // expired on arrival, and a token request before every request.
  const from = started;
  const lifetime = (parsed.expires_in ?? DEFAULT_EXPIRY_S) * 1000;
  return { token, expiresAt: from + Math.max(lifetime - EXPIRY_MARGIN_MS, lifetime / 2) };
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}
