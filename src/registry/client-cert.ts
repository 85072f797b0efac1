import { isIP, type Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { NixociError } from '../core/errors.js';
import { http, tls } from '../core/builtins.js';
import type { HostCerts } from './certs-d.js';

/** The TLS alerts a server sends about the client's certificate (or its absence). */
const CERT_ALERT =
  /\b(?:sslv3|tlsv1|tlsv13) alert (certificate required|bad certificate|unknown ca|certificate unknown|certificate expired|certificate revoked|unsupported certificate|access denied)\b/i;

/** The certificate alert in an error or its causes ("certificate required"), else undefined. */
export function certAlert(e: unknown): string | undefined {
  for (let c = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++) {
    const m = CERT_ALERT.exec(String((c as { message?: unknown }).message ?? ''));
    if (m) return m[1]!.toLowerCase();
  }
  return undefined;
}

/**
 * Whether a failed request may hide a refused client certificate. With TLS 1.3 the client's side
 * of the handshake is over before the server has checked its certificate: the server's alert
 * comes after the request was written, and undici reports the closed socket ("other side closed",
 * a reset) rather than the alert.
 */
export function mayHideAlert(e: unknown): boolean {
  for (let c = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++) {
    const code = String((c as { code?: unknown }).code ?? '');
    if (/^(UND_ERR_SOCKET|ECONNRESET|EPIPE|UND_ERR_CLOSED)$/.test(code)) return true;
  }
  return false;
}

/** What the probe needs: where, with which TLS options, through which (http:) proxy. */
export interface ProbeTarget {
  readonly host: string;
  readonly port: number;
  readonly tls: ConnectionOptions;
  readonly proxy?: { readonly url: URL };
  readonly timeoutMs: number;
}

/**
 * Opens one TLS connection as the requests do and sends nothing: a server that wants another
 * client certificate then sends its alert with nothing of ours in flight to make the socket reset,
 * so the alert is read. Resolves with the alert's name, or undefined (no alert, another failure, or
 * no answer within the timeout: the request's own error stands then).
 */
export async function probeAlert(t: ProbeTarget): Promise<string | undefined> {
  let socket: Socket | undefined;
  try {
    if (t.proxy) socket = await tunnel(t);
    const raw = socket;
    return await new Promise<string | undefined>((resolve) => {
      const s = tls().connect({
        ...t.tls,
        ...(raw ? { socket: raw } : { host: t.host, port: t.port }),
        ...(isIP(t.host) ? {} : { servername: t.host }),
      });
      const done = (v: string | undefined): void => {
        clearTimeout(timer);
        s.destroy();
        resolve(v);
      };
      const timer = setTimeout(() => done(undefined), t.timeoutMs);
      s.on('error', (e) => done(certAlert(e)));
      s.on('close', () => done(undefined));
      s.on('data', () => done(undefined));
    });
  } catch {
    return undefined;
  } finally {
    socket?.destroy();
  }
}

/** A CONNECT tunnel to the registry through an http: proxy. */
function tunnel(t: ProbeTarget): Promise<Socket> {
  const proxy = t.proxy!.url;
  if (proxy.protocol !== 'http:') return Promise.reject(new Error('only http: proxies are probed'));
  const user = proxy.username
    ? `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`
    : undefined;
  const authority = `${isIP(t.host) === 6 ? `[${t.host}]` : t.host}:${t.port}`;
  return new Promise((resolve, reject) => {
    const req = http().request({
      host: proxy.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: proxy.port || 80,
      method: 'CONNECT',
      path: authority,
      headers: {
        host: authority,
        ...(user ? { 'proxy-authorization': `Basic ${Buffer.from(user).toString('base64')}` } : {}),
      },
      timeout: t.timeoutMs,
    });
    req.on('connect', (res, socket) => {
      if (res.statusCode === 200) resolve(socket);
      else {
        socket.destroy();
        reject(new Error(`CONNECT ${res.statusCode}`));
      }
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The registry refused the client certificate (or its absence), as one error: which registry,
 * which alert, where a client certificate was looked for, and what to do.
 */
export function clientCertError(
  registry: string,
  alert: string,
  certs: HostCerts,
  via: string,
  cause: unknown,
): NixociError {
  const c = certs.client;
  if (c)
    return new NixociError(
      'REGISTRY_UNREACHABLE',
      `${registry}${via} refused the TLS connection: ${alert} (TLS alert) for the client certificate ${c.file}`,
      {
        hint: `check that ${c.file} is signed by a CA the registry trusts for clients (http.tls.clientcas), is not expired, and matches its .key`,
        cause,
      },
    );
  const where = certs.searched.length > 0 ? certs.searched.join(', ') : 'no certs.d directory';
  return new NixociError(
    'REGISTRY_UNREACHABLE',
    `${registry}${via} refused the TLS connection: ${alert} (TLS alert): it wants a client certificate, and none was found (looked in ${where})`,
    {
      hint: `put the client certificate and key as NAME.cert and NAME.key in ${certs.searched[0] ?? 'the registry’s certs.d directory'}, or pass --cert-dir DIR`,
      cause,
    },
  );
}
