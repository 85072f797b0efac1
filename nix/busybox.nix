# A busybox package for the Nix store built from the host's static busybox (Debian's
# busybox-static), with no nixpkgs and no binary cache:
#   $out/bin/busybox plus one symlink per applet ($out/bin/sh, echo, cat, sed, ...).
#
#   busybox = import ./busybox.nix { };                       # host's /bin/busybox
#   busybox = import ./busybox.nix { busybox = /some/static/busybox; };
#   busybox = import ./busybox.nix { system = "aarch64-linux"; };
#
# For a system whose static busybox scripts/setup fetched (the other architecture's Debian
# busybox-static, in /usr/local/lib/nixoci/busybox/<system>/busybox), $out/bin/busybox is that
# binary: an aarch64-linux image then holds an AArch64 busybox on an x86-64 machine. Its applet
# links are those of the host's busybox (the same Debian version). Without it, the host's.
#
# A binary that cannot run here cannot run builders either: `busybox.buildBusybox` is a busybox
# that runs on this machine (the package itself when it does); build with it, refer to `busybox`
# in what the build writes (`#!${busybox}/bin/sh`). nix/busybox-script.nix does so.
#
# The binary must be static: the store path is copied into images as is.
{
  # Path to a static busybox binary. Default: Debian's busybox-static (/bin/busybox; on a
  # merged-/usr system /bin is a symlink, so the real directory /usr/bin is used), or the one
  # scripts/setup fetched for `system`.
  busybox ? null,
  system ? builtins.currentSystem,
  # where scripts/setup puts other architectures' static busyboxes (<system>/busybox)
  foreignDir ? /usr/local/lib/nixoci/busybox,
}:
let
  hostBinary = if builtins.pathExists /usr/bin/busybox then /usr/bin/busybox else /bin/busybox;
  foreignBinary = foreignDir + "/${system}/busybox";
  foreign = busybox == null && builtins.pathExists foreignBinary;
  binary = if busybox != null then busybox else hostBinary;

  # Busybox picks the applet from argv[0]; Nix runs a builder with argv[0] = the builder's
  # base name, so the binary must be called "busybox" (not "<hash>-busybox"): add the
  # directory with a filter that keeps only that one file.
  storeCopy =
    name: file:
    "${
      builtins.path {
        inherit name;
        path = dirOf file;
        filter = p: _type: p == toString file;
      }
    }/${baseNameOf (toString file)}";
  bb = storeCopy "busybox-static-src" binary;

  # The package: `from` copied to $out/bin/busybox, one link per applet of the host's busybox (which
  # runs the build), then `check`. The host's own binary is checked by running it; another
  # system's cannot run here and is only copied.
  package =
    from: check:
    derivation {
      name = "busybox";
      inherit system;
      builder = bb;
      args = [
        "sh"
        "-e"
        "-c"
        (
          ''
            b=${bb}
            $b mkdir -p "$out/bin"
            $b cp ${from} "$out/bin/busybox"
            $b chmod 0555 "$out/bin/busybox"
            for a in $($b --list); do
              case "$a" in busybox|*/*) ;; *) $b ln -s busybox "$out/bin/$a" ;; esac
            done
          ''
          + check
        )
      ];
    };
  native = package ''"$b"'' ''
    "$out/bin/sh" -c 'echo busybox ok' >/dev/null
  '';
  other = package (storeCopy "busybox-static-${system}-src" foreignBinary) "";
in
if baseNameOf (toString binary) != "busybox" then
  throw "busybox.nix: the binary must be named 'busybox' (got ${toString binary})"
else if foreign then
  other // { buildBusybox = native; }
else
  native // { buildBusybox = native; }
