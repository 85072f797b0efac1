import type { Dispatcher } from 'undici';
import { NixociError } from '../../core/errors.js';
import { hostname, isLoopbackHost } from '../reference.js';
import { secretsOf } from '../registry-error.js';
import { parseChallenges, pickChallenge, type Challenge } from './challenge.js';
import type { ResolvedCredentials } from './credentials.js';
import { basicAuth, fetchToken, type BearerToken } from './token.js';

export interface AuthenticatorOptions {
  /** `ImageReference.registry`, for messages and credential lookup. */
  readonly registry: string;
  /** The registry is reached over plain HTTP, so an http:// token realm on its host is no worse. */
  readonly plainHttp: boolean;
  /** --insecure-registry hosts: a plain-HTTP token realm named here gets the credentials too. */
  readonly insecureHosts?: readonly string[];
  /** Resolved lazily: a registry that never challenges never runs a credential helper. */
  readonly credentials: () => Promise<ResolvedCredentials | undefined>;
  /** The registry's connection pool (its CA settings), used for the token realm too. */
  readonly dispatcher?: () => Promise<Dispatcher>;
  readonly log?: (line: string) => void;
}

/**
 * Answers a registry's challenges the way docker does: basic credentials for `Basic`; for
 * `Bearer`, a token from the named realm for every scope this client needs (push on the target,
 * pull on mount and cache sources), cached per scope set until it expires. A challenge asking for
 * a scope not held yet (insufficient_scope) adds it and gets a new token.
 */
export class Authenticator {
  private challenge: Challenge | undefined;
  private readonly scopes = new Set<string>();
  private readonly tokens = new Map<string, BearerToken>();
  private readonly pending = new Map<string, Promise<BearerToken>>();
  private resolved: Promise<ResolvedCredentials | undefined> | undefined;
  /** The host of a plain-HTTP token realm the credentials were withheld from (anonymous token). */
  private withheld: string | undefined;

  constructor(private readonly o: AuthenticatorOptions) {}

  /** Adds `repository:NAME:ACTIONS`; a scope already covered (pull within pull,push) is not added twice. */
  addScope(repository: string, actions: 'pull' | 'pull,push'): void {
    if (this.scopes.has(`repository:${repository}:pull,push`)) return;
    if (actions === 'pull,push') this.scopes.delete(`repository:${repository}:pull`);
    this.scopes.add(`repository:${repository}:${actions}`);
  }

  /** The Authorization header for a request to the registry, or none before the first challenge. */
  async header(signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.challenge;
    if (!ch) return undefined;
    const creds = (await this.creds())?.credentials;
    if (ch.scheme === 'basic') {
      return creds?.username !== undefined && creds.password !== undefined
        ? basicAuth(creds.username, creds.password)
        : undefined;
    }
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    return `Bearer ${(await this.token(signal)).token}`;
  }

  /**
   * Called with a 401's WWW-Authenticate. Returns true when the request should be sent again with
   * a new header, false when there is nothing new to try (the caller reports the 401).
   */
  async onUnauthorized(wwwAuthenticate: string | null, sentAuth: boolean): Promise<boolean> {
    const ch = pickChallenge(parseChallenges(wwwAuthenticate));
    if (!ch) return false;
    const before = this.challenge;
    this.challenge = ch;
    const creds = (await this.creds())?.credentials;
    if (ch.scheme === 'basic') {
      if (creds?.username === undefined) return false;
      return !sentAuth || before?.scheme !== 'basic';
    }
    if (ch.scheme !== 'bearer') return false;
    checkRealm(ch, this.o.registry);
    let grew = false;
    for (const s of (ch.params.scope ?? '').split(' ')) {
      if (s !== '' && !this.scopes.has(s)) {
        this.scopes.add(s);
        grew = true;
      }
    }
    if (!sentAuth || grew || before?.scheme !== 'bearer' || before.params.realm !== ch.params.realm)
      return true;
    // Same scopes and still refused: the cached token may have been revoked; try one fresh token.
    const key = this.key();
    if (this.tokens.has(key)) {
      this.tokens.delete(key);
      return true;
    }
    return false;
  }

  /**
   * Whether a token service took the credentials and handed out a token (for error hints: a 401
   * with such a token means the account lacks the rights, not that the password is wrong).
   */
  async tokenForCredentials(): Promise<boolean> {
    return this.tokens.size > 0 && !this.withheld && (await this.creds())?.credentials !== undefined;
  }

