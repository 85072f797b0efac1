import { NixociError } from '../core/errors.js';
import { dockerArchiveSource } from '../registry/read/docker-archive-source.js';
import { engineSource } from '../registry/read/engine-source.js';
import { requirePlatform, type ImageSource } from '../registry/read/image-source.js';
import { ociArchiveSource } from '../registry/read/oci-archive-source.js';
import { ociLayoutSource } from '../registry/read/oci-layout-source.js';
import { registrySource } from '../registry/read/registry-source.js';
import { isTag, parseImageReference } from '../registry/reference.js';
import { asUsage, refuseUnused, usage, type OptionSpec } from './flags.js';
import { archSuggestion } from './suggest.js';
import { HELP_REGISTRY_ACCESS_FLAGS, registryAccess, registryAccessOptions } from './registry-flags.js';
import type { TargetFlags } from './targets.js';

/** Flags for reading an existing image (`inspect IMAGE`, `diff`). */
export const imageReadOptions = {
  ...registryAccessOptions,
  host: { type: 'string', short: 'H' },
  arch: { type: 'string' },
} as const satisfies OptionSpec;

export const HELP_IMAGE_REFS = `Images (IMAGE):
  docker://HOST[:PORT]/REPO[:TAG|@DIGEST]  an image in a registry
  oci:DIR[:TAG]                 an OCI image layout (default: its only image, else tag latest)
  oci-archive:FILE[:TAG]        an OCI layout as a tar (\`skopeo copy\`, \`podman save --format
                                oci-archive\`; plain, gzip or zstd; FILE - is standard input)
  docker-archive:FILE[:NAME:TAG|:@N]  a docker-archive (\`docker save\`, plain, gzip or zstd; FILE - is
                                standard input); of several images, the one tagged NAME:TAG or the Nth
                                from 0; only its headers and JSON are read
  docker-daemon:NAME[:TAG]      an image in the Docker engine
  podman:NAME[:TAG]             an image in Podman
`;

export const HELP_IMAGE_READ_FLAGS = `Reading images:
  --arch ARCH                   the platform of a multi-arch image: ARCH, ARCH/VARIANT or
                                OS/ARCH[/VARIANT] (default: linux/amd64, else the first Linux one)
  -H, --host ADDR               engine address for docker-daemon:/podman: (default: DOCKER_HOST, the
                                docker context, /var/run/docker.sock; for Podman CONTAINER_HOST)
${HELP_REGISTRY_ACCESS_FLAGS}`;

const PREFIXES = ['docker://', 'oci:', 'oci-archive:', 'docker-archive:', 'docker-daemon:', 'podman:'];

/** The transports, for messages. */
export const IMAGE_TRANSPORTS = PREFIXES.join(', ');

/** Transports skopeo users may reach for, which nixoci does not read: what to do instead. */
const UNREAD: Readonly<Record<string, string>> = {
  'containers-storage': 'read it through Podman as podman:NAME[:TAG]',
  dir: 'copy it to a layout (skopeo copy dir:DIR oci:LAYOUT:TAG) and read oci:LAYOUT:TAG',
};

/** Whether an argument names an existing image rather than a closure source. */
export const isImageRef = (s: string): boolean =>
  PREFIXES.some((p) => s.startsWith(p)) || Object.hasOwn(UNREAD, s.slice(0, Math.max(0, s.indexOf(':'))));

/**
 * The registry flags when no image of `refs` is in a registry, `--host` when none is in an engine:
 * usage errors (with no image at all, `inspect` of a closure source, neither applies).
 */
export function refuseUnusedReadFlags(command: string, refs: readonly string[], flags: TargetFlags): void {
  const none = refs.length === 0 ? 'a closure source reads no image' : `no image here is`;
  if (!refs.some((r) => r.startsWith('docker://')))
    refuseUnused(
      command,
      flags,
      Object.keys(registryAccessOptions),
      `is for reading an image from a registry, and ${refs.length === 0 ? none : `${none} docker://…`}`,
      'leave it out',
    );
  if (!refs.some((r) => /^(docker-daemon|podman):/.test(r)))
    refuseUnused(
      command,
      flags,
      ['host'],
      `is for reading an image from an engine, and ${refs.length === 0 ? none : `${none} docker-daemon: or podman:`}`,
      'leave it out',
    );
}

