import type { Dispatcher as DispatcherType, ProxyAgent as ProxyAgentType } from 'undici';
import { NixociError, reason } from '../core/errors.js';
import { tlsTrust } from '../core/tls-trust.js';
import { isRegistryConnection, registryTrust, type RegistryTls } from './certs-d.js';
import type { Proxy, ProxySettings } from './proxy.js';
import { undici } from './undici.js';

type Undici = Awaited<ReturnType<typeof undici>>;

/** How the connections through a proxy are made: as the direct ones (see transport.ts). */
export interface ProxyPoolOptions {
  readonly ca: readonly string[];
  readonly caKey: string;
  readonly timeoutMs: number;
  /** The registry's certs.d CAs and client certificate: inside tunnels to the registry only. */
  readonly registry?: RegistryTls;
}

/**
 * The requests of one proxy pool that wait for a connection (queued, or for their CONNECT), and the
 * signal its CONNECTs are sent with: when the last of those requests is aborted (Ctrl-C), the
 * CONNECTs are given up at once. undici aborts a request only once it has a connection, and a CONNECT
 * has no signal of its own: a silent proxy held an interrupted run for the whole connect timeout.
 */
class Waiting {
  count = 0;
  private stop = new AbortController();

  get signal(): AbortSignal {
    return this.stop.signal;
  }

  /** No request wants a connection any more: the CONNECTs under way are dropped. */
  giveUp(): void {
    // A code, so that a request queued at this very moment is retried (isConnectionError).
    const reason = Object.assign(new Error('no request waits for this CONNECT any more'), {
      code: 'ECONNABORTED',
    });
    this.stop.abort(reason);
    this.stop = new AbortController();
  }
}

const proxyAgents = new Map<string, { agent: ProxyAgentType; waiting: Waiting }>();

/**
 * One keep-alive pool per proxy (and CA and timeout setting), shared by every client in the
 * process. An https URL goes through a CONNECT tunnel, with the registry's TLS (and --ca-file)
 * inside it; an http URL is sent to the proxy whole (absolute-form), as Go's net/http does.
 */
function proxyAgent(
  proxy: Proxy,
  o: ProxyPoolOptions,
  u: Undici,
  reg: RegistryTls | undefined,
): { agent: ProxyAgentType; waiting: Waiting } {
  const key = `${proxy.url.href}\n${o.caKey}\n${o.timeoutMs}\n${reg?.key ?? ''}`;
  const known = proxyAgents.get(key);
  if (known) return known;
  const waiting = new Waiting();
  const { ProxyAgent, Pool } = u;
  const timeout = Math.min(15_000, o.timeoutMs);
  const trust = tlsTrust(o.ca);
  // the client certificate goes inside the tunnel to the registry, never to the proxy
  const inner = reg ? registryTrust(o.ca, reg) : trust;
  const pool = {
    connections: 16,
    keepAliveTimeout: 30_000,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
  };
  // USER[:PASSWORD]@ becomes Proxy-Authorization, as Go sends it (a user alone too, as `user:`;
  // undici sends nothing without a password)
  const bare = new URL(proxy.url.href);
  bare.username = '';
  bare.password = '';
  const user = proxy.url.username
    ? `${decodeURIComponent(proxy.url.username)}:${decodeURIComponent(proxy.url.password)}`
    : undefined;
  const agent = new ProxyAgent({
    uri: bare.href,
    ...(user ? { token: `Basic ${Buffer.from(user).toString('base64')}` } : {}),
    proxyTunnel: false,
    ...pool,
    // The CONNECT is part of connecting: a proxy that takes the connection and never answers it
    // must fail as a connection that is never accepted does, not after undici's 5 minutes (nor
    // hold up Ctrl-C that long: a request is only aborted once it has a connection).
    clientFactory: (origin, opts) => {
      const client = new Pool(origin, { ...opts, headersTimeout: timeout });
      const connect = client.connect.bind(client) as (
        c: DispatcherType.ConnectOptions,
      ) => Promise<DispatcherType.ConnectData>;
      return Object.assign(client, {
        connect: (c: DispatcherType.ConnectOptions) => connect({ ...c, signal: waiting.signal }),
      });
    },
    // ProxyAgent hands the pools of plain-HTTP forwarding only `connect`: the timeouts come here.
    factory: (origin, opts) => new Pool(origin, { ...pool, ...opts }),
    requestTls: { timeout, ...inner },
    proxyTls: { timeout, ...trust },
  });
  const made = { agent, waiting };
  proxyAgents.set(key, made);
  return made;
}

/**
 * Sends each request through the proxy the environment names for its URL, or through `direct`.
 * Failures of the proxy itself (refused connection, 407, a refused CONNECT) become one error that
 * names the proxy without its password and says that it is the proxy that failed.
 */
