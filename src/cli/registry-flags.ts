import { NixociError } from '../core/errors.js';
import { parseCredsFlag } from '../registry/auth/credentials.js';
import { cacheDirOf } from '../layer/cache.js';
import {
  isRegistryHost,
  parseImageReference,
  parseReference,
  type ImageReference,
} from '../registry/reference.js';
import { RegistryTarget } from '../registry/registry-target.js';
import { caFor } from '../registry/transport.js';
import { hostCerts } from '../registry/certs-d.js';
import { asUsage, checkTagFlag, intFlag, usage, type OptionSpec } from './flags.js';
import type { TargetChoice, TargetFlags } from './targets.js';

/** Flags to reach a registry at all: what reading an image (`inspect`, `diff`) needs too. */
export const registryAccessOptions = {
  creds: { type: 'string' },
  'insecure-registry': { type: 'string', multiple: true },
  'ca-file': { type: 'string' },
  'cert-dir': { type: 'string' },
  timeout: { type: 'string' },
} as const satisfies OptionSpec;

/** Flags of a registry destination (`nixoci push`, and `nixoci build --to docker://…`). */
export const registryOptions = {
  'mount-from': { type: 'string', multiple: true },
  ...registryAccessOptions,
  concurrency: { type: 'string' },
} as const satisfies OptionSpec;

/** How a registry is reached (login takes these, and its credentials otherwise). */
export const HELP_REGISTRY_CONNECTION_FLAGS = `  --insecure-registry HOST      talk plain HTTP to HOST, as to loopback hosts, unless it answers
                                that it speaks only HTTPS (repeatable)
  --ca-file FILE                trust the CA certificates in this PEM file too
  --cert-dir DIR                the registry's *.crt CAs and NAME.cert + NAME.key client certificate
                                from DIR, instead of its certs.d directory (docs/registry.md)
  --timeout SECONDS             how long the registry may stay silent before a request is retried
                                (default 300)
`;

export const HELP_REGISTRY_ACCESS_FLAGS = `  --creds USER:PASSWORD         credentials (else NIXOCI_REGISTRY_USER/NIXOCI_REGISTRY_PASSWORD,
                                $REGISTRY_AUTH_FILE, the docker config and its credential helpers,
                                podman's auth.json)
${HELP_REGISTRY_CONNECTION_FLAGS}`;

export const HELP_REGISTRY_FLAGS = `Registry:
  --tag TAG                     one more tag for the same manifest (repeatable; push only)
  --cache-from REF              an image whose annotated layers may be reused without reading the
                                store, besides the target tag itself (repeatable; push only)
  --mount-from REPO             a repository on the same registry to mount layers from, REPO or
                                HOST/REPO (repeatable)
${HELP_REGISTRY_ACCESS_FLAGS}  --concurrency N               blobs in flight at once, 1–64 (default 4; of those, at most 2 are
                                being made from the store at a time, the rest wait for the registry)
`;

const strings = (v: TargetFlags[string]): string[] =>
  Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];

/**
 * `[docker://]HOST/REPO[:TAG]` as the user wrote it (errors quote it so) and the registry flags →
 * a RegistryTarget.
 */
