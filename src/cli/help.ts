/** The proxy variables, honoured as Go programs (skopeo, crane, docker) honour them. */
export const HELP_PROXY_ENV = `  HTTPS_PROXY             proxy for HTTPS registries and token realms (CONNECT tunnel), as in
                          skopeo and crane: http://[USER:PASSWORD@]HOST:PORT (http:// if no
                          scheme); https_proxy if unset
  HTTP_PROXY              proxy for plain-HTTP registries (--insecure-registry) and token realms;
                          http_proxy if unset
  NO_PROXY                hosts reached directly (no_proxy if unset): a comma list of *, HOST
                          (and its subdomains), .DOMAIN, HOST:PORT, IP, CIDR; localhost and
                          loopback addresses never go through a proxy
`;

export const HELP_SOURCE_FLAGS = `Source (where the closure comes from; default: the devbox project the
working directory is in: the nearest devbox.json in it or above it, as devbox finds it):
  --devbox DIR                  a devbox project (its directory, or its devbox.json): packages
                                from devbox.json, store paths from devbox.lock for the --arch's
                                system (x86_64-linux, aarch64-linux), substituted with
                                \`nix-store --realise\` when not on disk; packages locked without
                                paths are built with \`nix build --system SYSTEM\`
  --installable REF             a flake installable, built with \`nix build --no-link\` (e.g. .#app)
  --file X.nix [--attr A]       a Nix file (attribute A), built with \`nix-build --no-out-link\`
  --graph FILE                  closure graph JSON: nix/closure-graph.nix output,
                                exportReferencesGraph (__structuredAttrs) JSON,
                                \`nix path-info --json --recursive\` output, or a list of store paths
  --path STOREPATH              a store path, or a result symlink to one; its closure comes from
                                \`nix path-info\` (repeatable; store paths may also be given as
                                arguments)
                                Prefix a --graph or --path value with amd64= or arm64= to give one
                                architecture its own closure (e.g. --graph arm64=graph-aarch64.json);
                                an unprefixed one goes into every --arch's image as it is (built for
                                one system). --devbox, --installable and --file are built per --arch.
`;

export const HELP_IMAGE_FLAGS = `Image:
  --arch LIST                   amd64, arm64 or amd64,arm64 (default: amd64); several make an index
  --max-layers N                layer budget, 1–125 (default: 100); beyond it, paths are grouped
  --compression none|gzip|zstd  layer compression (default: none for local targets, gzip for registries)
  --compression-level N         gzip 1–9 (default 1), zstd 1–19 (default 3)
  --entrypoint CMD              Entrypoint: a JSON array or a space-separated string (no quotes)
  --cmd CMD                     Cmd: a JSON array or a space-separated string (no quotes)
  --env KEY=VALUE               environment variable (repeatable); PATH defaults to the bin
                                directories of the closure's top-level store paths
  --workdir DIR                 WorkingDir
  --user UID[:GID]|NAME         User (group names are refused; NAME[:UID]: see the customisation layer)
  --expose PORT[/PROTO]         ExposedPorts (repeatable)
  --label KEY=VALUE             label (repeatable)
  --volume DIR                  Volumes: an absolute mount point for an anonymous volume (repeatable)
  --stop-signal SIG             StopSignal, the signal \`docker stop\` sends: a name (SIGTERM, TERM,
                                SIGRTMIN+3) or a number 1–64
  --annotation [manifest:|index:]KEY=VALUE
                                annotation (repeatable) of each platform's manifest (manifest:), of
                                the index of several --arch (index:), or of both (no prefix), as
                                \`docker buildx --annotation\`; e.g. org.opencontainers.image.source.
                                Registries and oci: layouts keep them; engines and docker-archives
                                have no manifest
  --created TIME                creation time, RFC 3339 (default: 1970-01-01T00:00:01Z, reproducible)
  --cache-dir DIR               digest cache, and where pushed blobs are (for mounts); default:
                                $XDG_CACHE_HOME/nixoci or ~/.cache/nixoci
  --no-cache                    neither read nor write the cache
  --keep-setuid                 keep setuid/setgid bits of store files (cleared by default)

Customisation layer (added as the last layer for a devbox source, --preset, --user NAME:UID,
--copy or --bin-farm; PATH becomes /bin:/usr/bin plus the packages' bin directories):
  --bin-farm                    /bin and /usr/bin symlinks to the top-level paths' bin/*, /usr/bin/env,
                                /tmp (1777), /etc/passwd, /etc/group, /etc/nsswitch.conf, a home
                                directory, /etc/ssl/certs/ca-certificates.crt + SSL_CERT_FILE when
                                the closure has a CA bundle
  --user NAME[:UID]             with the layer: create this user (uid default 1000, nobody's 65534;
                                gid = uid) and run as it (default: root); without it, a NAME alone
                                is refused (no /etc/passwd to find it in) and root is written as 0:0
  --preset runtime|devcontainer runtime: user app (uid 1000), WorkingDir /app owned by it;
                                devcontainer: user vscode (uid 1000), HOME, bash as shell if present
  --copy SRC:DEST               add a project file or directory at the absolute path DEST (repeatable);
                                a DEST ending in / puts SRC in it under its own name; a SRC symlink
                                is followed
  --ignore-collisions           when two packages have the same bin/NAME, keep the first one
`;