export async function proxyDispatcher(
  direct: DispatcherType,
  settings: ProxySettings,
  o: ProxyPoolOptions,
  log: ((line: string) => void) | undefined,
): Promise<DispatcherType> {
  const u = await undici();
  const { Dispatcher } = u;
  // undici's types declare none of the methods DecoratorHandler has: each passes the call on.
  const DecoratorHandler = u.DecoratorHandler as unknown as new (
    handler: DispatcherType.DispatchHandlers,
  ) => DispatcherType.DispatchHandlers & {
    onConnect(abort: (err?: Error) => void): void;
    onError(err: Error): void;
  };
  const logged = new Set<string>();

  class ProxyErrors extends DecoratorHandler {
    private connected = false;
    /** Failed already (aborted while it waited for a connection): what undici says later is dropped. */
    private done = false;
    private unwait: (() => void) | undefined;
    private waits = true;

    constructor(
      handler: DispatcherType.DispatchHandlers,
      private readonly proxy: Proxy,
      private readonly target: URL,
      private readonly waiting: Waiting,
      signal: AbortSignal | undefined,
    ) {
      super(handler);
      waiting.count++;
      if (!signal) return;
      const onAbort = (): void => {
        this.stopWaiting();
        this.done = true;
        if (this.waiting.count === 0) this.waiting.giveUp();
        super.onError(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.unwait = () => signal.removeEventListener('abort', onAbort);
    }

    private stopWaiting(): void {
      if (!this.waits) return;
      this.waits = false;
      this.waiting.count--;
      this.unwait?.();
    }

    override onConnect(abort: (err?: Error) => void): void {
      this.stopWaiting();
      if (this.done) return abort();
      this.connected = true;
      super.onConnect(abort);
    }

    override onError(err: Error): void {
      this.stopWaiting();
      if (this.done) return;
      this.done = true;
      super.onError(proxyError(err, this.proxy, this.target, this.connected) ?? err);
    }
  }

  class Router extends Dispatcher {
    override dispatch(
      opts: DispatcherType.DispatchOptions,
      handler: DispatcherType.DispatchHandlers,
    ): boolean {
      const target = new URL(String(opts.origin));
      let proxy: Proxy | undefined;
      try {
        proxy = settings.proxyFor(target);
      } catch (e) {
        handler.onError?.(e as Error);
        return true;
      }
      if (!proxy) return direct.dispatch(opts, handler);
      if (log && !logged.has(target.origin)) {
        logged.add(target.origin);
        log(`${target.origin}: through the proxy ${proxy.shown} (${proxy.variable})`);
      }
      const signal = (opts as { signal?: AbortSignal }).signal;
      if (signal?.aborted) {
        handler.onError?.(abortError(signal));
        return true;
      }
      const reg = isRegistryConnection({ hostname: target.hostname, port: target.port }, o.registry)
        ? o.registry
        : undefined;
      const { agent, waiting } = proxyAgent(proxy, o, u, reg);
      return agent.dispatch(opts, new ProxyErrors(handler, proxy, target, waiting, signal));
    }

    override async close(): Promise<void> {
      await direct.close();
    }

    override async destroy(): Promise<void> {
      await direct.destroy();
    }
  }
  return new Router();
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError');
}

/** A failure of the proxy (not of the registry behind it) as one clear error; else undefined. */
function proxyError(err: Error, proxy: Proxy, target: URL, connected: boolean): NixociError | undefined {
  if (err instanceof NixociError) return undefined;
  const where = `the proxy ${proxy.shown} (${proxy.variable})`;
  const dest = target.host + (target.port ? '' : target.protocol === 'https:' ? ':443' : ':80');
  const status =
    /^Proxy response \((\d+)\) !== 200 when HTTP Tunneling$/.exec(err.message)?.[1] ??
    (/^Proxy Authentication Required \(407\)$/.test(err.message) ? '407' : undefined);
  if (status === '407') {
    return new NixociError(
      'REGISTRY_UNREACHABLE',
      `${where} refused the connection to ${dest}: 407 Proxy Authentication Required`,
      {
        hint: proxy.url.username
          ? `the proxy, not the registry, refused the user and password in ${proxy.variable}; check them`
          : `the proxy, not the registry, wants a user and password: set ${proxy.variable} to ${proxy.url.protocol}//USER:PASSWORD@${proxy.url.host}`,
        cause: err,
      },
    );
  }
  if (status) {
    return new NixociError('REGISTRY_UNREACHABLE', `${where} refused the connection to ${dest}: ${status}`, {
      hint: `the proxy, not the registry, refused: check that it lets through ${dest}, or add the host to NO_PROXY to connect directly`,
      cause: err,
    });
  }
  if (!connected && (err as { code?: unknown }).code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new NixociError('REGISTRY_UNREACHABLE', `${where} did not answer the CONNECT for ${dest}`, {
      hint: `the proxy, not the registry, is not answering: check ${proxy.variable}, or add the host to NO_PROXY to connect directly`,
      cause: err,
    });
  }
  // Through a proxy, the only connection nixoci opens itself is the one to the proxy.
  const code = String((err as { code?: unknown }).code ?? '');
  if (/^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$/.test(code)) {
    return new NixociError(
      'REGISTRY_UNREACHABLE',
      `cannot reach ${where} for ${target.origin}: ${reason(err)}`,
      {
        hint: `the proxy, not the registry, is unreachable: check ${proxy.variable}, or add the host to NO_PROXY to connect directly`,
        cause: err,
      },
    );
  }
  return undefined;
}
