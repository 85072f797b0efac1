import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { NixociError, reason } from '../core/errors.js';
import { tlsTrust } from '../core/tls-trust.js';

/**
 * A registry host's certs.d directory, as docker and podman/skopeo keep them: `*.crt` are CAs
 * trusted for that host (besides the system ones), a `NAME.cert` with its `NAME.key` is the client
 * certificate presented to that host only.
 */
export interface HostCerts {
  /** The directory read, or undefined when none exists for the host. */
  readonly dir: string | undefined;
  /** Where a client certificate was looked for (for messages). */
  readonly searched: readonly string[];
  readonly ca: readonly string[];
  readonly client?: { readonly cert: Buffer; readonly key: Buffer; readonly file: string };
}

/** Replaces the default certs.d roots (colon-separated), e.g. for tests. */
export const CERTS_D_ENV = 'NIXOCI_CERTS_D';

/** A certificate or key larger than this is no certificate (they are a few KB). */
const MAX_CERT_FILE = 1 << 20;

/**
 * The roots looked in, in containers/image's order: the user's, then /etc/containers, then
 * /etc/docker. NIXOCI_CERTS_D replaces them all.
 */
export function certsDRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  const own = env[CERTS_D_ENV];
  if (own !== undefined) return own.split(':').filter((r) => r !== '');
  const home = env.HOME || homedir();
  return [
    path.join(home, '.config', 'containers', 'certs.d'),
    '/etc/containers/certs.d',
    '/etc/docker/certs.d',
  ];
}

/**
 * The directory names for `host` as written in an image reference: `HOST:PORT`, and for the
 * default port (`HOST:443` or no port) `HOST` as well.
 */
function dirNames(host: string): string[] {
  const m = /^(.*):443$/.exec(host);
  if (m) return [host, m[1]!];
  return /:\d+$/.test(host) ? [host] : [host, `${host}:443`];
}

/**
 * The certs.d directory of `host`: the first that exists, root by root (as containers/image picks
 * one). `certDir` (--cert-dir) replaces the lookup.
 */
export function hostCerts(
  host: string,
  certDir: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): HostCerts {
  if (certDir !== undefined) {
    const read = readCertDir(certDir, true, 'USAGE');
    return { dir: certDir, searched: [certDir], ...read };
  }
  const searched = certsDRoots(env).flatMap((root) => dirNames(host).map((n) => path.join(root, n)));
  for (const dir of searched) {
    const read = readCertDir(dir, false, 'REGISTRY');
    if (read) return { dir, searched: [dir], ...read };
  }
  return { dir: undefined, searched, ca: [] };
}

type Code = 'USAGE' | 'REGISTRY';

function readCertDir(dir: string, required: true, code: Code): Omit<HostCerts, 'dir' | 'searched'>;
function readCertDir(
  dir: string,
  required: boolean,
  code: Code,
): Omit<HostCerts, 'dir' | 'searched'> | undefined;
/**
 * Reads one directory (undefined when it does not exist and is not `required`). `code`: USAGE for
 * --cert-dir, REGISTRY for a certs.d directory found on the machine.
 */
function readCertDir(
  dir: string,
  required: boolean,
  code: Code,
): Omit<HostCerts, 'dir' | 'searched'> | undefined {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (!required && (errno === 'ENOENT' || errno === 'ENOTDIR')) return undefined;
    throw new NixociError(code, `cannot read the certificate directory ${dir}: ${reason(e)}`, {
      hint: 'give a directory of *.crt CA files and a NAME.cert + NAME.key client pair (as docker’s certs.d)',
    });
  }
  const ca: string[] = [];
  let client: HostCerts['client'];
  for (const name of names) {
    const file = path.join(dir, name);
    if (name.endsWith('.crt')) ca.push(readCertFile(file, code).toString('utf8'));
    else if (name.endsWith('.cert') || name.endsWith('.key')) {
      const base = name.replace(/\.(cert|key)$/, '');
      const other = name.endsWith('.cert') ? `${base}.key` : `${base}.cert`;
      if (!names.includes(other))
        throw new NixociError(code, `${file} has no matching ${other} in ${dir}`, {
          hint: 'a client certificate needs both NAME.cert and NAME.key; add the missing one or remove the other',
        });
      // the first pair (by name) is presented; docker offers them all, and servers take the first
      if (name.endsWith('.cert') && !client)
        client = {
          cert: readCertFile(file, code),
          key: readCertFile(path.join(dir, other), code),
          file,
        };
    }
  }
  return { ca, ...(client ? { client } : {}) };
}

/**
 * A certificate or key file: a regular file of at most 1 MiB. Opened non-blocking, so that a FIFO
 * (or a symlink to a device) is refused at once instead of being waited on for ever.
 */
function readCertFile(file: string, code: Code): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = fstatSync(fd);
    if (!st.isFile())
      throw new NixociError(code, `${file} is not a regular file`, {
        hint: 'a certs.d directory holds certificate and key files only; remove or replace it',
      });
    if (st.size > MAX_CERT_FILE)
      throw new NixociError(code, `${file} is too big for a certificate or key (${st.size} bytes)`, {
        hint: 'a certs.d directory holds PEM certificate and key files only',
      });
    return readFileSync(fd);
  } catch (e) {
    if (e instanceof NixociError) throw e;
    throw new NixociError(code, `cannot read ${file}: ${reason(e)}`, {
      hint: 'check the file’s permissions',
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The registry's own TLS material (certs.d or --cert-dir), for connections to it only. */
export interface RegistryTls {
  /** `host:port` (443 when not written) the material is for. */
  readonly hostPort: string;
  readonly certs: HostCerts;
  /** Tells pools apart: the directory and what was read from it. */
  readonly key: string;
}

/** `host[:port]` of a registry reference as `host:port`. */
export function hostPortOf(host: string): string {
  return /:\d+$/.test(host) ? host.toLowerCase() : `${host.toLowerCase()}:443`;
}

/** Whether a connection (undici's connect options) goes to the registry `tls` is for. */
export function isRegistryConnection(
  opts: { hostname: string; port: string },
  tls: RegistryTls | undefined,
): boolean {
  if (!tls) return false;
  const h = opts.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  const at = tls.hostPort.lastIndexOf(':');
  const host = tls.hostPort.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  return h === host && (opts.port || '443') === tls.hostPort.slice(at + 1);
}

/** TLS options for connections to the registry itself: its certs.d CAs and client pair too. */
export function registryTrust(ca: readonly string[], reg: RegistryTls): ReturnType<typeof tlsTrust> {
  const c = reg.certs.client;
  return tlsTrust([...ca, ...reg.certs.ca], c ? { cert: c.cert, key: c.key } : {});
}