/** `TRANSPORT:REST` → an ImageSource: the one place where image arguments are parsed. */
export function openImageSource(
  command: string,
  ref: string,
  flags: TargetFlags,
  log?: (line: string) => void,
): ImageSource {
  const arch = typeof flags.arch === 'string' ? flags.arch : undefined;
  if (arch?.includes(','))
    throw usage(command, `--arch ${arch}: an existing image is read for one platform at a time`);
  // Nix's names (x86_64-linux, aarch64) are in no index: they would fail as "no such platform", or
  // against a single image with the wrong hint (leave out --arch), when the user meant amd64/arm64.
  if (arch !== undefined && /^(x86_64|aarch64|i686)$|^[a-z0-9_]+-(linux|darwin)$/.test(arch))
    throw new NixociError(
      'USAGE',
      `nixoci ${command}: --arch ${arch}: a Nix system name; images name their platforms the OCI way`,
      {
        hint:
          archSuggestion(arch) ??
          'give ARCH, ARCH/VARIANT or OS/ARCH[/VARIANT] as an index names it, e.g. --arch amd64, arm64, linux/arm/v7',
      },
    );
  return requirePlatform(openSource(command, ref, flags, arch, log), arch);
}

function openSource(
  command: string,
  ref: string,
  flags: TargetFlags,
  arch: string | undefined,
  log: ((line: string) => void) | undefined,
): ImageSource {
  const o = arch ? { arch } : {};
  if (ref.startsWith('docker://')) {
    const parsed = asUsage(command, () => parseImageReference(ref));
    // --verbose: every registry exchange (method, path, status), as push logs them
    return registrySource(parsed, { ...o, ...registryAccess(flags, command), ...(log ? { log } : {}) });
  }
  const colon = ref.indexOf(':');
  const transport = ref.slice(0, colon);
  const rest = ref.slice(colon + 1);
  if (Object.hasOwn(UNREAD, transport))
    throw new NixociError('USAGE', `nixoci ${command}: ${ref}: nixoci does not read ${transport}: images`, {
      hint: UNREAD[transport]!,
    });
  if (rest === '') throw usage(command, `${ref}: names no image`);
  switch (transport) {
    case 'oci':
    case 'oci-archive': {
      const i = rest.lastIndexOf(':');
      const hasTag = i > 0 && isTag(rest.slice(i + 1));
      const [path, tag] = hasTag ? [rest.slice(0, i), rest.slice(i + 1)] : [rest, undefined];
      return transport === 'oci' ? ociLayoutSource(path, tag, o) : ociArchiveSource(path, tag, o);
    }
    case 'docker-archive': {
      const i = rest.indexOf(':');
      return dockerArchiveSource(i < 0 ? rest : rest.slice(0, i), i < 0 ? undefined : rest.slice(i + 1));
    }
    case 'docker-daemon':
    case 'podman': {
      // Engines refuse upper case in a reference (image IDs are lower-case hex too): say so here.
      if (/[A-Z]/.test(rest))
        throw usage(command, `${ref}: image names are lower case (use ${transport}:${rest.toLowerCase()})`);
      const host = typeof flags.host === 'string' ? flags.host : undefined;
      const slash = rest.lastIndexOf('/');
      const name = rest.lastIndexOf(':') > slash ? rest : `${rest}:latest`;
      return engineSource(name, {
        engine: transport === 'podman' ? 'podman' : 'docker',
        ...(host ? { host } : {}),
      });
    }
  }
  throw usage(command, `${ref}: unknown image transport (known: ${PREFIXES.join(', ')})`);
}
