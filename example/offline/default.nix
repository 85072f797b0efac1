# An app closure that builds with the real Nix on a fresh machine, with no nixpkgs and no
# binary cache: everything is made with a static busybox taken from the host.
#
#   nix-build example/offline            # → /nix/store/…-hello-nixoci (the app)
#   nix-build example/offline -A graph   # → closure graph JSON for `nixoci --graph`
#
# Closure: hello-nixoci → hello-nixoci-lib → busybox, hello-nixoci → busybox.
# For system = "aarch64-linux" (nixoci --arch arm64) busybox is Debian's arm64 one, fetched by
# scripts/setup, while the host's runs the builds (see nix/busybox.nix).
{
  system ? builtins.currentSystem,
  # a static busybox binary named "busybox" that runs here (default: Debian's busybox-static)
  busyboxBinary ? null,
}:
let
  busybox = import ../../nix/busybox.nix {
    inherit system;
    busybox = busyboxBinary;
  };

  mk = name: script: import ../../nix/busybox-script.nix { inherit busybox system; } name script { };

  lib = mk "hello-nixoci-lib" ''
    mkdir -p "$out/lib" "$out/share/hello-nixoci"
    cat > "$out/lib/greeting.sh" <<'GREETING'
    greet() {
      echo "Hello from nixoci"
    }
    GREETING
    echo "this line comes from $out/share/hello-nixoci/message.txt" > "$out/share/hello-nixoci/message.txt"
  '';

  hello = mk "hello-nixoci" ''
    mkdir -p "$out/bin"
    cat > "$out/bin/hello" <<HELLO
    #!${busybox}/bin/sh
    . ${lib}/lib/greeting.sh
    greet
    echo "running \$0 as pid \$\$ (pid 1 means: inside a container)"
    cat ${lib}/share/hello-nixoci/message.txt
    echo "store paths in this filesystem:"
    ${busybox}/bin/ls -1 /nix/store | ${busybox}/bin/sort
    HELLO
    chmod 0555 "$out/bin/hello"
  '';

  graph = import ../../nix/closure-graph.nix {
    roots = [ hello ];
    shell = busybox;
    name = "hello-nixoci-graph";
    inherit system;
  };
in
hello
// {
  inherit
    busybox
    lib
    hello
    graph
    ;
}
