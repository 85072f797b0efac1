import { statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { NixociError, reason } from '../../core/errors.js';
import { readRegularFile } from '../../core/read-small-file.js';
import { DOCKER_HUB } from '../reference.js';
import { runCredentialHelper, type HelperOptions } from './cred-helper.js';

/** What a registry may be given. Never printed: use `describeSource` for messages. */
export interface Credentials {
  readonly username?: string;
  readonly password?: string;
  /** OAuth2 refresh token (`identitytoken` in the docker config); exchanged at the token realm. */
  readonly identityToken?: string;
  /** A bearer token to send as is (`registrytoken`). */
  readonly registryToken?: string;
}

/** Where credentials came from, for `--verbose` (a file or helper name, never a value). */
export interface ResolvedCredentials {
  readonly credentials: Credentials;
  readonly source: string;
}

export interface CredentialOptions {
  /** `--creds USER:PASS`, already split. */
  readonly creds?: { readonly username: string; readonly password: string };
  /** What `creds` are called in `--verbose` lines and hints (default `--creds`). */
  readonly credsSource?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Ends a credential helper's run at once (Ctrl-C). */
  readonly signal?: AbortSignal;
  /** False: credential helpers are not run, only files and variables read (logout's check). */
  readonly helpers?: boolean;
  /**
   * Told of an auth file that exists but cannot be read (a root-owned ~/.docker/config.json after
   * `sudo docker login`): passed over as docker does, but named if the registry then says 401.
   */
  readonly onUnreadable?: (file: string) => void;
}

const authEntry = z.object({
  auth: z.string().optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  identitytoken: z.string().optional(),
  registrytoken: z.string().optional(),
});
export const configFile = z.object({
  auths: z.record(authEntry).optional(),
  credHelpers: z.record(z.string()).optional(),
  credsStore: z.string().optional(),
});
export type ConfigFile = z.infer<typeof configFile>;

/** Docker keeps Docker Hub's credentials under its v1 index URL, and asks helpers for that URL. */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

/**
 * Finds credentials for `registry` (as in `ImageReference.registry`), first match wins:
 * `--creds`; NIXOCI_REGISTRY_USER + NIXOCI_REGISTRY_PASSWORD; `$REGISTRY_AUTH_FILE`; the docker
 * config (`$DOCKER_CONFIG/config.json` or ~/.docker/config.json: credHelpers, then credsStore,
 * then auths); podman's `$XDG_RUNTIME_DIR/containers/auth.json` (`/run/containers/UID/auth.json`
 * without XDG_RUNTIME_DIR), then `$XDG_CONFIG_HOME/containers/auth.json` (~/.config). Undefined
 * means anonymous.
 */
export async function resolveCredentials(
  registry: string,
  repository: string,
  options: CredentialOptions = {},
): Promise<ResolvedCredentials | undefined> {
  const env = options.env ?? process.env;
  if (options.creds) return { credentials: { ...options.creds }, source: options.credsSource ?? '--creds' };
  const user = env.NIXOCI_REGISTRY_USER;
  const pass = env.NIXOCI_REGISTRY_PASSWORD;
  if (user && pass) {
    return {
      credentials: { username: user, password: pass },
      source: 'NIXOCI_REGISTRY_USER/NIXOCI_REGISTRY_PASSWORD',
    };
  }
  // One of the two alone is a mistake (a secret missing in CI), not a wish to push anonymously.
  // An empty one is missing too: GitHub Actions gives `${{ secrets.X }}` of no such secret as ''.
  if (user || pass) {
    const [set, unset] = user
      ? ['NIXOCI_REGISTRY_USER', 'NIXOCI_REGISTRY_PASSWORD']
      : ['NIXOCI_REGISTRY_PASSWORD', 'NIXOCI_REGISTRY_USER'];
    const missing = env[unset] === '' ? 'is empty' : 'is not';
    throw new NixociError(
      'CREDENTIALS',
      `cannot use credentials for ${registry}: ${set} is set but ${unset} ${missing}`,
      {
        hint: `set ${unset} too (a CI secret that does not exist is empty), or unset ${set}`,
      },
    );
  }

  const helper: HelperOptions | undefined =
    options.helpers === false ? undefined : { env, ...(options.signal ? { signal: options.signal } : {}) };
  const fromConfig = (file: string, podman: boolean): Promise<ResolvedCredentials | undefined> =>
    fromConfigFile(file, registry, repository, podman, helper, options.onUnreadable);
  if (env.REGISTRY_AUTH_FILE) {
    const found = await fromConfig(env.REGISTRY_AUTH_FILE, true);
    if (found) return found;
  }
  const fromDocker = await fromConfig(dockerConfigFile(env), false);
  if (fromDocker) return fromDocker;
  // Where podman, skopeo and buildah log in (containers-auth.json(5)): the runtime directory's
  // file (/run/containers/UID without XDG_RUNTIME_DIR, as for root), then the persistent one.
  const primary = env.XDG_RUNTIME_DIR
    ? join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json')
    : `/run/containers/${process.getuid?.() ?? 0}/auth.json`;
  const configDir = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  for (const file of [primary, join(configDir, 'containers', 'auth.json')]) {
    const found = await fromConfig(file, true);
    if (found) return found;
  }
  return undefined;
}

/** `$DOCKER_CONFIG/config.json`, else ~/.docker/config.json. */
export function dockerConfigFile(env: NodeJS.ProcessEnv): string {
  return join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json');
}

/**
 * The file `nixoci login` writes and `logout` edits: the first one the lookup above reads,
 * `$REGISTRY_AUTH_FILE` when set (as podman and skopeo log in), else the docker config.
 */
export function loginFile(env: NodeJS.ProcessEnv): string {
  return env.REGISTRY_AUTH_FILE || dockerConfigFile(env);
}

/** Splits `--creds USER:PASS` (the password may contain colons). */
export function parseCredsFlag(s: string): { username: string; password: string } {
  const c = s.indexOf(':');
  if (c <= 0) {
    throw new NixociError('USAGE', '--creds must be USER:PASSWORD', {
      hint: 'a colon goes between the user name and the password, or set NIXOCI_REGISTRY_USER and NIXOCI_REGISTRY_PASSWORD instead',
    });
  }
  return { username: s.slice(0, c), password: s.slice(c + 1) };
}

async function fromConfigFile(
  file: string,
  registry: string,
  repository: string,
  podman: boolean,
  helperOptions: HelperOptions | undefined,
  onUnreadable: ((file: string) => void) | undefined,
): Promise<ResolvedCredentials | undefined> {
  const config = readConfig(file, onUnreadable);
  if (!config) return undefined;
  const serverUrl = registry === DOCKER_HUB ? DOCKER_HUB_KEY : registry;
  const helper = helperFor(config, registry);
  if (helper && helperOptions) {
    const c = await runCredentialHelper(helper, serverUrl, registry, helperOptions);
    if (c) return { credentials: c, source: `docker-credential-${helper}` };
  }
  const auths = config.auths ?? {};
  // podman allows entries for a namespace or repository (`host/org`): the longest match wins.
  const candidates = podman ? namespaces(registry, repository) : [registry];
  // A key spelled exactly as `docker login` (or `podman login`) writes it comes first, as docker
  // and containers/image look it up: a stale `https://host/v1/` entry must not shadow it.
  for (const key of podman ? candidates : [serverUrl]) {
    const entry = Object.hasOwn(auths, key) ? auths[key] : undefined;
    const c = entry && fromEntry(entry, file, key);
    if (c) return { credentials: c, source: file };
  }
  for (const want of candidates) {
    for (const [key, entry] of Object.entries(auths)) {
      if (normaliseKey(key, podman) !== want) continue;
      const c = fromEntry(entry, file, key);
      if (c) return { credentials: c, source: file };
    }
  }
  return undefined;
}

/** Larger than any auth file of many registries, small enough to refuse /dev/zero at once. */
const MAX_CONFIG_BYTES = 4 << 20;

function readConfig(
  file: string,
  onUnreadable: ((file: string) => void) | undefined,
): ConfigFile | undefined {
  let text: string;
  try {
    text = readRegularFile(file, MAX_CONFIG_BYTES);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'EACCES' || code === 'EPERM') {
      // Only a file that is there (stat needs no read access) but not readable: a dir this user
      // may not search (/run/containers/UID of another user) holds nothing to name.
      if (exists(file)) onUnreadable?.(file);
      return undefined;
    }
    throw new NixociError('CREDENTIALS', `cannot read credentials from ${file}: ${reason(e)}`, {
      hint: 'make it a regular docker/podman auth file, or remove it, or pass --creds',
    });
  }
  try {
    return configFile.parse(JSON.parse(text));
  } catch {
    throw new NixociError(
      'CREDENTIALS',
      `cannot read credentials from ${file}: not a valid docker/podman auth file`,
      {
        hint: 'fix or remove the file, or pass --creds',
      },
    );
  }
}

