# nixoci's Nix library: the closure graph of some packages, and images as a small JSON build plan
# plus apps that run nixoci on it. Works with and without nixpkgs (without, a static busybox from
# the host writes the files; see ./busybox.nix).
#
#   let nixoci = import ./nix { inherit pkgs; nixoci = nixociPackage; }; in
#   nixoci.image {
#     name = "ghcr.io/me/app";
#     packages = [ pkgs.curl myApp ];          # or: devbox = ./.;  (devbox.json + devbox.lock)
#     config = { entrypoint = [ "${myApp}/bin/app" ]; env = { PORT = "8080"; }; preset = "runtime"; };
#   }
#
# The result is the plan (a JSON file) with four apps, named as in nix2container:
#   nix run .#image.copyToDockerDaemon   → nixoci build … --to docker-daemon:NAME:TAG
#   nix run .#image.copyToPodman         → nixoci build … --to podman:NAME:TAG
#   nix run .#image.copyToRegistry       → nixoci build … --to docker://NAME:TAG
#   nix run .#image.copyTo -- DEST       → nixoci build … --to DEST (oci:DIR, docker-archive:FILE, …)
# Extra arguments are passed on to nixoci (e.g. --verbose, --compression zstd).
{
  pkgs ? null,
  # the nixoci package; null runs `nixoci` from PATH
  nixoci ? null,
  # a busybox-like package with bin/sh, used when pkgs is null
  shell ? null,
  system ? builtins.currentSystem,
}:
let
  outer = { inherit pkgs nixoci shell; };

  closureGraph =
    {
      roots,
      name ? "closure-graph",
      pkgs ? outer.pkgs,
      shell ? outer.shell,
    }:
    import ./closure-graph.nix { inherit roots name pkgs shell system; };

  archOf =
    name: s:
    {
      x86_64-linux = "amd64";
      aarch64-linux = "arm64";
    }
    .${s} or (throw "nixoci image ${name}: ${s} is not a Linux system: give arch = \"amd64\" or \"arm64\"");

  # the plan and the apps run on this machine: a busybox that runs here (nix/busybox.nix)
  busyboxFor =
    shell: if shell != null then shell.buildBusybox or shell else (import ./busybox.nix { inherit system; }).buildBusybox;

  # POSIX single quotes: safe for any string in a generated shell script.
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s) + "'";

  # image config (nix2container / dockerTools style names) → nixoci flags
  configFlags =
    config0:
    let
      # `user = null;` (often `if … then … else null`) means "not set", as in nix2container
      config = dropNulls config0;
      opt = name: flag: if config ? ${name} && config.${name} != null then [ flag (toString config.${name}) ] else [ ];
      each = name: flag: f: if config ? ${name} then builtins.concatMap (x: [ flag (f x) ]) (list config.${name}) else [ ];
      list = v: if builtins.isList v then v else if builtins.isAttrs v then kv v else [ v ];
      kv = attrs: map (k: "${k}=${toString attrs.${k}}") (builtins.attrNames attrs);
      command = name: flag: if config ? ${name} then [ flag (builtins.toJSON (list config.${name})) ] else [ ];
      # an unknown attribute (often nix2container's or dockerTools' Entrypoint, Env, …) would
      # otherwise be dropped without a word, and the image would lack it
      known = [ "entrypoint" "cmd" "env" "workdir" "user" "expose" "labels" "volumes" "stopSignal" "annotations" "preset" "copy" "maxLayers" "created" "binFarm" "ignoreCollisions" ];
      renamed = { Entrypoint = "entrypoint"; Cmd = "cmd"; Env = "env"; WorkingDir = "workdir"; User = "user"; ExposedPorts = "expose"; Labels = "labels"; Volumes = "volumes"; StopSignal = "stopSignal"; };
      unknown = builtins.filter (k: !builtins.elem k known) (builtins.attrNames config);
      explain = k: if renamed ? ${k} then "${k} (nixoci's name: ${renamed.${k}})" else k;
      checked =
        if unknown == [ ] then
          true
        else
          throw "nixoci image config: unknown attribute ${builtins.concatStringsSep ", " (map explain unknown)}; known: ${builtins.concatStringsSep ", " known}";
    in
    assert checked;
    command "entrypoint" "--entrypoint"
    ++ command "cmd" "--cmd"
    ++ each "env" "--env" toString
    ++ opt "workdir" "--workdir"
    ++ opt "user" "--user"
    # expose: [ 80 "53/udp" ], or nix2container's / OCI's ExposedPorts form { "80/tcp" = { }; }
    ++ (
      if config ? expose && builtins.isAttrs config.expose then
        builtins.concatMap (p: [ "--expose" p ]) (builtins.attrNames config.expose)
      else
        each "expose" "--expose" toString
    )
    ++ each "labels" "--label" toString
    # volumes: [ "/data" ], or the OCI form { "/data" = { }; }
    ++ (
      if config ? volumes && builtins.isAttrs config.volumes then
        builtins.concatMap (d: [ "--volume" d ]) (builtins.attrNames config.volumes)
      else
        each "volumes" "--volume" toString
    )
    ++ opt "stopSignal" "--stop-signal"
    # annotations: { "org.opencontainers.image.source" = "…"; "index:…" = "…"; } (or "K=V" strings)
    ++ each "annotations" "--annotation" toString
    ++ opt "preset" "--preset"
    # copy: [ "SRC:/DEST" ] or { "/DEST" = SRC; } (a destination is a string; a source is often a path)
    ++ (
      if config ? copy then
        builtins.concatMap (x: [ "--copy" x ]) (
          if builtins.isAttrs config.copy then
            map (dest: "${toString config.copy.${dest}}:${dest}") (builtins.attrNames config.copy)
          else
            map toString (list config.copy)
        )
      else
        [ ]
    )
    ++ opt "maxLayers" "--max-layers"
    ++ opt "created" "--created"
    ++ (if config.binFarm or false then [ "--bin-farm" ] else [ ])
    ++ (if config.ignoreCollisions or false then [ "--ignore-collisions" ] else [ ]);

  # attributes whose value is null, left out: `tag = null;` means the default, not "null"
  dropNulls = attrs: builtins.removeAttrs attrs (builtins.filter (k: attrs.${k} == null) (builtins.attrNames attrs));

  # OCI distribution spec: a repository (with an optional registry host[:port]) and a tag
  nameRe = "(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*";
  tagRe = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
  checkRef =
    name: tag:
    if !builtins.isString name || builtins.match nameRe name == null || builtins.stringLength name > 255 then
      throw "nixoci image: name ${builtins.toJSON name} is not an image name: lower-case letters, digits and . _ - separators, path components joined by /, an optional registry host[:port]/ first (e.g. \"ghcr.io/me/app\"); give the tag as tag = \"…\""
    else if !builtins.isString tag || builtins.match tagRe tag == null then
      throw "nixoci image ${name}: tag ${builtins.toJSON tag} is not an image tag: up to 128 letters, digits, _ . - (not starting with . or -), e.g. tag = \"v1\""
    else
      true;

  # buildImage / buildLayeredImage arguments of nix2container and dockerTools → what nixoci takes
  imageArgs = [ "name" "tag" "packages" "devbox" "config" "pkgs" "arch" "nixoci" "shell" ];
  renamedArgs = {
    copyToRoot = "packages";
    contents = "packages";
    layers = "packages";
    maxLayers = "config.maxLayers";
    created = "config.created";
    architecture = "arch";
  };
  unsupportedArgs = {
    fromImage = "nixoci images have no base image; put what it provided in packages";
    perms = "give files their modes in the derivation, or add them with config.copy";
    initializeNixDatabase = "images hold no Nix database";
    extraCommands = "add files with config.copy";
    fakeRootCommands = "add files with config.copy; config.user owns the home and workdir";
  };

  # image { … } with null attributes left out and the names of other image builders explained
  image =
    args0:
    let
      args = dropNulls args0;
      unknown = builtins.filter (k: !builtins.elem k imageArgs) (builtins.attrNames args);
      explain =
        k:
        if renamedArgs ? ${k} then
          "${k} (nixoci's name: ${renamedArgs.${k}})"
        else if unsupportedArgs ? ${k} then
          "${k} (not in nixoci: ${unsupportedArgs.${k}})"
        else
          k;
      where = if args ? name && builtins.isString args.name then "nixoci image ${args.name}" else "nixoci image";
    in
    if unknown != [ ] then
      throw "${where}: unknown attribute ${builtins.concatStringsSep ", " (map explain unknown)}; known: ${builtins.concatStringsSep ", " imageArgs}"
    else if !(args ? name) then
      throw "nixoci image: give name (e.g. name = \"ghcr.io/me/app\";)"
    else
      assert checkRef args.name (args.tag or "latest");
      imageOf args;

  imageOf =
    {
      name,
      tag ? "latest",
      packages ? [ ],
      devbox ? null,
      config ? { },
      pkgs ? outer.pkgs,
      # the architecture the packages are built for (nix2container: pkgs.go.GOARCH)
      arch ? archOf name (if pkgs != null then pkgs.stdenv.hostPlatform.system or system else system),
      nixoci ? outer.nixoci,
      shell ? outer.shell,
    }:
    let
      bb = busyboxFor shell;
      graph = closureGraph {
        roots = packages;
        name = "${baseNameOf name}-graph";
        inherit pkgs shell;
      };
      # only the two files nixoci reads, so that editing the project does not change the plan
      devboxSrc = builtins.path {
        name = "devbox-project";
        path = devbox;
        filter = p: _type: builtins.elem (baseNameOf p) [ "devbox.json" "devbox.lock" ];
      };
      source =
        if devbox != null && packages != [ ] then
          throw "nixoci image ${name}: give packages or devbox, not both (the devbox project's packages are the image)"
        else if devbox != null then
          [ "--devbox" "${devboxSrc}" ]
        else if packages != [ ] then
          [ "--graph" "${graph}" ]
        else
          throw "nixoci image ${name}: give packages or devbox";
      args = source ++ [ "--arch" arch ] ++ configFlags config;
      plan = builtins.toJSON {
        version = 1;
        inherit name tag arch args;
      };
      nixociBin = if nixoci != null then "${nixoci}/bin/nixoci" else "nixoci";
      # the script's command line: everything quoted, then the destination and the user's arguments
      script =
        dest:
        "set -e\nexec ${nixociBin} build ${builtins.concatStringsSep " " (map quote args)} --to ${dest} \"$@\"\n";
      writeBin =
        binName: text:
        if pkgs != null then
          pkgs.writeShellScriptBin binName text
        else
          derivation {
            name = binName;
            inherit system text;
            builder = "${bb}/bin/sh";
            args = [
              "-c"
              ''
                ${bb}/bin/mkdir -p "$out/bin"
                printf '#!%s\n%s' ${bb}/bin/sh "$text" > "$out/bin/${binName}"
                ${bb}/bin/chmod 0555 "$out/bin/${binName}"
              ''
            ];
          };
      ref = "${name}:${tag}";
      planDrv =
        if pkgs != null then
          pkgs.writeText "${baseNameOf name}-nixoci-plan.json" plan
        else
          derivation {
            name = "${baseNameOf name}-nixoci-plan.json";
            inherit system plan;
            builder = "${bb}/bin/sh";
            args = [
              "-c"
              "printf '%s\\n' \"$plan\" > \"$out\""
            ];
          };
    in
    planDrv
    // {
      inherit graph args;
      copyToDockerDaemon = writeBin "copy-to-docker-daemon" (script (quote "docker-daemon:${ref}"));
      copyToPodman = writeBin "copy-to-podman" (script (quote "podman:${ref}"));
      copyToRegistry = writeBin "copy-to-registry" (script (quote "docker://${ref}"));
      # an oci: or docker-archive: destination without a name gets the image's (as nix2container's
      # copyTo); docker-archive:- too, for `copy-to docker-archive:- | docker load`
      copyTo = writeBin "copy-to" ''
        [ $# -ge 1 ] || { echo "usage: copy-to DEST [nixoci flags]  (DEST: oci:DIR, docker-archive:FILE, docker://REF, …)" >&2; exit 2; }
        dest=$1
        shift
        case "$dest" in
          oci:*:* | docker-archive:*:*) ;;
          oci:*) dest="$dest:"${quote tag} ;;
          docker-archive:*) dest="$dest:"${quote ref} ;;
        esac
        ${script "\"$dest\""}'';
    };
in
{
  inherit closureGraph image configFlags;
}
