import { Readable } from 'node:stream';
import type { Agent, buildConnector as BuildConnector, Dispatcher, Response } from 'undici';
import { NixociError, reason } from '../core/errors.js';
import { tlsTrust } from '../core/tls-trust.js';
import { readRegularFile } from '../core/read-small-file.js';
import {
  hostCerts,
  hostPortOf,
  isRegistryConnection,
  registryTrust,
  type HostCerts,
  type RegistryTls,
} from './certs-d.js';
import { certAlert, clientCertError, mayHideAlert, probeAlert } from './client-cert.js';
import { proxySettings, type ProxySettings } from './proxy.js';
import { proxyDispatcher } from './proxy-dispatcher.js';
import { hostname, isLoopbackHost } from './reference.js';
import { backoffDelay, isRetryableStatus, retryAfterMs, sleep, type RetryPolicy } from './retry.js';
import { undici } from './undici.js';

export interface TransportOptions {
  /** Hosts (`host` or `host:port`) talked to over plain HTTP. Loopback hosts always are. */
  readonly insecureRegistries?: readonly string[];
  /** PEM file of extra CAs to trust, besides the system ones. */
  readonly caFile?: string;
  /** --cert-dir: the registry's CAs and client certificate, instead of its certs.d directory. */
  readonly certDir?: string;
  /** Environment for the certs.d lookup (HOME, NIXOCI_CERTS_D); default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * How long the registry may stay silent, waiting for a response's headers or between two chunks
   * of its body (default 5 minutes: a monolithic PUT of a big layer over a slow link is answered
   * only once the whole body is in). A timeout counts as a connection failure: it is retried.
   */
  readonly timeoutMs?: number;
  readonly retry?: Partial<RetryPolicy>;
  /** Told which proxy a registry or token realm is reached through (for --verbose). */
  readonly log?: (line: string) => void;
}

export const DEFAULT_TIMEOUT_MS = 300_000;

/** A request body: bytes (replayable) or nothing. Streamed bodies go through `send` once. */
export type Body = Buffer | undefined;

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 5,
  baseMs: 250,
  maxMs: 10_000,
  maxRetryAfterMs: 60_000,
};

/** A system CA bundle is ~200 KiB; a bigger file is not a CA file (or is /dev/zero). */
const MAX_CA_FILE_BYTES = 16 << 20;

const agents = new Map<string, Promise<Agent>>();

/**
 * The extra CAs of --ca-file, read when the client is made so that a bad file fails at once (and by
 * the CLI as it reads its flags, to name the command).
 */
export function caFor(caFile: string | undefined): string[] {
  if (!caFile) return [];
  let pem: string;
  try {
    pem = readRegularFile(caFile, MAX_CA_FILE_BYTES);
  } catch (e) {
    throw new NixociError('USAGE', `cannot read --ca-file ${caFile}: ${reason(e)}`, {
      hint: 'give a PEM file of CA certificates',
    });
  }
  // Other text (a DER file, a key) would be dropped without a word when the trust is built, and
  // the registry's certificate then refused with a hint to pass the --ca-file that was passed.
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(pem)) {
    throw new NixociError('USAGE', `--ca-file ${caFile} holds no PEM certificate`, {
      hint: 'give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----); convert a DER file with `openssl x509 -inform der -in FILE`',
    });
  }
  return [pem];
}

/**
 * One keep-alive connection pool per CA, timeout and registry TLS material, shared by every client
 * in the process. The registry's certs.d CAs and client certificate go to connections to that
 * registry only: a token realm on another host gets neither (see docs/registry.md).
 */
