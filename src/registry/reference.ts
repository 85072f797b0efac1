import { isDigest, type Digest } from '../core/digest.js';
import { NixociError } from '../core/errors.js';

/**
 * A parsed image reference, following docker/distribution's reference grammar: `registry` is the
 * name the user wrote (normalised: `docker.io` for Docker Hub), `host` is where its API lives.
 */
export interface ImageReference {
  /** `docker.io`, `ghcr.io`, `127.0.0.1:5000`, `[::1]:5000`; used for credentials and messages. */
  readonly registry: string;
  /** Host (and port) serving `/v2/`: `registry-1.docker.io` for Docker Hub, else `registry`. */
  readonly host: string;
  /** `library/alpine`, `org/app`. */
  readonly repository: string;
  /** Absent only when a digest was given without a tag. */
  readonly tag?: string;
  readonly digest?: Digest;
}

export const DOCKER_HUB = 'docker.io';
export const DOCKER_HUB_API = 'registry-1.docker.io';
export const DEFAULT_TAG = 'latest';

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const PORT = /^[0-9]{1,5}$/;
/** The longest repository name, counted in full (`docker.io/library/app`), that registries and engines take. */
export const MAX_NAME = 255;

const HINT =
  'references look like [docker://]HOST[:PORT]/REPO[:TAG][@sha256:DIGEST], e.g. docker://ghcr.io/org/app:v1';

function invalid(input: string, why: string, hint = HINT): never {
  throw new NixociError('REFERENCE_INVALID', `image reference ${JSON.stringify(input)} is invalid: ${why}`, {
    hint,
  });
}

/** A tag as registries and engines take it: a word character, then up to 127 of `\w`, `.`, `-`. */
export function isTag(t: string): boolean {
  return TAG.test(t);
}

/**
 * A repository name as Docker shows it (reference.FamiliarName): without the `docker.io/` (or
 * `index.docker.io/`) domain, and without `library/` before an official image's single component.
 */
