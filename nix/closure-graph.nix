# The closure graph of some store paths as a JSON file (nix2container-style), for
# `nixoci --graph FILE`. Works with and without nixpkgs / flakes:
#
#   # no nixpkgs (busybox from the host, see ./busybox.nix):
#   import ./closure-graph.nix { roots = [ myApp ]; }
#   import ./closure-graph.nix { roots = [ myApp ]; shell = import ./busybox.nix { }; }
#   # with nixpkgs:
#   import ./closure-graph.nix { inherit pkgs; roots = [ myApp ]; }
#   # with any runCommand-like function (name: env: script) whose PATH has sed and tr:
#   import ./closure-graph.nix { inherit (pkgs) runCommand; roots = [ myApp ]; }
#   # in a flake (pure evaluation: no builtins.currentSystem, no host paths), pass `pkgs`,
#   # or `system` and `shell` (a store path with bin/sh, bin/sed, bin/tr).
#
# Output ($out is a single file):
#   {"roots":["/nix/store/…-app"],
#    "closure":[{"closureSize":N,"narHash":"sha256:<nix32>","narSize":N,
#                "path":"/nix/store/…","references":["/nix/store/…",…]},…]}
# `closure` is exactly Nix's exportReferencesGraph entry list (sorted by path; `references`
# include self-references). Readers must ignore unknown keys, in entries and at top level:
# if the builder cannot recognise the structured-attrs file, it copies that whole JSON
# object, which still has `roots` and `closure`.
{
  roots,
  runCommand ? null,
  shell ? null,
  pkgs ? null,
  name ? "closure-graph",
  # only used without pkgs / runCommand; pass it explicitly in pure (flake) evaluation
  system ? if pkgs != null then pkgs.stdenv.hostPlatform.system else builtins.currentSystem,
}:
let
  rootList = if builtins.isList roots then roots else [ roots ];

  graphAttrs = {
    __structuredAttrs = true;
    exportReferencesGraph.closure = rootList;
    roots = map toString rootList;
  };

  # POSIX sh + sed + tr. Nix writes .attrs.json as one line with sorted keys:
  #   {"builder":…,"closure":[…],"exportReferencesGraph":{…},…,"roots":[…],…}
  # Store paths cannot contain '"', '[' or ']', so the two cuts below are unambiguous.
  extractScript = ''
    set -e
    attrs="''${NIX_ATTRS_JSON_FILE:-''${NIX_BUILD_TOP:-.}/.attrs.json}"
    [ -e "$attrs" ] || attrs=.attrs.json
    if [ -z "''${out:-}" ]; then
      out=$(sed -n 's/.*"outputs":{"out":"\([^"]*\)".*/\1/p' "$attrs")
    fi
    [ -n "$out" ] || { echo "closure-graph: cannot find \$out" >&2; exit 1; }
    closure=$(tr -d '\n' < "$attrs" | sed -n 's/^.*"closure":\(\[.*\]\),"exportReferencesGraph":.*$/\1/p')
    roots=$(tr -d '\n' < "$attrs" | sed -n 's/^.*"roots":\(\[[^]]*\]\).*$/\1/p')
    case "$closure" in
      \[*\]) case "$roots" in
        \[*\]) printf '{"roots":%s,"closure":%s}\n' "$roots" "$closure" > "$out" ;;
        *) cp "$attrs" "$out" ;;
      esac ;;
      *) cp "$attrs" "$out" ;;
    esac
  '';

  jqScript = jq: ''
    ${jq}/bin/jq '{roots: .roots, closure: .closure}' \
      < "''${NIX_ATTRS_JSON_FILE:-''${NIX_BUILD_TOP:-.}/.attrs.json}" > "$out"
  '';

  # a busybox that runs here (nix/busybox.nix's buildBusybox; the graph refers to no busybox)
  busybox =
    if shell != null then shell.buildBusybox or shell else (import ./busybox.nix { inherit system; }).buildBusybox;
in
if runCommand != null then
  runCommand name graphAttrs extractScript
else if pkgs != null then
  pkgs.runCommand name graphAttrs (jqScript pkgs.jq)
else
  derivation (
    graphAttrs
    // {
      inherit name system;
      builder = "${busybox}/bin/sh";
      # (with structured attrs, attributes are not environment variables)
      args = [
        "-c"
        ("PATH=${busybox}/bin\n" + extractScript)
      ];
    }
  )
