import type { Dispatcher as DispatcherType, ProxyAgent as ProxyAgentType } from 'undici';
import { NixociError, reason } from '../core/errors.js';
import { tlsTrust } from '../core/tls-trust.js';
import type { Proxy, ProxySettings } from './proxy.js';
import { undici } from './undici.js';

type Undici = Awaited<ReturnType<typeof undici>>;

/** How the connections through a proxy are made: as the direct ones (see transport.ts). */
export interface ProxyPoolOptions {
  readonly ca: readonly string[];
  readonly caKey: string;
  readonly timeoutMs: number;
}

const proxyAgents = new Map<string, ProxyAgentType>();

/**
 * One keep-alive pool per proxy (and CA and timeout setting), shared by every client in the
 * process. An https URL goes through a CONNECT tunnel, with the registry's TLS (and --ca-file)
 * inside it; an http URL is sent to the proxy whole (absolute-form), as Go's net/http does.
 */
function proxyAgent(proxy: Proxy, o: ProxyPoolOptions, u: Undici): ProxyAgentType {
  const key = `${proxy.url.href}\n${o.caKey}\n${o.timeoutMs}`;
  const known = proxyAgents.get(key);
  if (known) return known;
  const { ProxyAgent, Pool } = u;
  const timeout = Math.min(15_000, o.timeoutMs);
  const trust = tlsTrust(o.ca);
  const pool = {
    connections: 16,
    keepAliveTimeout: 30_000,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
  };
  const agent = new ProxyAgent({
    uri: proxy.url.href,
    proxyTunnel: false,
    ...pool,
    // The CONNECT is part of connecting: a proxy that takes the connection and never answers it
    // must fail as a connection that is never accepted does, not after undici's 5 minutes (nor
    // hold up Ctrl-C that long: a request is only aborted once it has a connection).
    clientFactory: (origin, opts) => new Pool(origin, { ...opts, headersTimeout: timeout }),
    // ProxyAgent hands the pools of plain-HTTP forwarding only `connect`: the timeouts come here.
    factory: (origin, opts) => new Pool(origin, { ...pool, ...opts }),
    requestTls: { timeout, ...trust },
    proxyTls: { timeout, ...trust },
  });
  proxyAgents.set(key, agent);
  return agent;
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
    constructor(
      handler: DispatcherType.DispatchHandlers,
      private readonly proxy: Proxy,
      private readonly target: URL,
    ) {
      super(handler);
    }

    private connected = false;

    override onConnect(abort: (err?: Error) => void): void {
      this.connected = true;
      super.onConnect(abort);
    }

    override onError(err: Error): void {
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
      return proxyAgent(proxy, o, u).dispatch(opts, new ProxyErrors(handler, proxy, target));
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
