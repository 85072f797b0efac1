# A derivation built by busybox's sh running SCRIPT with busybox on PATH: how the example, the test
# fixtures and the bench make store paths without nixpkgs.
#
#   mk = import ./busybox-script.nix { inherit busybox system; };
#   hello = mk "hello" ''mkdir -p $out/bin; …'' { };        # last argument: extra attributes
{
  busybox,
  system ? builtins.currentSystem,
}:
name: script: attrs:
derivation (
  {
    inherit name system;
    builder = "${busybox}/bin/sh";
    args = [
      "-e"
      "-c"
      ("export PATH=${busybox}/bin\n" + script)
    ];
  }
  // attrs
)
