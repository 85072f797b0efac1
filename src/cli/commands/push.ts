import { usage } from '../flags.js';
import { HELP_IMAGE_FLAGS, HELP_WRITE_OUTPUT_FLAGS, HELP_PROXY_ENV, HELP_SOURCE_FLAGS } from '../help.js';
import type { ImageCommandSpec } from '../image-command.js';
import { HELP_REGISTRY_FLAGS, registryOptions, registryTarget } from '../registry-flags.js';

export const pushCommand: ImageCommandSpec = {
  name: 'push',
  options: {
    ...registryOptions,
    tag: { type: 'string', multiple: true },
    'cache-from': { type: 'string', multiple: true },
  },
  targets: (values, positionals) => {
    if (positionals.length === 0)
      throw usage('push', 'no destination: give REF, e.g. docker://ghcr.io/org/app:v1');
    if (positionals.length > 1) throw usage('push', `unexpected argument ${JSON.stringify(positionals[1])}`);
    return [registryTarget('push', positionals[0]!, values)];
  },
  help: `Usage: nixoci push [SOURCE] [docker://]HOST[:PORT]/REPO[:TAG] [flags]

Assemble an image from a Nix closure and push it to a registry, sending only what the registry
lacks: layers already under the tag (or --cache-from) are reused from their annotations without
reading the store, then each blob is checked (HEAD), mounted from another repository, or streamed
straight from the store. The manifest goes last. Same as \`nixoci build --to docker://REF\`.
With --arch amd64,arm64 an OCI index goes under the tag (docs/registry.md).

${HELP_SOURCE_FLAGS}
${HELP_REGISTRY_FLAGS}
${HELP_IMAGE_FLAGS}
${HELP_WRITE_OUTPUT_FLAGS}
Environment:
${HELP_PROXY_ENV}
Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
`,
};
