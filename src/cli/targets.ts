import type { ImageTarget } from '../image/target.js';
import type { Compression } from '../layer/compress.js';
import { cacheDirOf } from '../layer/cache.js';
import { DaemonTarget } from '../registry/docker-daemon-target.js';
import { DockerArchiveTarget } from '../registry/docker-archive-target.js';
import { OciLayoutTarget } from '../registry/oci-layout-target.js';
import { fullName, isTag, MAX_NAME } from '../registry/reference.js';
import { checkTagFlag, usage } from './flags.js';
import { registryTarget } from './registry-flags.js';

export interface TargetChoice {
  readonly target: ImageTarget;
  /** Used when the user gave no --compression and the target does not force one. */
  readonly defaultCompression: Compression;
}

/** Flags that configure targets (registry and engine flags are added by their commands). */
export type TargetFlags = Readonly<Record<string, string | boolean | string[] | undefined>>;

type TransportParser = (command: string, rest: string, flags: TargetFlags) => TargetChoice;

/**
 * `name:rest` → target: the one place where destination strings become targets. A new transport
 * (registry `docker`, engines `docker-daemon`, `podman`) is one more entry here.
 */
const transports: Record<string, TransportParser> = {
  oci: (command, rest) => {
    const { path, tag } = splitPathTag(command, 'oci', rest);
    return { target: new OciLayoutTarget(path, tag ?? 'latest'), defaultCompression: 'none' };
  },
  'docker-archive': (command, rest) => {
    const i = rest.indexOf(':');
    const file = i < 0 ? rest : rest.slice(0, i);
    const ref = i < 0 ? undefined : rest.slice(i + 1);
    if (!file)
      throw usage(command, 'docker-archive: needs a file name, e.g. docker-archive:image.tar:app:latest');
    let repoTag: string | undefined;
    if (ref !== undefined) {
      // NAME[:TAG] as `docker load` takes it: a repository (a registry host with a port allowed)
      const { name, tag = 'latest' } = splitTag(ref);
      if (!REPOSITORY_RE.test(name) || !isTag(tag))
        throw usage(
          command,
          `docker-archive:${rest}: ${JSON.stringify(ref)} is not a NAME[:TAG] (lower case, e.g. app:v1 or example.com:5000/team/app)`,
        );
      checkNameLength(command, `docker-archive:${rest}`, name);
      repoTag = `${name}:${tag}`;
    }
    return { target: new DockerArchiveTarget(file, repoTag), defaultCompression: 'none' };
  },
  // `rest` is the whole `docker://…` as given: errors quote what the user typed
  docker: (command, rest, flags) => registryTarget(command, rest, flags),
  'docker-daemon': (command, rest, flags) => engineTarget(command, 'docker', rest, flags),
  podman: (command, rest, flags) => engineTarget(command, 'podman', rest, flags),
};

export function parseTarget(command: string, dest: string, flags: TargetFlags): TargetChoice {
  if (dest.startsWith('docker://') && transports['docker']) return transports['docker'](command, dest, flags);
  const i = dest.indexOf(':');
  const name = i < 0 ? '' : dest.slice(0, i);
  // skopeo refuses docker:NAME too; read as a registry reference it would push NAME to Docker Hub
  if (name === 'docker')
    throw usage(
      command,
      `--to ${dest}: a registry destination is written docker://HOST[:PORT]/REPO[:TAG] (docker-daemon:NAME[:TAG] loads into the Docker engine)`,
    );
  const parse = transports[name];
  if (!parse) {
    const known = Object.keys(transports)
      .map((t) => (t === 'docker' ? 'docker://' : `${t}:`))
      .join(', ');
    throw usage(command, `--to ${dest}: unknown destination (known: ${known})`);
  }
  return parse(command, dest.slice(i + 1), flags);
}

function splitPathTag(
  command: string,
  kind: string,
  rest: string,
): { path: string; tag: string | undefined } {
  const i = rest.lastIndexOf(':');
  const path = i < 0 ? rest : rest.slice(0, i);
  const tag = i < 0 ? undefined : rest.slice(i + 1);
  if (!path) throw usage(command, `${kind}: needs a directory, e.g. ${kind}:./image:latest`);
  // skopeo, crane and umoci read oci:DIR:REF up to the first ':' and take the rest as the
  // ref.name (app:v1, example.com/app:v1); split at the last ':', that would silently become a
  // directory DIR:app here.
  const first = path.indexOf(':');
  if (first >= 0)
    throw usage(
      command,
      `${kind}:${rest}: the directory ${JSON.stringify(path)} would have a ':' (skopeo reads this as directory ${JSON.stringify(path.slice(0, first))} with the name ${JSON.stringify(rest.slice(first + 1))}); nixoci takes ${kind}:DIR[:TAG] with a plain tag, e.g. ${kind}:${path.slice(0, first)}:${tag ?? 'latest'}`,
    );
  if (tag !== undefined && !isTag(tag)) {
    throw usage(command, `${kind}:${rest}: ${JSON.stringify(tag)} is not a valid tag`);
  }
  return { path, tag };
}