const OUTPUT_LINES = `  --json                        print one JSON report on stdout (schema: docs/json.md)
  -q, --quiet                   print nothing but errors
  -v, --verbose                 print what is run and sent (never credentials)
  -h, --help                    this help
`;

export const HELP_OUTPUT_FLAGS = `Output:
${OUTPUT_LINES}`;

/** build, push, load: the output flags and the files written once every destination is. */
export const HELP_WRITE_OUTPUT_FLAGS = `Output:
  --digestfile FILE             once every destination is written, the digest to pin or sign:
                                the manifest's (the index's for several --arch), an engine's
                                image ID; sha256:…, no newline, as skopeo writes it
  --image-refs FILE             once every destination is written, a REFERENCE@sha256:… line for
                                each (as ko writes it; docs/design-choices.md)
${OUTPUT_LINES}`;

/** The commands, one line each: HELP_MAIN, the CLI reference (docs/cli.md) and completions use it. */
export const COMMANDS: readonly (readonly [name: string, summary: string])[] = [
  ['build', 'assemble an image and write it to OCI layouts, docker-archives, registries, engines'],
  ['push', 'assemble an image and push it to a registry, sending only the blobs it lacks'],
  ['load', 'assemble an image and load it into Docker or Podman, sending only missing layers'],
  ['inspect', "an image's layers, sizes and store paths; or the layer plan of a closure"],
  ['diff', 'compare two images: shared layers, and store paths added, removed, changed'],
  ['login', 'check credentials for a registry and store them where push finds them'],
  ['logout', 'remove the stored credentials for a registry'],
  ['completion', 'print a shell completion script (bash, zsh, fish)'],
  ['help', 'help on a command (`nixoci help build`)'],
];

export const HELP_MAIN = `Usage: nixoci COMMAND [flags]

Reproducible OCI images from Nix closures, streamed straight from /nix/store.

Commands:
${COMMANDS.map(([n, s]) => `  ${n.padEnd(12)}${s}`).join('\n')}

Run \`nixoci COMMAND --help\` for the flags of a command; \`nixoci --version\` prints the version.
Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted. A usage error is a command line
wrong in itself: an unknown, repeated or empty flag, a bad value, a malformed reference or store
path, a flag for a kind of destination or image the run does not have. What it names being absent
or unreadable (a store path not on disk, a file, an image, a registry) is a failure, as in skopeo
and crane.

Environment (besides the registry and engine variables named by each command's flags):
  XDG_CACHE_HOME          the digest cache and the start-up code cache live in its nixoci/
                          (default ~/.cache/nixoci)
  NIXOCI_NIX              the nix command to run (default: nix on PATH; nix-build and nix-store
                          are taken from the same directory)
  NIXOCI_DEVBOX_CEILING   with no source flag, the highest directory searched for devbox.json
                          (default: /)
  NIXOCI_DOT              the Graphviz dot command for --graph-out *.svg (default: dot)
  NIXOCI_WORKERS          layer worker threads (default: 2, or 1 on one CPU; 0: none)
  NIXOCI_LOAD_GROUP_BYTES a load into Docker's classic image store that sends more than this goes
                          as several archives in a row (default: 134217728, 128 MiB)
  NIXOCI_STATUS_INTERVAL  where no progress bars are drawn (standard error not a terminal: a CI
                          log; --verbose; TERM=dumb), seconds between the status lines of a long
                          run (default: 30; 0: none)
  NIXOCI_NO_CODE_CACHE=1  compile nixoci afresh on every start instead of using a V8 code cache
  NIXOCI_DEBUG=1          add the stack trace to an internal error
${HELP_PROXY_ENV}  NODE_EXTRA_CA_CERTS     extra CAs to trust for HTTPS registries and token realms, as in any
                          Node program (read on the first HTTPS connection; see --ca-file)
`;
