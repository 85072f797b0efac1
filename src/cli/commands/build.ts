import { resolve } from 'node:path';
import { OciLayoutTarget } from '../../registry/oci-layout-target.js';
import { refuseUnused, usage } from '../flags.js';
import { HELP_IMAGE_FLAGS, HELP_WRITE_OUTPUT_FLAGS, HELP_SOURCE_FLAGS } from '../help.js';
import type { ImageCommandSpec } from '../image-command.js';
import { registryOptions } from '../registry-flags.js';
import { parseTarget } from '../targets.js';

export const buildCommand: ImageCommandSpec = {
  name: 'build',
  options: {
    to: { type: 'string', multiple: true },
    host: { type: 'string', short: 'H' },
    ...registryOptions,
  },
  targets: (values, positionals) => {
    const to = (values.to as string[] | undefined) ?? [];
    if (positionals.length > 0) throw usage('build', `unexpected argument ${JSON.stringify(positionals[0])}`);
    if (to.length === 0) throw usage('build', 'no destination: give --to DEST (e.g. --to oci:./image)');
    const toStdout = to.filter((d) => /^docker-archive:-(:|$)/.test(d));
    if (toStdout.length > 0) {
      // The archive is the whole of standard output: nothing else may be written there.
      if (toStdout.length > 1) throw usage('build', 'only one destination can write to standard output (-)');
      if (values.json)
        throw usage('build', '--json prints on standard output, where docker-archive:- writes the archive');
      if (process.stdout.isTTY)
        throw usage(
          'build',
          'docker-archive:- would write a tar archive to the terminal; pipe it (| docker load)',
        );
    }
    // Two archives written to one file: the second would silently replace the first.
    const files = to
      .filter((d) => d.startsWith('docker-archive:') && !toStdout.includes(d))
      .map((d) => resolve(d.slice('docker-archive:'.length).split(':')[0]!));
    const twice = files.find((f, i) => files.indexOf(f) !== i);
    if (twice !== undefined) throw usage('build', `two destinations write the same file ${twice}`);
    // Known from the arguments: fail before any destination is written.
    const arch = typeof values.arch === 'string' ? values.arch : '';
    const archive = to.find((d) => d.startsWith('docker-archive:'));
    if (archive && arch.includes(','))
      throw usage(
        'build',
        `--to ${archive}: a docker-archive holds one platform, --arch ${arch} asks for several (use an oci: layout or a registry for them)`,
      );
    // each destination's own error first: `--to docker:app --creds …` is told about docker:app
    const targets = to.map((d) => parseTarget('build', d, values));
    // The same tag of one layout twice (`oci:D`, `oci:./D:latest`): written and reported twice.
    const places = targets.flatMap(({ target: t }) => (t instanceof OciLayoutTarget ? [t.place] : []));
    const again = places.find((p, i) => places.indexOf(p) !== i);
    if (again !== undefined)
      throw usage('build', `two destinations write the same tag of one OCI layout, oci:${again}`);
    if (!to.some((d) => d.startsWith('docker://')))
      refuseUnused(
        'build',
        values,
        Object.keys(registryOptions),
        'is for a registry destination, and no --to is docker://…',
        'leave it out, or add --to docker://HOST[:PORT]/REPO[:TAG]',
      );
    if (!to.some((d) => /^(docker-daemon|podman):/.test(d)))
      refuseUnused(
        'build',
        values,
        ['host'],
        'is for an engine destination, and no --to is docker-daemon: or podman:',
        'leave it out, or add --to docker-daemon:NAME[:TAG] (or podman:NAME[:TAG])',
      );
    return targets;
  },
  help: `Usage: nixoci build [SOURCE] --to DEST [--to DEST ...] [flags]

Assemble an OCI image from a Nix closure, one reproducible layer per store path, and write it to
every destination.

${HELP_SOURCE_FLAGS}
Destinations (--to, repeatable):
  oci:DIR[:TAG]                 OCI image layout (default tag: latest); existing blobs are kept
  docker-archive:FILE[:NAME:TAG]  tar for \`docker load < FILE\` (uncompressed layers); FILE - is
                                standard output, for \`nixoci build … --to docker-archive:- | docker load\`
  docker://HOST[:PORT]/REPO[:TAG] a registry (see \`nixoci push --help\` for its flags)
  docker-daemon:NAME:TAG        the local Docker engine (see \`nixoci load --help\`)
  podman:NAME:TAG               the local Podman

Engines (docker-daemon:, podman:):
  -H, --host ADDR               engine address: unix:///path, tcp://HOST:PORT, ssh://[USER@]HOST
                                (default: DOCKER_HOST / CONTAINER_HOST, the docker context, the
                                default socket); applies to every engine destination

${HELP_IMAGE_FLAGS}
${HELP_WRITE_OUTPUT_FLAGS}
Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
`,
};