const REPOSITORY_RE =
  /^(?:[a-zA-Z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/**
 * Docker and Podman refuse a repository name longer than 255 characters as they normalise it
 * (`app` is `docker.io/library/app`): `docker load` of the archive, or the engine's load, would fail
 * after the whole image was written.
 */
function checkNameLength(command: string, what: string, name: string): void {
  const full = fullName(name);
  if (full.length > MAX_NAME)
    throw usage(
      command,
      `${what}: the repository name is too long: engines read it as ${full.length} characters (${full.slice(0, 30)}…), at most ${MAX_NAME}`,
    );
}

/**
 * An engine's `--cache-from`: NAME[:TAG], NAME[:TAG]@DIGEST or an image ID. The engine answers an
 * inspection of anything else with 400 (`invalid reference format`), which would end the load after
 * the closure was read, where a misspelt cache hint should be a usage error before.
 */
function checkCacheFrom(command: string, ref: string): void {
  if (/^(?:sha256:)?[0-9a-f]{6,64}$/.test(ref)) return;
  const at = ref.indexOf('@');
  const { name, tag } = splitTag(at < 0 ? ref : ref.slice(0, at));
  const digest = at < 0 ? undefined : ref.slice(at + 1);
  if (
    REPOSITORY_RE.test(name) &&
    (tag === undefined || isTag(tag)) &&
    (digest === undefined || /^sha256:[0-9a-f]{64}$/.test(digest))
  )
    return;
  throw usage(
    command,
    `--cache-from ${JSON.stringify(ref)} is not an image reference: expected NAME[:TAG] (lower case), NAME@sha256:DIGEST or an image ID`,
  );
}

/** `NAME[:TAG]`: the tag is after the last `:` only when that comes after the last `/` (a port). */
function splitTag(ref: string): { name: string; tag?: string } {
  const colon = ref.lastIndexOf(':');
  return colon > ref.lastIndexOf('/')
    ? { name: ref.slice(0, colon), tag: ref.slice(colon + 1) }
    : { name: ref };
}

/**
 * A Docker engine or Podman target from `NAME[:TAG]` (or no reference: name and tag then come from
 * the closure's top-level store path), with `--tag`, `--host` and `--cache-from`.
 */
export function engineTarget(
  command: string,
  engine: 'docker' | 'podman',
  ref: string | undefined,
  flags: TargetFlags,
): TargetChoice {
  const scheme = engine === 'podman' ? 'podman' : 'docker-daemon';
  let name: string | undefined;
  const tags: string[] = [];
  if (ref !== undefined && ref !== '') {
    // An engine names what it loads by NAME:TAG; the image ID (config digest) is its own.
    if (ref.includes('@'))
      throw usage(
        command,
        `${scheme}:${ref}: an image is loaded under NAME[:TAG], not a digest (the engine gives it its ID)`,
      );
    const split = splitTag(ref);
    name = split.name;
    if (split.tag !== undefined) tags.push(split.tag);
    if (!REPOSITORY_RE.test(name)) {
      throw usage(
        command,
        `${scheme}:${ref}: ${JSON.stringify(name)} is not a repository name (lower case, e.g. app or example.com/team/app)`,
      );
    }
    checkNameLength(command, `${scheme}:${ref}`, name);
  }
  const extra = flags.tag;
  const extraTags = Array.isArray(extra) ? extra : typeof extra === 'string' ? [extra] : [];
  // said as `--to oci:DIR:TAG` and push's --tag say it: which of the tags given is wrong
  for (const t of tags)
    if (!isTag(t)) throw usage(command, `${scheme}:${ref}: ${JSON.stringify(t)} is not a valid tag`);
  for (const t of extraTags) checkTagFlag(command, t);
  const host = typeof flags.host === 'string' ? flags.host : undefined;
  const cacheFrom = Array.isArray(flags['cache-from']) ? flags['cache-from'] : [];
  for (const c of cacheFrom) checkCacheFrom(command, c);
  const target = new DaemonTarget({
    engine,
    host,
    name,
    tags,
    extraTags,
    cacheFrom,
    cacheDir: cacheDirOf(flags),
  });
  return { target, defaultCompression: 'none' };
}
