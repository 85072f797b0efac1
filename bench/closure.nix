# The benchmark closure: ~sizeMB MiB in 30 store paths with references between them, built
# with the real Nix and no nixpkgs / binary cache (busybox from the host, see nix/busybox.nix).
#
#   nix-build bench/closure.nix --arg sizeMB 1000 --arg counter 0 -A graph   # closure graph JSON
#   nix-build bench/closure.nix --arg sizeMB 1000 --arg counter 0 -A app     # the top-level path
#
# Content is real machine code and text: two "pools" are cut from the host's /usr/lib and
# /usr/share (sorted file lists, so the same host gives the same bytes), and every path is made
# of slices of them at offsets of its own. Closure (sizes as a share of sizeMB):
#   busybox                 the real static busybox (~2 MB)
#   bench-bin-{0..3}        one large binary each (14 %, 10 %, 7 %, 5 %), a wrapper script
#                           referencing busybox and two libraries
#   bench-lib-{00..17}      medium files (64 KiB – 2 MiB, ~1.9 % each), `.so` symlinks;
#                           each references one or two earlier libraries
#   bench-share-{0..5}      many small files (4 KiB – 128 KiB, ~5 % each, ~4,800 files each)
#   bench-app               a few KiB; the only path that depends on `counter`, so bumping it
#                           changes exactly one (small, top-level) store path
# Nothing but `app` depends on `counter`: changing it rebuilds only `app` and `graph`.
{
  sizeMB ? 1000,
  counter ? 0,
  system ? builtins.currentSystem,
  busyboxBinary ? null,
}:
let
  common = import ./common.nix { inherit system busyboxBinary; };
  inherit (common) busybox mk pools;

  S = sizeMB * 1048576;
  pct = p: S * p / 1000; # p in tenths of a percent

  bins = builtins.genList (
    i:
    let
      size = pct (builtins.elemAt [ 140 100 70 50 ] i);
      libA = builtins.elemAt libs (i * 4);
      libB = builtins.elemAt libs (i * 4 + 3);
    in
    mk "bench-bin-${toString i}" ''

      mkdir -p "$out/bin" "$out/libexec"
      slice "$binpool" ${toString (i * 7919 * 4096)} ${toString size} "$out/libexec/tool-${toString i}"
      chmod 0555 "$out/libexec/tool-${toString i}"
      cat > "$out/bin/tool-${toString i}" <<EOF
      #!${busybox}/bin/sh
      export LD_LIBRARY_PATH=${libA}/lib:${libB}/lib
      exec $out/libexec/tool-${toString i} "\$@"
      EOF
      chmod 0555 "$out/bin/tool-${toString i}"
    ''
  ) 4;

  libs = builtins.genList (
    i:
    let
      size = pct 19;
      # block size of this library's files: 64 KiB .. 2 MiB
      bs = 65536 * (builtins.elemAt [ 1 2 4 8 16 32 ] (i - (i / 6) * 6));
      deps =
        (if i > 0 then [ (builtins.elemAt libs (i - 1)) ] else [ ])
        ++ (if i > 2 then [ (builtins.elemAt libs (i - 3)) ] else [ ]);
    in
    mk "bench-lib-${toString i}" ''

      mkdir -p "$out/lib" "$out/nix-support"
      slice "$binpool" ${toString ((i * 104729 + 17) * 4096)} ${toString size} "$TMPDIR/blob"
      chop "$TMPDIR/blob" ${toString bs} "$out/lib" libbench${toString i}-part
      for f in "$out"/lib/libbench${toString i}-part*; do mv "$f" "$f.so.1"; ln -s "$(basename "$f").so.1" "$f.so"; done
      chmod 0444 "$out"/lib/*.so.1
      echo "${toString deps}" > "$out/nix-support/propagated-build-inputs"
    ''
  ) 18;

  shares = builtins.genList (
    i:
    let
      chunk = pct 50 / 5;
    in
    mk "bench-share-${toString i}" ''

      d="$out/share/bench-data-${toString i}"
      mkdir -p "$d"
      n=0
      for bs in 4096 8192 16384 32768 131072; do
        slice "$textpool" $(( (${toString (i * 5)} + n) * 10007 * 4096 )) ${toString chunk} "$TMPDIR/blob"
        chop "$TMPDIR/blob" "$bs" "$d/size-$bs" doc-
        n=$((n + 1))
      done
    ''
  ) 6;

  app = mk "bench-app" ''

    mkdir -p "$out/bin" "$out/share/bench-app"
    cat > "$out/bin/bench-app" <<EOF
    #!${busybox}/bin/sh
    echo "bench app build ${toString counter}"
    ${builtins.concatStringsSep "\n" (map (b: "# uses ${b}") (bins ++ libs ++ shares))}
    EOF
    chmod 0555 "$out/bin/bench-app"
    slice "$textpool" ${toString (counter * 8192)} 24576 "$out/share/bench-app/data"
    echo "counter ${toString counter}" > "$out/share/bench-app/version"
  '';

  graph = import ../nix/closure-graph.nix {
    roots = [ app ];
    shell = busybox;
    name = "bench-graph";
    inherit system;
  };
in
{
  inherit
    app
    graph
    bins
    libs
    shares
    pools
    busybox
    ;
}
