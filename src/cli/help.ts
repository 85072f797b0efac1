export const HELP_SOURCE_FLAGS = `Source (where the closure comes from):
  --graph FILE                  closure graph JSON: nix/closure-graph.nix output,
                                exportReferencesGraph (__structuredAttrs) JSON,
                                \`nix path-info --json --recursive\` output, or a list of store paths
  --path STOREPATH              a store path; its closure comes from \`nix path-info\` (repeatable;
                                store paths may also be given as arguments)
                                Prefix a value with amd64= or arm64= to give one architecture its
                                own closure (e.g. --graph arm64=graph-aarch64.json)
`;

export const HELP_IMAGE_FLAGS = `Image:
  --arch LIST                   amd64, arm64 or amd64,arm64 (default: amd64); several make an index
  --max-layers N                layer budget, 1–125 (default: 100); beyond it, paths are grouped
  --compression none|gzip|zstd  layer compression (default: none for local targets, gzip for registries)
  --compression-level N         gzip 1–9 (default 1), zstd 1–19 (default 3)
  --entrypoint CMD              Entrypoint: a JSON array or a space-separated string
  --cmd CMD                     Cmd: a JSON array or a space-separated string
  --env KEY=VALUE               environment variable (repeatable); PATH defaults to the bin
                                directories of the closure's top-level store paths
  --workdir DIR                 WorkingDir
  --user USER[:GROUP]           User
  --expose PORT[/PROTO]         ExposedPorts (repeatable)
  --label KEY=VALUE             label (repeatable)
  --created TIME                creation time, RFC 3339 (default: 1970-01-01T00:00:01Z, reproducible)
  --cache-dir DIR               digest cache (default: $XDG_CACHE_HOME/nixoci or ~/.cache/nixoci)
  --no-cache                    neither read nor write the digest cache
  --keep-setuid                 keep setuid/setgid bits of store files (cleared by default)
`;

export const HELP_OUTPUT_FLAGS = `Output:
  --json                        print one JSON report on stdout (schema: docs/json.md)
  -q, --quiet                   print nothing but errors
  -v, --verbose                 print what is run and sent (never credentials)
  -h, --help                    this help
`;

export const HELP_MAIN = `Usage: nixoci COMMAND [flags]

Reproducible OCI images from Nix closures, streamed straight from /nix/store.

Commands:
  build     assemble an image and write it to OCI layouts, docker-archives, registries, engines
  push      assemble an image and push it to a registry, sending only the blobs it lacks
  load      assemble an image and load it into Docker or Podman, sending only missing layers
  inspect   print the layer plan of a closure: layers, store paths, sizes, cached digests
  help      help on a command (\`nixoci help build\`)

Run \`nixoci COMMAND --help\` for the flags of a command.
Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
`;
