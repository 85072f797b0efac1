import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { digestHex, sha256Digest } from '../../core/digest.js';
import { NixociError, reason } from '../../core/errors.js';

export type EngineKind = 'docker' | 'podman';

export interface TlsFiles {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly verify: boolean;
}

/** Where an engine's API listens, and which setting named it (for error messages). */
export type Endpoint =
  | { readonly kind: 'unix'; readonly socketPath: string; readonly address: string; readonly source: string }
  | {
      readonly kind: 'tcp';
      readonly host: string;
      readonly port: number;
      readonly tls: TlsFiles | undefined;
      readonly address: string;
      readonly source: string;
    }
  | {
      readonly kind: 'ssh';
      /** `[user@]host`; the port separately, for `ssh -p`. */
      readonly destination: string;
      readonly port: number | undefined;
      /** Socket path on the remote side, when the URL gave one (`ssh://host/run/docker.sock`). */
      readonly remoteSocket: string | undefined;
      readonly address: string;
      readonly source: string;
    };

export interface DiscoverOptions {
  readonly engine: EngineKind;
  /** `--host`: wins over everything else. */
  readonly host?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly home?: string;
}

const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/**
 * The engine endpoints to try, in order, the way the docker CLI picks one: `--host`, then
 * `DOCKER_HOST`, then the context named by `DOCKER_CONTEXT` or the config's `currentContext`, then
 * the default socket (and the rootless one). An explicit setting yields exactly one endpoint: the
 * user asked for that engine and no other. For Podman: `--host`, `CONTAINER_HOST`, the rootless
 * socket under `$XDG_RUNTIME_DIR`, then the rootful one.
 */
export function discoverEndpoints(o: DiscoverOptions): Endpoint[] {
  const env = o.env ?? process.env;
  const home = o.home ?? homedir();
  if (o.host) return [parseHost(o.host, '--host', env, home)];
  if (o.engine === 'podman') {
    if (env.CONTAINER_HOST) return [parseHost(env.CONTAINER_HOST, 'CONTAINER_HOST', env, home)];
    const out: Endpoint[] = [];
    if (env.XDG_RUNTIME_DIR) out.push(unix(join(env.XDG_RUNTIME_DIR, 'podman', 'podman.sock'), 'default'));
    out.push(unix('/run/podman/podman.sock', 'default'));
    return out;
  }
  if (env.DOCKER_HOST) return [parseHost(env.DOCKER_HOST, 'DOCKER_HOST', env, home)];
  const ctx = contextEndpoint(env, home);
  if (ctx) return [ctx];
  const out: Endpoint[] = [unix(DEFAULT_DOCKER_SOCKET, 'default')];
  if (env.XDG_RUNTIME_DIR) out.push(unix(join(env.XDG_RUNTIME_DIR, 'docker.sock'), 'default (rootless)'));
  return out;
}

/**
 * Parses `unix://PATH`, `tcp://HOST:PORT`, `ssh://[USER@]HOST[:PORT][/SOCKET]`, a bare path, or a
 * bare `HOST:PORT` (tcp, as the docker CLI takes it).
 */
export function parseHost(
  host: string,
  source: string,
  env: NodeJS.ProcessEnv = process.env,
  home = homedir(),
): Endpoint {
  const bad = (why: string): never => {
    throw new NixociError(
      // a flag the user typed is a usage error; DOCKER_HOST or a docker context is configuration
      source === '--host' ? 'USAGE' : 'TARGET_INVALID',
      `${source}: cannot use engine address ${JSON.stringify(host)}: ${why}`,
      {
        hint: 'use unix:///path/to/docker.sock, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]',
      },
    );
  };
  if (host.startsWith('/')) return unix(host, source);
  if (host.startsWith('unix://')) {
    const p = host.slice('unix://'.length);
    if (!p.startsWith('/')) bad('the socket path must be absolute');
    return unix(p, source);
  }
  // Without a scheme the docker CLI takes HOST:PORT (or :PORT, on localhost) as tcp://.
  const full = host.includes('://') ? host : `tcp://${host.startsWith(':') ? 'localhost' : ''}${host}`;
  let url: URL;
  try {
    url = new URL(full);
  } catch {
    return bad('not a URL');
  }
  if (url.protocol === 'tcp:' || url.protocol === 'http:' || url.protocol === 'https:') {
    const tls = tlsFromEnv(env, home, url.protocol === 'https:');
    const port = url.port ? Number(url.port) : tls ? 2376 : 2375;
    const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!hostname) bad('no host name');
    return { kind: 'tcp', host: hostname, port, tls, address: `tcp://${url.host || hostname}`, source };
  }
  if (url.protocol === 'ssh:') {
    if (!url.hostname) bad('no host name');
    const user = url.username ? `${decodeURIComponent(url.username)}@` : '';
    if (url.password) bad('passwords in ssh:// URLs are not supported; use an ssh key or agent');
    return {
      kind: 'ssh',
      destination: `${user}${url.hostname}`,
      port: url.port ? Number(url.port) : undefined,
      remoteSocket: url.pathname && url.pathname !== '/' ? url.pathname : undefined,
      address: `ssh://${user}${url.host}${url.pathname === '/' ? '' : url.pathname}`,
      source,
    };
  }
  return bad(`unsupported scheme ${url.protocol}`);
}