  /**
   * For error hints: the plain-HTTP token realm the credentials were kept from, when an anonymous
   * token was all there was.
   */
  get withheldFrom(): string | undefined {
    return this.withheld;
  }

  /** Whether credentials were found (for error hints); never the credentials themselves. */
  async credentialSource(): Promise<string | undefined> {
    return (await this.creds())?.source;
  }

  /** Every secret sent to the registry or its token realm, to blank in the errors it answers. */
  async secrets(): Promise<string[]> {
    // a lookup that failed sent nothing
    const creds = this.resolved ? (await this.resolved.catch(() => undefined))?.credentials : undefined;
    return secretsOf(
      creds,
      [...this.tokens.values()].map((t) => t.token),
    );
  }

  private creds(): Promise<ResolvedCredentials | undefined> {
    this.resolved ??= this.o.credentials().then((r) => {
      this.o.log?.(
        r
          ? `registry ${this.o.registry}: using credentials from ${r.source}`
          : `registry ${this.o.registry}: no credentials, anonymous`,
      );
      return r;
    });
    return this.resolved;
  }

  private key(): string {
    return [...this.scopes].sort().join(' ');
  }

  private async token(signal?: AbortSignal): Promise<BearerToken> {
    const key = this.key();
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached;
    // Concurrent requests (layers pushed in parallel) share one token request per scope set.
    let pending = this.pending.get(key);
    if (!pending) {
      pending = this.fetch(key, signal).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return pending;
  }

  private async fetch(key: string, signal?: AbortSignal): Promise<BearerToken> {
    const ch = this.challenge!;
    const realm = new URL(ch.params.realm!);
    this.o.log?.(`registry ${this.o.registry}: token from ${realm.origin} for ${key || '(no scope)'}`);
    const resolved = await this.creds();
    // Credentials withheld from a plain-HTTP realm elsewhere: an anonymous token may still do.
    const withheld = resolved !== undefined && !this.realmTakesCredentials(realm);
    if (withheld)
      this.o.log?.(
        `registry ${this.o.registry}: token realm ${realm.origin} is plain HTTP on another host: no credentials sent, anonymous token`,
      );
    const sent = withheld ? undefined : resolved;
    if (withheld) this.withheld = realm.host;
    let t: BearerToken;
    try {
      t = await fetchToken({
        realm,
        service: ch.params.service,
        scopes: [...this.scopes].sort(),
        credentials: sent?.credentials,
        ...(sent ? { credentialSource: sent.source } : {}),
        registry: this.o.registry,
        ...(this.o.dispatcher ? { dispatcher: await this.o.dispatcher() } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (!withheld || (e instanceof NixociError && e.code === 'ABORTED')) throw e;
      throw new NixociError(
        'REGISTRY_AUTH',
        `authentication to ${this.o.registry} failed: its token realm ${realm.origin} is plain HTTP on another host, so no credentials were sent to it, and it gave no anonymous token`,
        { hint: `if ${realm.host} is trusted, pass --insecure-registry ${realm.host}`, cause: e },
      );
    }
    this.tokens.set(key, t);
    return t;
  }

  /**
   * Credentials go to an HTTPS realm; to a plain-HTTP one only when the registry itself is plain
   * HTTP on the realm's host (or both are loopback: one machine), or when the user named the realm's
   * host with --insecure-registry. A registry (plain HTTP because it is local) naming an http://
   * realm elsewhere would otherwise have the password sent over the network in clear.
   */
  private realmTakesCredentials(realm: URL): boolean {
    if (realm.protocol === 'https:') return true;
    if ((this.o.insecureHosts ?? []).some((h) => h === realm.host || h === realm.hostname)) return true;
    if (!this.o.plainHttp) return false;
    const registry = this.o.registry;
    return hostname(registry) === realm.hostname || (isLoopbackHost(registry) && isLoopbackHost(realm.host));
  }
}

/** A Bearer challenge's realm must be an http(s) URL. */
function checkRealm(ch: Challenge, registry: string): void {
  let url: URL | undefined;
  try {
    url = new URL(ch.params.realm ?? '');
  } catch {
    // reported below
  }
  if (url?.protocol === 'https:' || url?.protocol === 'http:') return;
  throw new NixociError(
    'REGISTRY_AUTH',
    `authentication to ${registry} failed: its Bearer challenge has no valid realm`,
    {
      hint: 'the registry is misconfigured (auth.token.realm)',
    },
  );
}
