# A derivation built by busybox's sh running SCRIPT with busybox on PATH: how the example, the test
# fixtures and the bench make store paths without nixpkgs. The build runs `busybox.buildBusybox`
# when there is one (nix/busybox.nix: a busybox for another architecture cannot run here); what the
# script writes should refer to `busybox` (`#!${busybox}/bin/sh`), the one the image holds.
#
#   mk = import ./busybox-script.nix { inherit busybox system; };
#   hello = mk "hello" ''mkdir -p $out/bin; …'' { };        # last argument: extra attributes
{
  busybox,
  system ? builtins.currentSystem,
}:
name: script: attrs:
let
  build = busybox.buildBusybox or busybox;
in
derivation (
  {
    inherit name system;
    builder = "${build}/bin/sh";
    args = [
      "-e"
      "-c"
      ("export PATH=${build}/bin\n" + script)
    ];
  }
  // attrs
)
