import { usage } from '../flags.js';
import { HELP_IMAGE_FLAGS, HELP_WRITE_OUTPUT_FLAGS, HELP_SOURCE_FLAGS } from '../help.js';
import type { ImageCommandSpec } from '../image-command.js';
import { engineTarget } from '../targets.js';

export const loadCommand: ImageCommandSpec = {
  name: 'load',
  options: {
    tag: { type: 'string', multiple: true },
    host: { type: 'string', short: 'H' },
    'cache-from': { type: 'string', multiple: true },
    engine: { type: 'string' },
  },
  targets: (values, positionals) => {
    if (positionals.length > 1) throw usage('load', `unexpected argument ${JSON.stringify(positionals[1])}`);
    const given = values.engine;
    if (given !== undefined && given !== 'docker' && given !== 'podman')
      throw usage('load', `--engine ${String(given)}: expected docker or podman`);
    let engine: 'docker' | 'podman' | undefined = given;
    // `podman:NAME[:TAG]` / `docker-daemon:NAME[:TAG]` name the engine in the reference itself.
    let ref = positionals[0];
    const m = ref === undefined ? null : /^(podman|docker-daemon):(.*)$/.exec(ref);
    if (m) {
      const named = m[1] === 'podman' ? 'podman' : 'docker';
      if (engine !== undefined && engine !== named)
        throw usage('load', `${ref}: conflicts with --engine ${engine}`);
      engine = named;
      ref = m[2];
    }
    return [engineTarget('load', engine ?? 'docker', ref, values)];
  },
  help: `Usage: nixoci load [SOURCE] [NAME[:TAG]] [flags]

Assemble an image from a Nix closure and load it into the local Docker engine (or Podman), the way
copyToDockerDaemon does, but streamed (no tarball in the store, no temp file) and sending only the
layers the engine does not have yet (docs/daemon.md).

Default NAME is the name part of the closure's top-level store path, default TAG a hash of the
whole image (its layers' store paths, narHashes and files, and its config), so that two different
images get two tags (TAG is latest when NAME is given without one). Same as
\`nixoci build --to docker-daemon:NAME:TAG\`. Give podman:NAME[:TAG] (or --engine podman) to load
into Podman instead.

${HELP_SOURCE_FLAGS}
Engine:
  --engine docker|podman        which engine (default: docker)
  -H, --host ADDR               engine address: unix:///path, tcp://HOST:PORT, ssh://[USER@]HOST
                                (default: DOCKER_HOST, the current docker context, then
                                /var/run/docker.sock; for Podman CONTAINER_HOST, then its sockets)
  --tag TAG                     one more tag for the image (repeatable)
  --cache-from IMAGE            an image in the engine whose layers this one may share (repeatable)

${HELP_IMAGE_FLAGS}
${HELP_WRITE_OUTPUT_FLAGS}
Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
`,
};
