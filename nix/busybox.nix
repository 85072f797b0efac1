# A busybox package for the Nix store built from the host's static busybox (Debian's
# busybox-static), with no nixpkgs and no binary cache:
#   $out/bin/busybox plus one symlink per applet ($out/bin/sh, echo, cat, sed, ...).
#
#   busybox = import ./busybox.nix { };                       # host's /bin/busybox
#   busybox = import ./busybox.nix { busybox = /some/static/busybox; };
#
# The binary must be static: the store path is copied into images as is.
{
  # Path to a static busybox binary. Default: Debian's busybox-static (/bin/busybox; on a
  # merged-/usr system /bin is a symlink, so the real directory /usr/bin is used).
  busybox ? null,
  system ? builtins.currentSystem,
}:
let
  binary =
    if busybox != null then
      busybox
    else if builtins.pathExists /usr/bin/busybox then
      /usr/bin/busybox
    else
      /bin/busybox;
  # Busybox picks the applet from argv[0]; Nix runs a builder with argv[0] = the builder's
  # base name, so the binary must be called "busybox" (not "<hash>-busybox"): add the
  # directory with a filter that keeps only that one file.
  src = builtins.path {
    name = "busybox-static-src";
    path = dirOf binary;
    filter = p: _type: p == toString binary;
  };
  bb = "${src}/${baseNameOf (toString binary)}";
in
if baseNameOf (toString binary) != "busybox" then
  throw "busybox.nix: the binary must be named 'busybox' (got ${toString binary})"
else
  derivation {
    name = "busybox";
    inherit system;
    builder = bb;
    args = [
      "sh"
      "-e"
      "-c"
      ''
        b=${bb}
        $b mkdir -p "$out/bin"
        $b cp "$b" "$out/bin/busybox"
        $b chmod 0555 "$out/bin/busybox"
        for a in $($b --list); do
          case "$a" in busybox|*/*) ;; *) $b ln -s busybox "$out/bin/$a" ;; esac
        done
        "$out/bin/sh" -c 'echo busybox ok' >/dev/null
      ''
    ];
  }