function fromEntry(e: z.infer<typeof authEntry>, file: string, key: string): Credentials | undefined {
  if (e.identitytoken) return { identityToken: e.identitytoken };
  if (e.registrytoken) return { registryToken: e.registrytoken };
  if (e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const c = decoded.indexOf(':');
    if (c <= 0) {
      throw new NixociError(
        'CREDENTIALS',
        `cannot read credentials from ${file}: the "auth" of ${key} is not base64 of USER:PASSWORD`,
        {
          hint: `run nixoci login ${normaliseKey(key, false)} again`,
        },
      );
    }
    return { username: decoded.slice(0, c), password: decoded.slice(c + 1) };
  }
  if (e.username && e.password !== undefined) return { username: e.username, password: e.password };
  return undefined;
}

function exists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch {
    return false;
  }
}

/** The credential helper a config names for `registry`: its credHelpers entry, else credsStore. */
export function helperFor(config: ConfigFile, registry: string): string | undefined {
  for (const [k, v] of Object.entries(config.credHelpers ?? {}))
    if (normaliseKey(k, false) === registry) return v;
  return config.credsStore;
}

/** `https://index.docker.io/v1/` → `docker.io`; `http://Host:5000/v2/` → `host:5000`. */
export function normaliseKey(key: string, keepPath: boolean): string {
  let k = key.replace(/^[a-z]+:\/\//i, '');
  const slash = k.indexOf('/');
  let host = slash >= 0 ? k.slice(0, slash) : k;
  let path = slash >= 0 ? k.slice(slash) : '';
  host = host.toLowerCase();
  if (host === 'index.docker.io' || host === 'registry-1.docker.io') host = DOCKER_HUB;
  path = path.replace(/\/+$/, '').replace(/^\/v[12]$/, '');
  k = keepPath ? host + path : host;
  return k;
}

/** `reg/a/b/c` → [`reg/a/b/c`, `reg/a/b`, `reg/a`, `reg`]. */
function namespaces(registry: string, repository: string): string[] {
  const parts = repository.split('/');
  const out: string[] = [];
  for (let i = parts.length; i > 0; i--) out.push(`${registry}/${parts.slice(0, i).join('/')}`);
  out.push(registry);
  return out;
}