function agentFor(
  caFile: string | undefined,
  ca: readonly string[],
  timeoutMs: number,
  reg: RegistryTls | undefined,
): Promise<Agent> {
  const key = `${caFile ?? ''}\n${timeoutMs}\n${reg?.key ?? ''}`;
  let a = agents.get(key);
  if (!a) {
    a = undici().then(({ Agent, buildConnector }) => {
      const timeout = Math.min(15_000, timeoutMs);
      // The TLS trust (system CAs, plus --ca-file and NODE_EXTRA_CA_CERTS, src/core/tls-trust.ts)
      // is built on the first HTTPS connection: parsing a CA bundle costs ~30 ms, which a push to
      // a registry on loopback, over plain HTTP, never needs.
      let plain: BuildConnector.connector | undefined;
      let secure: BuildConnector.connector | undefined;
      let own: BuildConnector.connector | undefined;
      const connect: BuildConnector.connector = (opts, cb) => {
        if (opts.protocol !== 'https:') return (plain ??= buildConnector({ timeout }))(opts, cb);
        if (reg && isRegistryConnection(opts, reg))
          return (own ??= buildConnector({ timeout, ...registryTrust(ca, reg) }))(opts, cb);
        return (secure ??= buildConnector({ timeout, ...tlsTrust(ca) }))(opts, cb);
      };
      return new Agent({
        connections: 16,
        keepAliveTimeout: 30_000,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        connect,
      });
    });
    agents.set(key, a);
  }
  return a;
}

/**
 * HTTP to one registry host: scheme choice, TLS trust, retries of transient failures and manual
 * redirects. It knows nothing about credentials: `authorize` is asked for a header per URL and
 * answers only for the registry's own host, so a redirect to a blob store never carries it.
 */
export class Transport {
  private base: string;
  private originOf: string;
  /** Whether plain HTTP was answered with "speak HTTPS" (see `follow`). */
  private switched = false;
  private readonly ca: readonly string[];
  private readonly caFile: string | undefined;
  /** The registry's certs.d directory (or --cert-dir): undefined when it has nothing. */
  private readonly own: RegistryTls | undefined;
  private readonly certs: HostCerts;
  private readonly timeoutMs: number;
  /** HTTPS_PROXY, HTTP_PROXY, NO_PROXY as they were when this client was made. */
  private readonly proxies: ProxySettings;
  private routed: Promise<Dispatcher> | undefined;
  private readonly log: ((line: string) => void) | undefined;
  readonly retry: RetryPolicy;

  constructor(
    readonly host: string,
    options: TransportOptions = {},
  ) {
    const insecure =
      isLoopbackHost(host) ||
      (options.insecureRegistries ?? []).some((h) => h === host || h === hostname(host));
    this.base = `${insecure ? 'http' : 'https'}://${host}`;
    this.originOf = new URL(this.base).origin;
    this.caFile = options.caFile;
    this.ca = caFor(options.caFile);
    this.certs = hostCerts(host, options.certDir, options.env);
    const { dir, ca, client } = this.certs;
    this.own =
      ca.length > 0 || client
        ? {
            hostPort: hostPortOf(host),
            certs: this.certs,
            key: `${dir}\n${ca.join('')}\n${client?.file ?? ''}`,
          }
        : undefined;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.proxies = proxySettings();
    this.log = options.log;
  }

  /**
   * The connection pool for this registry's requests (and its token realm's): through the proxies
   * of the environment when it names any, as skopeo and crane go (src/registry/proxy.ts).
   */
  dispatcher(): Promise<Dispatcher> {
    const direct = agentFor(this.caFile, this.ca, this.timeoutMs, this.own);
    if (!this.proxies.any) return direct;
    const pool = {
      ca: this.ca,
      caKey: this.caFile ?? '',
      timeoutMs: this.timeoutMs,
      ...(this.own ? { registry: this.own } : {}),
    };
    this.routed ??= direct.then((d) => proxyDispatcher(d, this.proxies, pool, this.log));
    return this.routed;
  }

  /** The proxy the registry is reached through, for messages (never with its password). */
  private proxyNote(): string {
    try {
      const p = this.proxies.proxyFor(new URL(this.base));
      return p ? ` through the proxy ${p.shown}` : '';
    } catch {
      return '';
    }
  }

  /** `http://HOST` or `https://HOST`: plain HTTP until a registry shows it speaks only HTTPS. */
  get baseUrl(): string {
    return this.base;
  }

  get origin(): string {
    return this.originOf;
  }

