// A flake with no inputs, so that it evaluates offline. Pure evaluation cannot read /usr/bin, so
// busybox comes from a copy of the host's static busybox inside the flake (see nix/busybox.nix).
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './env.js';

/**
 * `packages.x86_64-linux.default`: flake-hello, with bin/flake-hello (prints "hello from a flake")
 * and a bin/sh of its own, which collides with busybox's in a bin farm. Also `.busybox`.
 */
export function writeTestFlake(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nixoci-flake-'));
  copyFileSync(join(repoRoot, 'nix', 'busybox.nix'), join(dir, 'busybox.nix'));
  copyFileSync('/usr/bin/busybox', join(dir, 'busybox'));
  writeFileSync(
    join(dir, 'flake.nix'),
    `{
  outputs = { self }:
    let
      system = "x86_64-linux";
      busybox = import ./busybox.nix { inherit system; busybox = ./busybox; };
      hello = derivation {
        name = "flake-hello";
        inherit system;
        builder = "\${busybox}/bin/sh";
        args = [ "-c" ''
          PATH=\${busybox}/bin
          mkdir -p $out/bin
          printf '#!\${busybox}/bin/sh\\necho hello from a flake\\n' > $out/bin/flake-hello
          printf '#!\${busybox}/bin/sh\\necho not busybox\\n' > $out/bin/sh
          chmod 0555 $out/bin/flake-hello $out/bin/sh
        '' ];
      };
    in {
      packages.\${system} = { default = hello; inherit busybox; };
    };
}
`,
  );
  return dir;
}
