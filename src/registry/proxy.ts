import { BlockList, isIP } from 'node:net';
import { NixociError } from '../core/errors.js';

/**
 * The proxy settings of the environment, chosen as Go's net/http ProxyFromEnvironment
 * (golang.org/x/net/http/httpproxy) chooses them, so that nixoci goes where skopeo, crane and the
 * docker CLI go on the same machine: HTTPS_PROXY for https URLs, HTTP_PROXY for http URLs (the
 * upper-case name first, an empty one falls through to the lower-case one), NO_PROXY for the
 * exceptions, and never a proxy for `localhost` or a loopback IP literal.
 */
export interface ProxySettings {
  /** The proxy for `url`, or undefined to connect directly. Throws for an unusable proxy URL. */
  proxyFor(url: URL): Proxy | undefined;
  /** Whether any proxy is set at all (when none is, requests go straight to the plain agent). */
  readonly any: boolean;
}

export interface Proxy {
  readonly url: URL;
  /** The variable it came from (`HTTPS_PROXY`, `https_proxy`, ...), for messages. */
  readonly variable: string;
  /** The proxy URL without its password, the only form that may be printed. */
  readonly shown: string;
}

type Choice = Proxy | { readonly variable: string; readonly error: NixociError } | undefined;

export function proxySettings(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const https = parseProxy(firstSet(env, 'HTTPS_PROXY', 'https_proxy'));
  const http = parseProxy(firstSet(env, 'HTTP_PROXY', 'http_proxy'));
  const noProxy = parseNoProxy(firstSet(env, 'NO_PROXY', 'no_proxy')?.value ?? '');
  return {
    any: https !== undefined || http !== undefined,
    proxyFor(url: URL): Proxy | undefined {
      const choice = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
      if (!choice || !useProxy(url, noProxy)) return undefined;
      if ('error' in choice) throw choice.error;
      return choice;
    },
  };
}

/** `scheme://user:***@host:port`: a proxy URL as it may appear in a message or a log. */
export function showProxy(url: URL): string {
  const user = url.username ? `${url.username}${url.password ? ':***' : ''}@` : '';
  return `${url.protocol}//${user}${url.host}`;
}

function firstSet(
  env: NodeJS.ProcessEnv,
  ...names: string[]
): { variable: string; value: string } | undefined {
  for (const variable of names) {
    const value = env[variable];
    if (value) return { variable, value };
  }
  return undefined;
}

function parseProxy(set: { variable: string; value: string } | undefined): Choice {
  if (!set) return undefined;
  const { variable, value } = set;
  // As Go: a value whose scheme is not one of a proxy's ("proxy.corp:3128", "10.0.0.1:3128") is
  // taken as http://VALUE.
  let url = tryUrl(value);
  // A value that has a scheme and does not parse (`http://u:pw@[::1`) is no URL; read as
  // http://VALUE it would name a host "http".
  const schemed = /^[a-z][a-z0-9+.-]*:\/\//i.test(value);
  if (!url && !schemed) url = tryUrl(`http://${value}`);
  else if (url && !/^(https?|socks5h?):$/.test(url.protocol) && !schemed) url = tryUrl(`http://${value}`);
  if (!url || !url.hostname) {
    return {
      variable,
      error: new NixociError('REGISTRY_UNREACHABLE', `${variable} is not a proxy URL`, {
        hint: `set ${variable} to http://[USER:PASSWORD@]HOST:PORT`,
      }),
    };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return {
      variable,
      error: new NixociError(
        'REGISTRY_UNREACHABLE',
        `${variable}: ${url.protocol.slice(0, -1)} proxies are not supported`,
        {
          hint: `give an HTTP proxy (http://HOST:PORT or https://HOST:PORT) in ${variable}, or unset it`,
        },
      ),
    };
  }
  return { url, variable, shown: showProxy(url) };
}

function tryUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

interface NoProxy {
  readonly all: boolean;
  readonly ips: BlockList;
  /** IP literals with a port: they match on that port only. */
  readonly ipPorts: readonly { readonly ip: BlockList; readonly port: string }[];
  /** `.example.com`; `matchHost`: example.com itself too (the entry had no leading dot). */
  readonly domains: readonly {
    readonly suffix: string;
    readonly port: string;
    readonly matchHost: boolean;
  }[];
}

/** NO_PROXY: a comma list of `*`, IP[:port], [IPv6]:port, CIDR, domain[:port], .domain, *.domain. */
function parseNoProxy(value: string): NoProxy {
  const ips = new BlockList();
  const ipPorts: { ip: BlockList; port: string }[] = [];
  const domains: { suffix: string; port: string; matchHost: boolean }[] = [];
  for (const raw of value.split(',')) {
    const p = raw.trim().toLowerCase();
    if (!p) continue;
    if (p === '*') return { all: true, ips, ipPorts, domains };
    const cidr = /^(.+)\/(\d{1,3})$/.exec(p);
    const cidrType = cidr ? isIP(cidr[1]!) : 0;
    if (cidr && cidrType) {
      const prefix = Number(cidr[2]);
      if (prefix <= (cidrType === 4 ? 32 : 128)) ips.addSubnet(cidr[1]!, prefix, family(cidrType));
      continue;
    }
    const { host, port } = splitHostPort(p);
    if (!host) continue;
    const ipType = isIP(host);
    if (ipType) {
      if (!port) ips.addAddress(host, family(ipType));
      else {
        const ip = new BlockList();
        ip.addAddress(host, family(ipType));
        ipPorts.push({ ip, port });
      }
      continue;
    }
    const name = host.startsWith('*.') ? host.slice(1) : host;
    const matchHost = !name.startsWith('.');
    // WHATWG URL host names are punycode already; an entry in Unicode is brought to the same form.
    const ascii = tryUrl(`http://${matchHost ? name : name.slice(1)}`)?.hostname ?? name;
    domains.push({ suffix: `.${ascii}`, port, matchHost });
  }
  return { all: false, ips, ipPorts, domains };
}

/** `host:port` or `[v6]:port` → parts; anything else is a host without a port. */
function splitHostPort(p: string): { host: string; port: string } {
  const v6 = /^\[([^\]]*)\](?::(\d*))?$/.exec(p);
  if (v6) return { host: v6[1]!, port: v6[2] ?? '' };
  const m = /^([^:]*):(\d*)$/.exec(p);
  if (m) return { host: m[1]!, port: m[2]! };
  return { host: p, port: '' };
}

const family = (type: number): 'ipv4' | 'ipv6' => (type === 4 ? 'ipv4' : 'ipv6');

function useProxy(url: URL, noProxy: NoProxy): boolean {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  if (host === 'localhost') return false;
  const ipType = isIP(host);
  if (ipType && loopback.check(host, family(ipType))) return false;
  if (noProxy.all) return false;
  if (ipType) {
    if (noProxy.ips.check(host, family(ipType))) return false;
    return !noProxy.ipPorts.some((m) => m.port === port && m.ip.check(host, family(ipType)));
  }
  return !noProxy.domains.some(
    (m) =>
      (host.endsWith(m.suffix) || (m.matchHost && host === m.suffix.slice(1))) &&
      (!m.port || m.port === port),
  );
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');
loopback.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');