function unix(socketPath: string, source: string): Endpoint {
  return { kind: 'unix', socketPath, address: `unix://${socketPath}`, source };
}

/** TLS settings from DOCKER_TLS_VERIFY / DOCKER_TLS / DOCKER_CERT_PATH, or undefined for plain TCP. */
function tlsFromEnv(env: NodeJS.ProcessEnv, home: string, forced: boolean): TlsFiles | undefined {
  const verify = !!env.DOCKER_TLS_VERIFY;
  if (!verify && !env.DOCKER_TLS && !forced) return undefined;
  const dir = env.DOCKER_CERT_PATH || join(dockerConfigDir(env, home));
  return tlsFiles(dir, verify);
}

function tlsFiles(dir: string, verify: boolean): TlsFiles {
  const f = (n: string): string | undefined => (existsSync(join(dir, n)) ? join(dir, n) : undefined);
  const files = { ca: f('ca.pem'), cert: f('cert.pem'), key: f('key.pem') };
  return { ...files, verify };
}

function dockerConfigDir(env: NodeJS.ProcessEnv, home: string): string {
  return env.DOCKER_CONFIG || join(home, '.docker');
}

const configSchema = z.object({ currentContext: z.string().optional() }).passthrough();
const metaSchema = z.object({
  Name: z.string(),
  Endpoints: z.object({
    docker: z.object({ Host: z.string(), SkipTLSVerify: z.boolean().optional() }).passthrough().optional(),
  }),
});

/** The endpoint of the current docker context, or undefined for the `default` context. */
function contextEndpoint(env: NodeJS.ProcessEnv, home: string): Endpoint | undefined {
  const dir = dockerConfigDir(env, home);
  let name = env.DOCKER_CONTEXT;
  let source = 'DOCKER_CONTEXT';
  if (!name) {
    const file = join(dir, 'config.json');
    if (!existsSync(file)) return undefined;
    try {
      name = configSchema.parse(JSON.parse(readFileSync(file, 'utf8'))).currentContext;
    } catch (e) {
      throw new NixociError('DAEMON_UNREACHABLE', `cannot read the docker CLI config ${file}: ${reason(e)}`, {
        hint: 'fix the file, or name the engine with --host or DOCKER_HOST',
      });
    }
    source = `currentContext in ${file}`;
  }
  if (!name || name === 'default') return undefined;
  const id = digestHex(sha256Digest(name));
  const metaFile = join(dir, 'contexts', 'meta', id, 'meta.json');
  let meta: z.infer<typeof metaSchema>;
  try {
    meta = metaSchema.parse(JSON.parse(readFileSync(metaFile, 'utf8')));
  } catch (e) {
    throw new NixociError(
      'DAEMON_UNREACHABLE',
      `docker context ${JSON.stringify(name)} (${source}): cannot read ${metaFile}: ${reason(e)}`,
      {
        hint: 'list contexts with `docker context ls`, or name the engine with --host or DOCKER_HOST',
      },
    );
  }
  const host = meta.Endpoints.docker?.Host;
  if (!host) {
    throw new NixociError(
      'DAEMON_UNREACHABLE',
      `docker context ${JSON.stringify(name)} has no docker endpoint`,
      {
        hint: 'name the engine with --host or DOCKER_HOST',
      },
    );
  }
  const ep = parseHost(host, `docker context ${JSON.stringify(name)}`, env, home);
  if (ep.kind !== 'tcp') return ep;
  const tlsDir = join(dir, 'contexts', 'tls', id, 'docker');
  const tls = existsSync(tlsDir) ? tlsFiles(tlsDir, !meta.Endpoints.docker?.SkipTLSVerify) : ep.tls;
  return { ...ep, tls };
}