export function registryTarget(command: string, ref: string, flags: TargetFlags): TargetChoice {
  const reference = asUsage(command, () => parseImageReference(ref));
  const cacheFrom = asUsage(command, () => strings(flags['cache-from']).map((c) => parseImageReference(c)));
  const tags = strings(flags.tag);
  for (const t of tags) checkTagFlag(command, t);
  const creds = credsFlag(command, flags);
  const concurrency = intFlag(
    command,
    'concurrency',
    typeof flags.concurrency === 'string' ? flags.concurrency : undefined,
    1,
    64,
  );
  const caFile = caFileFlag(command, flags);
  const certDir = certDirFlag(command, flags);
  const timeoutMs = timeoutFlag(command, flags);
  const target = new RegistryTarget(reference, {
    tags,
    mountFrom: strings(flags['mount-from']).map((m) => mountSource(command, m, reference)),
    cacheFrom,
    insecureRegistries: insecureHosts(command, flags),
    cacheDir: cacheDirOf(flags),
    ...(creds ? { creds } : {}),
    ...(caFile ? { caFile } : {}),
    ...(certDir ? { certDir } : {}),
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
  // gzip level 1: accepted by every registry and engine, and cheap (DESIGN.md).
  return { target, defaultCompression: 'gzip' };
}

/**
 * A `--mount-from` value as a repository of the push's registry: `team/app`, or with the registry
 * written out as in `--cache-from` (`127.0.0.1:5000/team/app`). A repository of another registry,
 * a tag or an invalid name is a usage error (a mount can only come from the same registry).
 */
function mountSource(command: string, value: string, target: ImageReference): string {
  const hasHost = value.includes('/') && isRegistryHost(value.split('/')[0]!);
  let parsed: ImageReference;
  try {
    // parsed first: a USER:PASSWORD@ in it is refused without being echoed
    parsed = parseReference(hasHost ? value : `${target.registry}/${value}`);
  } catch (e) {
    if (e instanceof NixociError) throw usage(command, `--mount-from: ${e.message}`);
    throw e;
  }
  const last = value.slice(value.lastIndexOf('/') + 1);
  if (last.includes(':') || last.includes('@'))
    throw usage(
      command,
      `--mount-from ${value}: names an image; give its repository (leave out the tag or digest)`,
    );
  if (parsed.registry !== target.registry)
    throw usage(
      command,
      `--mount-from ${value}: a mount only comes from the same registry (the push goes to ${target.registry})`,
    );
  return parsed.repository;
}

/** `--creds USER:PASSWORD`, or undefined when not given; an error names the command as others do. */
function credsFlag(command: string, flags: TargetFlags): { username: string; password: string } | undefined {
  const creds = flags.creds;
  return typeof creds === 'string' ? asUsage(command, () => parseCredsFlag(creds)) : undefined;
}

/** `--ca-file FILE`, checked to hold a PEM certificate; an error names the command as others do. */
function caFileFlag(command: string, flags: TargetFlags): string | undefined {
  const caFile = flags['ca-file'];
  if (typeof caFile !== 'string' || caFile === '') return undefined;
  asUsage(command, () => caFor(caFile));
  return caFile;
}

/** `--cert-dir DIR`, checked to be a readable certificate directory (a pair complete, files regular). */
function certDirFlag(command: string, flags: TargetFlags): string | undefined {
  const dir = flags['cert-dir'];
  if (typeof dir !== 'string') return undefined;
  if (dir === '') throw usage(command, '--cert-dir: give a directory');
  asUsage(command, () => hostCerts('', dir));
  return dir;
}

/** `--timeout SECONDS` in milliseconds, or undefined when not given. */
function timeoutFlag(command: string, flags: TargetFlags): number | undefined {
  const s = intFlag(
    command,
    'timeout',
    typeof flags.timeout === 'string' ? flags.timeout : undefined,
    1,
    86_400,
  );
  return s === undefined ? undefined : s * 1000;
}

/**
 * --insecure-registry values as hosts compare: `http://Host:5000/` is taken as `host:5000` (it
 * matched no registry, so the flag did nothing); a value with a path is refused.
 */
function insecureHosts(command: string, flags: TargetFlags): string[] {
  return strings(flags['insecure-registry']).map((v) => {
    const h = v
      .replace(/^https?:\/\//i, '')
      .replace(/\/+$/, '')
      .toLowerCase();
    if (h === '' || h.includes('/'))
      throw usage(
        command,
        `--insecure-registry ${v}: give a registry HOST or HOST:PORT, e.g. registry.local:5000`,
      );
    return h;
  });
}

/** The registry access flags as client options (for reading an image). */
export function registryAccess(
  flags: TargetFlags,
  command: string,
): {
  creds?: { username: string; password: string };
  insecureRegistries: string[];
  caFile?: string;
  certDir?: string;
  timeoutMs?: number;
} {
  const caFile = caFileFlag(command, flags);
  const certDir = certDirFlag(command, flags);
  const timeoutMs = timeoutFlag(command, flags);
  const creds = credsFlag(command, flags);
  return {
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(creds ? { creds } : {}),
    insecureRegistries: insecureHosts(command, flags),
    ...(caFile ? { caFile } : {}),
    ...(certDir ? { certDir } : {}),
  };
}
