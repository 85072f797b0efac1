# nixoci as a flake: the CLI package, the Nix library and an app.
#
#   inputs.nixoci.url = "github:…/nixoci";
#   packages.x86_64-linux.image = nixoci.lib.x86_64-linux.image { name = "app"; packages = [ app ]; };
#   nix run .#image.copyToDockerDaemon
#
# `lib.<system>` is nix/default.nix with nixpkgs and the nixoci package filled in; `lib.withPkgs`
# takes your own pkgs. Not verified here (no binary cache): the package build, which uses
# importNpmLock so that no npmDepsHash has to be computed by hand; zstd-napi's native addon must
# build from source inside the sandbox.
{
  description = "nixoci: reproducible OCI images from Nix closures, streamed straight from /nix/store";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      package =
        pkgs:
        pkgs.buildNpmPackage {
          pname = "nixoci";
          version = (builtins.fromJSON (builtins.readFile ./package.json)).version;
          src = pkgs.lib.fileset.toSource {
            root = ./.;
            fileset = pkgs.lib.fileset.unions [
              ./package.json
              ./package-lock.json
              ./tsconfig.json
              ./tsconfig.build.json
              ./bin
              ./src
              ./scripts/bundle.mjs
            ];
          };
          npmDeps = pkgs.importNpmLock { npmRoot = ./.; };
          npmConfigHook = pkgs.importNpmLock.npmConfigHook;
          nativeBuildInputs = [ pkgs.python3 ];
          # bin/nixoci.js starts as a shell script that runs `node` from PATH: pin this package's.
          postInstall = ''
            substituteInPlace $out/lib/node_modules/nixoci/bin/nixoci.js \
              --replace-fail 'exec node "$0"' 'exec ${pkgs.nodejs}/bin/node "$0"'
          '';
          meta.mainProgram = "nixoci";
        };

      withPkgs =
        pkgs:
        import ./nix {
          inherit pkgs;
          inherit (pkgs) system;
          nixoci = package pkgs;
        };
    in
    {
      lib = forAll (_system: withPkgs) // {
        inherit withPkgs;
      };

      packages = forAll (
        _system: pkgs: rec {
          nixoci = package pkgs;
          default = nixoci;
        }
      );

      apps = forAll (
        system: _pkgs: {
          default = {
            type = "app";
            program = "${self.packages.${system}.nixoci}/bin/nixoci";
          };
        }
      );
    };
}
