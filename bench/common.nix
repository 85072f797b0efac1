# Shared by bench/closure.nix and bench/churn.nix: busybox, the content pools, and `mk`, a
# derivation with a busybox shell builder and the helper functions below in its script.
{
  system ? builtins.currentSystem,
  busyboxBinary ? null,
}:
let
  busybox = import ../nix/busybox.nix {
    inherit system;
    busybox = busyboxBinary;
  };

  # A pool is `size` bytes of host files (sorted list, so the same host gives the same bytes),
  # read directly from the host (these machines build with `sandbox = false`). Only its
  # derivation, not its content, decides the store path, so it is built once and kept.
  pool =
    name: size: script:
    derivation {
      inherit name system;
      builder = "${busybox}/bin/sh";
      args = [
        "-e"
        "-c"
        ''
          export PATH=${busybox}/bin
          ${script} | head -c ${toString size} > "$out"
          [ "$(wc -c < "$out")" -eq ${toString size} ] || { echo "pool $out: host files too small" >&2; exit 1; }
        ''
      ];
    };

  pools = {
    # machine code and data from /usr/lib (compresses like real binaries do)
    bin = pool "bench-pool-bin" 134217728 "find /usr/lib -type f -size +4k -print0 | sort -z | xargs -0 cat 2>/dev/null";
    # text from /usr/share (docs, man pages, scripts, locale data), without compressed files
    text = pool "bench-pool-text" 67108864 "find /usr/share -type f ! -name '*.gz' ! -name '*.xz' ! -name '*.bz2' ! -name '*.png' -print0 | sort -z | xargs -0 cat 2>/dev/null";
  };

  # slice POOL OFFSET LEN OUT: LEN bytes of POOL from OFFSET (a multiple of 4096; wraps around)
  # chop FILE BS DIR PREFIX: cut FILE into BS-byte files DIR/PREFIX00000, 00001, ... (and delete it)
  prelude = ''
    slice() {
      _p=$1; _off=$2; _len=$3; _out=$4
      _ps=$(stat -c %s "$_p")
      : > "$_out"
      while [ "$_len" -gt 0 ]; do
        _o=$(( _off % _ps )); _n=$(( _ps - _o ))
        if [ "$_n" -gt "$_len" ]; then _n=$_len; fi
        dd if="$_p" bs=65536 skip=$(( _o / 65536 )) count=$(( (_o % 65536 + _n + 65535) / 65536 )) 2>/dev/null \
          | tail -c +$(( _o % 65536 + 1 )) | head -c "$_n" >> "$_out"
        _off=$(( _off + _n )); _len=$(( _len - _n ))
      done
    }
    chop() {
      mkdir -p "$3"
      if [ -x /usr/bin/split ]; then
        /usr/bin/split -a 5 -d -b "$2" "$1" "$3/$4"
      else
        _sz=$(stat -c %s "$1"); _i=0
        while [ $(( _i * $2 )) -lt "$_sz" ]; do
          dd if="$1" of="$3/$4$(printf %05d "$_i")" bs="$2" skip="$_i" count=1 2>/dev/null
          _i=$(( _i + 1 ))
        done
      fi
      rm -f "$1"
    }
  '';

  mk =
    name: script:
    import ../nix/busybox-script.nix { inherit busybox system; } name (prelude + script) {
      binpool = pools.bin;
      textpool = pools.text;
    };
in
{
  inherit
    busybox
    pools
    prelude
    mk
    ;
}
