# The layer-churn closure: `count` small store paths (one derivation each) with references
# between them, plus one small leaf path whose content depends on `tag` and that nothing
# references (so changing `tag` changes exactly one store path). More paths than the layer
# budget, so nixoci has to group them.
#
#   nix-build bench/churn.nix --argstr tag a -A graph    # closure graph JSON (all paths are roots)
#   nix-build bench/churn.nix --argstr tag a -A leaf     # the path that changes with `tag`
#
# Path i (0 ≤ i < count) holds 1–251 KiB (every 50th: 2 MiB) and references paths i/2 and i/3.
{
  count ? 299,
  tag ? "a",
  system ? builtins.currentSystem,
  busyboxBinary ? null,
}:
let
  common = import ./common.nix { inherit system busyboxBinary; };
  inherit (common) busybox mk;

  pad = i: if i < 10 then "00${toString i}" else if i < 100 then "0${toString i}" else toString i;
  mod = a: b: a - (a / b) * b;
  sizeOf = i: if mod i 50 == 49 then 2097152 else 1024 * (1 + mod (i * 7919) 251);

  paths = builtins.genList (
    i:
    let
      deps =
        if i < 2 then
          [ ]
        else
          [ (builtins.elemAt paths (i / 2)) ] ++ (if i / 3 != i / 2 then [ (builtins.elemAt paths (i / 3)) ] else [ ]);
    in
    mk "churn-${pad i}" ''
      mkdir -p "$out/share" "$out/nix-support"
      slice "$binpool" ${toString (i * 131 * 65536)} ${toString (sizeOf i)} "$out/share/data-${pad i}"
      echo "${toString deps}" > "$out/nix-support/propagated-build-inputs"
    ''
  ) count;

  leaf = mk "churn-leaf" ''
    mkdir -p "$out/etc"
    echo "tag ${tag}" > "$out/etc/version"
    slice "$textpool" 0 8192 "$out/etc/settings"
  '';

  graph = import ../nix/closure-graph.nix {
    roots = paths ++ [ leaf ];
    shell = busybox;
    name = "churn-graph";
    inherit system;
  };
in
{
  inherit paths leaf graph;
}