  get plainHttp(): boolean {
    return this.baseUrl.startsWith('http:');
  }

  /** Whether `url` is the registry itself (the only place registry credentials may go). */
  isRegistry(url: URL): boolean {
    return url.origin === this.origin;
  }

  url(pathOrUrl: string): URL {
    return new URL(pathOrUrl, this.baseUrl);
  }

  /**
   * A URL the registry named (an upload's Location) resolved against `base`. When this registry is
   * spoken to over HTTPS (from the start, or once it has shown it speaks only that), a plain-HTTP
   * URL of its own host (what a registry behind a TLS front without X-Forwarded-Proto writes) goes
   * over HTTPS, as docker does: the registry's port speaks no plain HTTP, and credentials must not
   * go in the clear.
   */
  resolve(ref: string, base: string): URL {
    return this.upgrade(new URL(ref, this.url(base)));
  }

  private upgrade(u: URL): URL {
    if (this.plainHttp || u.protocol !== 'http:' || u.host !== new URL(this.base).host) return u;
    const up = new URL(u.href);
    up.protocol = 'https:';
    return up;
  }

  /**
   * One HTTP exchange with retries on 408/429/5xx and connection errors (honouring Retry-After),
   * following redirects by hand for GET/HEAD. `headers` is called per attempt and per hop so the
   * Authorization it returns always matches the URL and is never forwarded to another host.
   */
  async request(
    method: string,
    url: URL,
    headers: (url: URL) => Promise<Record<string, string>>,
    body: Body,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await this.follow(method, url, headers, body, signal);
      } catch (e) {
        if (!signal?.aborted) {
          const refused = await this.refusedCert(e, url);
          if (refused) throw refused;
        }
        if (signal?.aborted || attempt >= this.retry.attempts || !isConnectionError(e))
          throw this.unreachable(e, signal);
        const delayMs = backoffDelay(attempt, this.retry);
        this.retry.onRetry?.({
          attempt,
          reason: 'connection',
          delayMs,
          request: `${method} ${url.pathname}`,
        });
        await sleep(delayMs, signal);
        continue;
      }
      if (!isRetryableStatus(res.status) || attempt >= this.retry.attempts) return res;
      const wait =
        retryAfterMs(res.headers.get('retry-after'), this.retry) ?? backoffDelay(attempt, this.retry);
      this.retry.onRetry?.({
        attempt,
        reason: String(res.status),
        delayMs: wait,
        request: `${method} ${url.pathname}`,
      });
      await discard(res);
      await sleep(wait, signal);
    }
  }

  /**
   * A single attempt whose body is a stream (not retried here: the caller reopens the stream).
   * Its chunks go to the socket as they are, with the socket's backpressure (see `exchange`).
   */
  async send(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: AsyncIterable<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<Response> {
    try {
      return await exchange(this.upgrade(url), {
        method,
        headers: { 'user-agent': 'nixoci', ...headers },
        body: body instanceof Readable ? body : Readable.from(body, { objectMode: false }),
        dispatcher: await this.dispatcher(),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      const refused = signal?.aborted ? undefined : await this.refusedCert(e, url);
      throw refused ?? this.unreachable(e, signal);
    }
  }

  private probed: Promise<string | undefined> | undefined;

  /**
   * When a request to the registry over HTTPS failed because the registry refused the client
   * certificate (or wanted one), that as one error naming the alert; else undefined. The alert is
   * in the error with TLS 1.2; with TLS 1.3 the socket is reset under it, and one probe connection
   * (made once per client) reads it.
   */
  private async refusedCert(e: unknown, start: URL): Promise<NixociError | undefined> {
    // a loopback registry is asked in plain HTTP first: the failure came on its HTTPS URL
    const url = this.upgrade(start);
    if (e instanceof NixociError || url.protocol !== 'https:' || url.origin !== this.origin) return undefined;
    let alert = certAlert(e);
    if (!alert && mayHideAlert(e)) {
      const proxy = this.proxyFor(url);
      this.probed ??= probeAlert({
        host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: Number(url.port || 443),
        tls: (this.own ? registryTrust(this.ca, this.own) : tlsTrust(this.ca)) ?? {},
        ...(proxy ? { proxy } : {}),
        timeoutMs: Math.min(10_000, this.timeoutMs),
      });
      alert = await this.probed;
    }
    return alert ? clientCertError(this.host, alert, this.certs, this.proxyNote(), e) : undefined;
  }

  private proxyFor(url: URL): { url: URL } | undefined {
    try {
      return this.proxies.proxyFor(url);
    } catch {
      return undefined;
    }
  }

  private async follow(
    method: string,
    start: URL,
    headers: (url: URL) => Promise<Record<string, string>>,
    body: Body,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const dispatcher = await this.dispatcher();
    let url = this.upgrade(start);
    for (let hop = 0; ; hop++) {
      let res = await exchange(url, {
        method,
        headers: { 'user-agent': 'nixoci', ...(await headers(url)) },
        body: body ?? null,
        dispatcher,
        ...(signal ? { signal } : {}),
      });
      if (res.status === 400 && this.plainHttp && url.origin === this.origin) {
        // Plain HTTP is the default for loopback hosts (and --insecure-registry ones); a registry
        // there may still serve TLS only (a local registry:2 with a certificate). Its answer says
        // so: from then on this registry is spoken to over HTTPS, as docker and crane do.
        const text = (await readAtMost(res, MAX_DROPPED_BODY)).bytes.toString();
        if (HTTPS_ONLY.test(text)) {
          this.base = `https://${this.host}`;
          this.originOf = new URL(this.base).origin;
          this.switched = true;
          url = this.upgrade(url);
          hop--;
          continue;
        }
        const { Response } = await undici();
        res = new Response(text, { status: res.status, headers: res.headers });
      }
      const location = res.headers.get('location');
      const redirect =
        [301, 302, 303, 307, 308].includes(res.status) && location && (method === 'GET' || method === 'HEAD');
      if (!redirect) return res;
      await discard(res);
      if (hop >= 5)
        throw new NixociError(
          'REGISTRY',
          `${method} ${start.pathname}: more than 5 redirects (the last to ${new URL(location, url).origin})`,
          { hint: 'the registry or a proxy in front of it redirects in a loop; check its configuration' },
        );
      url = this.upgrade(new URL(location, url));
      if (url.protocol !== 'https:' && url.protocol !== 'http:') return res;
    }
  }

  /** Turns a failed exchange into REGISTRY_UNREACHABLE (or ABORTED); never includes headers. */
  unreachable(e: unknown, signal: AbortSignal | undefined): Error {
    if (signal?.aborted) return new NixociError('ABORTED', 'aborted', { cause: e });
    if (e instanceof NixociError) return e;
    const cause = (e as { cause?: unknown }).cause ?? e;
    const tlsHint = /certificate|self.signed|SSL|TLS|EPROTO|wrong version number/i.test(reason(cause));
    if (/TIMEOUT/i.test(reason(cause))) {
      return new NixociError(
        'REGISTRY_UNREACHABLE',
        `${this.baseUrl}${this.proxyNote()} did not answer: ${reason(cause)}`,
        {
          hint: 'check that the registry is up and not overloaded, or give it longer with --timeout SECONDS',
          cause: e,
        },
      );
    }
    // OpenSSL's text for a server that answers TLS in plain HTTP is a path into its sources.
    if ((cause as { code?: unknown })?.code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
      return new NixociError(
        'REGISTRY_UNREACHABLE',
        `cannot reach ${this.baseUrl}: the server does not speak TLS (plain HTTP?)`,
        { hint: `pass --insecure-registry ${this.host} if it serves plain HTTP`, cause: e },
      );
    }
    return new NixociError(
      'REGISTRY_UNREACHABLE',
      `cannot reach ${this.baseUrl}${this.proxyNote()}: ${reason(cause)}`,
      {
        hint: !tlsHint
          ? 'check the registry address and that it is running'
          : this.switched
            ? // spoken to in plain HTTP first (loopback, --insecure-registry), it answered that it speaks
              // only HTTPS: plain HTTP is no way round its certificate
              `${this.host} serves HTTPS only: pass --ca-file with the CA that signed its certificate (nixoci does not skip certificate checks, --insecure-registry included)`
            : 'pass --ca-file for a private CA, or --insecure-registry HOST for a registry that serves plain HTTP',
        cause: e,
      },
    );
  }
}

/** What TLS servers answer a plain HTTP request with (Go's net/http; nginx). */
const HTTPS_ONLY = /HTTP request to an HTTPS server|plain HTTP request was sent to HTTPS port/i;

/**
 * One HTTP exchange through undici's `request`, answered as a web `Response` (what the registry
 * code reads). Not `fetch`: fetch turns a Node stream body into a web stream and copies every
 * chunk (on a cold push a core's worth of memcpy and ~70 MB of buffers per upload), and it refuses
 * the ports browsers block (6000, 10080, ...), where a registry may well listen. Redirects are
 * not followed here, and no Accept-Encoding is sent: bodies come as the registry stored them.
 */
export async function exchange(
  url: URL,
  opts: {
    readonly method: string;
    readonly headers: Record<string, string>;
    readonly body: Readable | Buffer | string | null;
    readonly dispatcher?: Dispatcher;
    readonly signal?: AbortSignal;
  },
): Promise<Response> {
  const { request, Response, Headers } = await undici();
  const res = await request(url, { ...opts, method: opts.method as Dispatcher.HttpMethod });
  const h = new Headers();
  for (const [k, v] of Object.entries(res.headers)) {
    if (Array.isArray(v)) for (const x of v) h.append(k, x);
    else if (v !== undefined) h.set(k, v);
  }
  const nullBody = opts.method === 'HEAD' || [101, 204, 205, 304].includes(res.statusCode);
  if (nullBody) res.body.resume();
  return new Response(nullBody ? null : (Readable.toWeb(res.body) as ReadableStream<Uint8Array>), {
    status: res.statusCode,
    headers: h,
  });
}

function isConnectionError(e: unknown): boolean {
  if (e instanceof NixociError) return false;
  if ((e as Error)?.name === 'AbortError') return false;
  // A certificate the client does not trust fails the same way on every attempt: not retried.
  const code = String(
    (e as { cause?: { code?: unknown } })?.cause?.code ?? (e as { code?: unknown })?.code ?? '',
  );
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/.test(code)) return false;
  // A socket error, or one of undici's (UND_ERR_*), carries a code; fetch's TypeError had the socket
  // error as its cause.
  return e instanceof TypeError || (e as { code?: unknown })?.code !== undefined;
}

/** What is read of an error body, a redirect's or one that is dropped: more is never needed. */
export const MAX_DROPPED_BODY = 64 << 10;

/**
 * Reads a response body of at most `limit` bytes. A longer one (by its Content-Length, or once
 * `limit` bytes came) is not read further: `whole` is false and `bytes` holds what came. A server
 * may send hundreds of MB or an endless chunked body where a manifest or an error is expected.
 */
export async function readAtMost(res: Response, limit: number): Promise<{ bytes: Buffer; whole: boolean }> {
  const length = Number(res.headers.get('content-length') ?? NaN);
  const body = res.body;
  if (!body) return { bytes: Buffer.alloc(0), whole: true };
  if (length > limit) {
    await body.cancel().catch(() => undefined);
    return { bytes: Buffer.alloc(0), whole: false };
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { bytes: Buffer.concat(chunks, size), whole: true };
    chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return { bytes: Buffer.concat(chunks, size).subarray(0, limit), whole: false };
    }
  }
}

/**
 * Drops a response body: read (so the connection can be reused) when it is short, else cancelled
 * (the connection is closed) rather than read to its end.
 */
export async function discard(res: Response): Promise<void> {
  try {
    await readAtMost(res, MAX_DROPPED_BODY);
  } catch {
    // The body is of no interest; a broken one only costs the connection.
  }
}