export function familiarName(name: string): string {
  const rest = name.replace(/^(?:index\.)?docker\.io\//, '');
  return /^library\/[^/]+$/.test(rest) ? rest.slice('library/'.length) : rest;
}

/** A repository name in full, as engines count its length: `docker.io/library/app` for `app`. */
export function fullName(name: string): string {
  const slash = name.indexOf('/');
  if (slash > 0 && isRegistryHost(name.slice(0, slash))) return name;
  return `${DOCKER_HUB}/${slash > 0 ? '' : 'library/'}${name}`;
}

/**
 * Whether the first component of a reference (before its first `/`) names a registry, as docker
 * reads it: it has a `.` or a `:` (a port), is `localhost`, or is an IPv6 address in brackets.
 */
export function isRegistryHost(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[');
}

/**
 * Parses a reference as `parseReference` does, first refusing one that names a registry and no
 * repository: `localhost:5000`, `127.0.0.1:5000`, `registry.example.com:443`. Docker's grammar reads
 * those as an image of Docker Hub (`docker.io/library/localhost`, tag `5000`), which is never what
 * was meant where an image to push or read is asked for.
 */
export function parseImageReference(input: string): ImageReference {
  const s = input.startsWith('docker://') ? input.slice('docker://'.length) : input;
  const m = /^(localhost|\[[0-9a-fA-F:.]+\]|[^/:@]*\.[^/:@]*):(\d{1,5})$/.exec(s);
  if (m)
    invalid(
      input,
      'it names a registry, not a repository',
      `write ${m[1]}:${m[2]}/REPO[:TAG] (as it stands it would be docker.io/library/${m[1]}, tag ${m[2]})`,
    );
  return parseReference(input);
}

/**
 * Parses `docker://HOST[:PORT]/REPO[:TAG][@DIGEST]` or a bare reference the way docker and skopeo
 * do: the first component is a registry when it has a `.` or `:` or is `localhost`, Docker Hub
 * otherwise (with `library/` for single names); no tag and no digest means `latest`.
 */
export function parseReference(input: string): ImageReference {
  // USER:PASSWORD@HOST/… (an @ followed by a registry host and a /, or by a registry host alone; a
  // digest's @ is followed by ALGORITHM:HEX, without a /), with or without a scheme
  // (`https://USER:PASSWORD@HOST/app`, pasted from a URL), the password possibly with a / of its
  // own: refused before anything else is said about the reference, so that no message echoes it.
  const masked = input.replace(
    /^((?:[a-z][a-z0-9+.-]*:\/\/)*).*@(?=[^@]*\/|(?:localhost|[^/:@]*\.[^/:@]*)(?::\d+)?$)/i,
    '$1***@',
  );
  if (masked !== input)
    invalid(
      masked,
      'credentials do not go in an image reference',
      'give them with --creds USER:PASSWORD, NIXOCI_REGISTRY_USER and NIXOCI_REGISTRY_PASSWORD, or `nixoci login`',
    );
  let s = input;
  if (s.startsWith('docker://')) s = s.slice('docker://'.length);
  // A URL or another transport where a registry reference belongs (`push … oci:./dir`,
  // `--cache-from https://host/app`) would otherwise be read as HOST:PORT with a bad port.
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s)?.[1];
  if (scheme && /^https?$/i.test(scheme))
    invalid(
      input,
      `a registry reference has no ${scheme}://`,
      'write HOST[:PORT]/REPO[:TAG]; nixoci speaks plain HTTP to loopback hosts and to those given with --insecure-registry HOST, HTTPS to the others',
    );
  if (scheme) invalid(input, `unsupported transport ${scheme}://`);
  const transport =
    /^(oci|oci-archive|docker-archive|docker-daemon|podman|containers-storage|dir):(.*)$/.exec(s);
  if (transport && /[/:]/.test(transport[2]!) && !/^[0-9]{1,5}\//.test(transport[2]!))
    invalid(
      input,
      `${transport[1]}: is not a registry`,
      'this takes a registry image, [docker://]HOST[:PORT]/REPO[:TAG]; write other destinations with nixoci build --to',
    );
  if (s === '') invalid(input, 'empty');
  if (/\s/.test(s)) invalid(input, 'contains whitespace');

  let digest: Digest | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    const d = s.slice(at + 1);
    if (!isDigest(d)) {
      invalid(
        input,
        `${JSON.stringify(d)} is not a sha256 digest`,
        'digests look like sha256:<64 lowercase hex digits>',
      );
    }
    digest = d;
    s = s.slice(0, at);
  }

  let registry = DOCKER_HUB;
  let path = s;
  /** Where the repository path starts in `s`. */
  let pathAt = 0;
  const slash = s.indexOf('/');
  if (slash >= 0) {
    const first = s.slice(0, slash);
    if (isRegistryHost(first)) {
      registry = parseDomain(input, first);
      path = s.slice(slash + 1);
      pathAt = slash + 1;
    }
  }

  let tag: string | undefined;
  const colon = path.lastIndexOf(':');
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag))
      invalid(
        input,
        `tag ${JSON.stringify(tag)} is invalid`,
        'tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -',
      );
  }

  if (path === '') invalid(input, 'no repository name');
  if (path !== path.toLowerCase()) {
    // the whole reference to type instead, not just its repository
    const scheme = input.startsWith('docker://') ? 'docker://' : '';
    const lower = `${scheme}${s.slice(0, pathAt)}${path.toLowerCase()}${tag === undefined ? '' : `:${tag}`}${digest === undefined ? '' : `@${digest}`}`;
    invalid(input, 'repository names must be lowercase', `use ${JSON.stringify(lower)}`);
  }
  for (const c of path.split('/')) {
    if (!COMPONENT.test(c)) invalid(input, `repository path component ${JSON.stringify(c)} is invalid`);
  }
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (registry.length + 1 + path.length > MAX_NAME) invalid(input, `name longer than ${MAX_NAME} characters`);

  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return {
    registry,
    host: registry === DOCKER_HUB ? DOCKER_HUB_API : registry,
    repository: path,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

function parseDomain(input: string, d: string): string {
  let host = d;
  let port: string | undefined;
  if (d.startsWith('[')) {
    const end = d.indexOf(']');
    if (end < 0) invalid(input, `registry ${JSON.stringify(d)} has an unclosed "["`);
    host = d.slice(0, end + 1);
    const rest = d.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) invalid(input, `registry ${JSON.stringify(d)} is invalid`);
      port = rest.slice(1);
    }
    if (!/^\[[0-9a-fA-F:.]+\]$/.test(host))
      invalid(input, `registry ${JSON.stringify(d)} is not a valid IPv6 address`);
  } else {
    const c = d.indexOf(':');
    if (c >= 0) {
      host = d.slice(0, c);
      port = d.slice(c + 1);
    }
    if (host === '' || !host.split('.').every((l) => DOMAIN_LABEL.test(l))) {
      invalid(input, `registry host ${JSON.stringify(host)} is invalid`);
    }
  }
  if (port !== undefined && (!PORT.test(port) || Number(port) > 65535 || Number(port) === 0)) {
    invalid(input, `registry port ${JSON.stringify(port)} is invalid`);
  }
  // Host names are case-insensitive; normalise so credentials and mounts match whatever the spelling.
  const h = host.toLowerCase();
  const normal = h === 'index.docker.io' || h === 'registry-1.docker.io' ? DOCKER_HUB : h;
  return port !== undefined ? `${normal}:${port}` : normal;
}

/** `HOST/REPO[:TAG][@DIGEST]`, the canonical form (Docker Hub spelled `docker.io`). */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The same repository with another tag and no digest. */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!TAG.test(tag))
    invalid(
      tag,
      `tag ${JSON.stringify(tag)} is invalid`,
      'tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -',
    );
  return { registry: ref.registry, host: ref.host, repository: ref.repository, tag };
}

/** Hosts talked to over plain HTTP without being asked: loopback only. */
export function isLoopbackHost(host: string): boolean {
  const h = hostname(host);
  return h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The host name of `host[:port]` (IPv6 keeps its brackets). */
export function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const c = host.lastIndexOf(':');
  return c >= 0 ? host.slice(0, c) : host;
}
