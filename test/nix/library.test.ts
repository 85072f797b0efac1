import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { cliBin } from '../helpers/cli.js';
import { repoRoot } from '../helpers/env.js';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'nixoci-nixlib-'));
const env = { ...process.env, NIX_REMOTE: '' };
const ref = 'nixoci-nixlib-test:latest';
const lib = join(repoRoot, 'nix');
const offline = join(repoRoot, 'example', 'offline');

afterAll(async () => {
  await dockerRmi(ref);
});

async function nix(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { env, encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
}

/** A Nix expression file in the work dir (a file, so that paths in it are absolute). */
function expr(name: string, text: string): string {
  const f = join(work, `${name}.nix`);
  writeFileSync(f, text);
  return f;
}

describe('nix/ library', () => {
  it('parses flake.nix and nix/default.nix', async () => {
    await nix('nix-instantiate', ['--parse', join(repoRoot, 'flake.nix')]);
    await nix('nix-instantiate', ['--parse', join(lib, 'default.nix')]);
  });

  it('turns an image config into nixoci flags', async () => {
    const f = expr(
      'flags',
      `(import ${lib} { }).configFlags {
        entrypoint = [ "/bin/app" "--port" "80" ]; cmd = "serve";
        env = { B = "2"; A = "it's"; }; expose = [ 80 "53/udp" ]; labels = { x = "y"; };
        workdir = "/app"; user = "app:1000"; preset = "runtime"; binFarm = true; maxLayers = 50;
        copy = { "/app/static" = /srv/static; "/etc/app.conf" = "./app.conf"; };
      }`,
    );
    expect(JSON.parse(await nix('nix-instantiate', ['--eval', '--strict', '--json', f]))).toEqual([
      ...['--entrypoint', '["/bin/app","--port","80"]', '--cmd', '["serve"]'],
      ...['--env', "A=it's", '--env', 'B=2', '--workdir', '/app', '--user', 'app:1000'],
      ...['--expose', '80', '--expose', '53/udp', '--label', 'x=y', '--preset', 'runtime'],
      ...['--copy', '/srv/static:/app/static', '--copy', './app.conf:/etc/app.conf'],
      ...['--max-layers', '50', '--bin-farm'],
    ]);
  });

  it("refuses unknown config attributes, naming nixoci's name for nix2container's, and packages with devbox", async () => {
    const f = expr(
      'unknown-config',
      `((import ${lib} { system = "x86_64-linux"; }).image {
        name = "app"; packages = [ (import ${offline} { }) ];
        config = { Entrypoint = [ "/bin/app" ]; WorkingDir = "/app"; colour = "red"; };
      }).args`,
    );
    const both = expr(
      'packages-and-devbox',
      `((import ${lib} { system = "x86_64-linux"; }).image {
        name = "app"; packages = [ (import ${offline} { }) ]; devbox = ${offline};
      }).args`,
    );
    await expect(nix('nix-instantiate', ['--eval', '--strict', '--json', both])).rejects.toThrow(
      'nixoci image app: give packages or devbox, not both',
    );
    await expect(nix('nix-instantiate', ['--eval', '--strict', '--json', f])).rejects.toThrow(
      "nixoci image config: unknown attribute Entrypoint (nixoci's name: entrypoint), WorkingDir (nixoci's name: workdir), colour; known: entrypoint, cmd, env,",
    );
  });

  it("refuses nix2container's and dockerTools' image arguments naming nixoci's, and bad names and tags", async () => {
    const project = mkdtempSync(join(work, 'hx-devbox-args-'));
    writeFileSync(join(project, 'devbox.json'), '{"packages": []}');
    const evalImage = (name: string, attrs: string): Promise<string> =>
      nix('nix-instantiate', [
        '--eval',
        '--strict',
        '--json',
        '--read-write-mode',
        expr(
          name,
          `((import ${lib} { system = "x86_64-linux"; }).image { devbox = ${project}; ${attrs} }).args`,
        ),
      ]);
    await expect(
      evalImage('n2c-args', 'name = "app"; copyToRoot = [ ]; maxLayers = 3; fromImage = null; colour = 1;'),
    ).rejects.toThrow(
      "nixoci image app: unknown attribute colour, copyToRoot (nixoci's name: packages), maxLayers (nixoci's name: config.maxLayers); known: name, tag, packages, devbox, config, pkgs, arch, nixoci, shell",
    );
    await expect(evalImage('n2c-from', 'name = "app"; fromImage = "alpine";')).rejects.toThrow(
      'unknown attribute fromImage (not in nixoci: nixoci images have no base image; put what it provided in packages)',
    );
    for (const [file, attrs, message] of [
      ['bad-upper', 'name = "App";', 'nixoci image: name "App" is not an image name'],
      ['bad-tagged', 'name = "app:v1";', 'nixoci image: name "app:v1" is not an image name'],
      ['bad-slash', 'name = "ghcr.io/me/";', 'nixoci image: name "ghcr.io/me/" is not an image name'],
      ['bad-tag', 'name = "app"; tag = "-rc";', 'nixoci image app: tag "-rc" is not an image tag'],
      ['bad-tag-int', 'name = "app"; tag = 1;', 'nixoci image app: tag 1 is not an image tag'],
      ['no-name', 'tag = "v1";', 'nixoci image: give name'],
    ] as const)
      await expect(evalImage(file, attrs), file).rejects.toThrow(message);
    // null attributes are left out: the defaults apply, and config's nulls add no flag
    expect(
      JSON.parse(
        await evalImage(
          'nulls',
          'name = "localhost:5000/team/app_x"; tag = null; arch = null; config = { user = null; env = null; workdir = "/srv"; cmd = null; };',
        ),
      ),
    ).toEqual([
      '--devbox',
      expect.stringMatching(/-devbox-project$/),
      '--arch',
      'amd64',
      '--workdir',
      '/srv',
    ]);
  });

  it('takes expose in the ExposedPorts form of OCI and nix2container, { "80/tcp" = { }; }', async () => {
    const f = expr(
      'expose-set',
      `(import ${lib} { }).configFlags { expose = { "8080/tcp" = { }; "53/udp" = { }; }; }`,
    );
    expect(JSON.parse(await nix('nix-instantiate', ['--eval', '--strict', '--json', f]))).toEqual([
      ...['--expose', '53/udp', '--expose', '8080/tcp'],
    ]);
  });

  it('takes volumes (a list, or the OCI form { "/data" = { }; }), stopSignal and annotations', async () => {
    const f = expr(
      'volumes',
      `let c = (import ${lib} { }).configFlags; in [
        (c { volumes = [ "/data" "/var/log" ]; stopSignal = "SIGINT"; })
        (c { volumes = { "/var/log" = { }; "/data" = { }; }; stopSignal = 3; })
      ]`,
    );
    expect(JSON.parse(await nix('nix-instantiate', ['--eval', '--strict', '--json', f]))).toEqual([
      ['--volume', '/data', '--volume', '/var/log', '--stop-signal', 'SIGINT'],
      ['--volume', '/data', '--volume', '/var/log', '--stop-signal', '3'],
    ]);
    const annotated = expr(
      'annotations',
      `(import ${lib} { }).configFlags { annotations = { "org.opencontainers.image.source" = "https://x/y"; "index:a" = "b"; }; }`,
    );
    expect(JSON.parse(await nix('nix-instantiate', ['--eval', '--strict', '--json', annotated]))).toEqual([
      ...['--annotation', 'index:a=b', '--annotation', 'org.opencontainers.image.source=https://x/y'],
    ]);
    const oci = expr(
      'volumes-oci',
      `(import ${lib} { }).configFlags { Volumes = { "/data" = { }; }; StopSignal = "SIGINT"; }`,
    );
    await expect(nix('nix-instantiate', ['--eval', '--strict', '--json', oci])).rejects.toThrow(
      "unknown attribute StopSignal (nixoci's name: stopSignal), Volumes (nixoci's name: volumes)",
    );
  });

  it('builds the closure graph, the plan and a copyTo app without nixpkgs; the app runs nixoci', async () => {
    const f = expr(
      'image',
      `let
        nixoci = import ${lib} { };
        app = import ${offline} { };
        image = nixoci.image {
          name = "nixoci-nixlib-test";
          tag = "v1";
          packages = [ app ];
          config = { entrypoint = [ "\${app}/bin/hello" ]; env = { GREETING = "it's me"; }; binFarm = true; };
        };
      in { plan = image; inherit (image) copyTo copyToDockerDaemon; graph = nixoci.closureGraph { roots = [ app ]; }; }`,
    );
    const [copyTo, daemon, graph, plan] = (await nix('nix-build', ['--no-out-link', f])).trim().split('\n');
    const planJson = JSON.parse(readFileSync(plan!, 'utf8'));
    expect(planJson).toMatchObject({ version: 1, name: 'nixoci-nixlib-test', tag: 'v1', arch: 'amd64' });
    expect(planJson.args.slice(0, 4)).toEqual([
      '--graph',
      expect.stringMatching(/-nixoci-nixlib-test-graph$/),
      '--arch',
      'amd64',
    ]);
    expect(JSON.parse(readFileSync(graph!, 'utf8')).roots).toHaveLength(1);
    expect(readFileSync(join(daemon!, 'bin', 'copy-to-docker-daemon'), 'utf8')).toContain(
      '--to \'docker-daemon:nixoci-nixlib-test:v1\' "$@"',
    );

    // `nixoci` on PATH is this checkout's CLI
    const bin = mkdtempSync(join(tmpdir(), 'nixoci-shim-'));
    writeFileSync(join(bin, 'nixoci'), `#!/bin/sh\nexec ${cliBin} "$@"\n`, {
      mode: 0o755,
    });
    const archive = join(work, 'image.tar');
    await run(
      join(copyTo!, 'bin', 'copy-to'),
      [`docker-archive:${archive}:${ref}`, '--no-cache', '--quiet'],
      {
        env: { ...env, PATH: `${bin}:${process.env.PATH}` },
      },
    );
    // without a name, the destination gets the image's name and tag
    const layout = join(work, 'lib-oci');
    await run(join(copyTo!, 'bin', 'copy-to'), [`oci:${layout}`, '--no-cache', '--quiet'], {
      env: { ...env, PATH: `${bin}:${process.env.PATH}` },
    });
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe('v1');
    // docker-archive:- (for a pipe into docker load) is named too
    const piped = join(work, 'piped.tar');
    await run('sh', ['-c', `"$0" docker-archive:- --quiet > "$1"`, join(copyTo!, 'bin', 'copy-to'), piped], {
      env: { ...env, PATH: `${bin}:${process.env.PATH}` },
    });
    const listed = (await run('tar', ['-xOf', piped, 'manifest.json'], { encoding: 'utf8' })).stdout;
    expect((JSON.parse(listed) as { RepoTags: string[] }[])[0]!.RepoTags).toEqual(['nixoci-nixlib-test:v1']);
    await docker(['load', '-i', archive]);
    const out = await dockerRunOutput(ref);
    expect(out).toContain('Hello from nixoci');
    const echoed = await dockerRunOutput(
      ref,
      ['-c', 'echo "$GREETING"; command -v hello'],
      ['--entrypoint', 'sh'],
    );
    expect(echoed).toBe("it's me\n/bin/hello\n");
  });

  it("an image's arch defaults to the system its packages are built for, as nix2container's does", async () => {
    const project = mkdtempSync(join(tmpdir(), 'nixoci-nixlib-devbox-'));
    writeFileSync(join(project, 'devbox.json'), '{"packages": []}');
    const f = expr(
      'arch',
      `let
        stub = system: {
          stdenv.hostPlatform.system = system;
          writeText = name: text: { inherit name text; };
          writeShellScriptBin = name: text: { inherit name text; };
        };
        archOf = lib: (lib.image { name = "app"; devbox = ${project}; }).args;
      in {
        aarch64 = archOf (import ${lib} { system = "aarch64-linux"; });
        x86_64 = archOf (import ${lib} { system = "x86_64-linux"; });
        pkgsAarch64 = archOf (import ${lib} { pkgs = stub "aarch64-linux"; });
      }`,
    );
    const v = JSON.parse(
      await nix('nix-instantiate', ['--eval', '--strict', '--json', '--read-write-mode', f]),
    );
    expect(v.aarch64.slice(2)).toEqual(['--arch', 'arm64']);
    expect(v.x86_64.slice(2)).toEqual(['--arch', 'amd64']);
    expect(v.pkgsAarch64.slice(2)).toEqual(['--arch', 'arm64']);
    const darwin = expr(
      'arch-darwin',
      `((import ${lib} { system = "aarch64-darwin"; }).image { name = "app"; devbox = ${project}; }).args`,
    );
    await expect(nix('nix-instantiate', ['--eval', '--strict', '--json', darwin])).rejects.toThrow(
      /nixoci image app: aarch64-darwin is not a Linux system: give arch = "amd64" or "arm64"/,
    );
  });

  it('uses pkgs.writeText / writeShellScriptBin when pkgs is given, and a devbox project as source', async () => {
    const project = mkdtempSync(join(tmpdir(), 'nixoci-nixlib-devbox-'));
    writeFileSync(join(project, 'devbox.json'), '{"packages": []}');
    writeFileSync(join(project, 'unrelated.txt'), 'not copied');
    const f = expr(
      'stub',
      `let
        pkgs = {
          writeText = name: text: { stub = "writeText"; inherit name text; };
          writeShellScriptBin = name: text: { stub = "writeShellScriptBin"; inherit name text; };
        };
        image = (import ${lib} { inherit pkgs; nixoci = "/nix/store/00000000000000000000000000000000-nixoci"; }).image {
          name = "ghcr.io/me/app"; tag = "v1"; devbox = ${project}; arch = "arm64";
        };
      in { plan = image.text; registry = image.copyToRegistry; }`,
    );
    const v = JSON.parse(
      await nix('nix-instantiate', ['--eval', '--strict', '--json', '--read-write-mode', f]),
    );
    const plan = JSON.parse(v.plan);
    expect(plan.args).toEqual(['--devbox', expect.stringMatching(/-devbox-project$/), '--arch', 'arm64']);
    expect(readFileSync(join(plan.args[1], 'devbox.json'), 'utf8')).toBe('{"packages": []}');
    expect(v.registry.stub).toBe('writeShellScriptBin');
    expect(v.registry.name).toBe('copy-to-registry');
    expect(v.registry.text).toContain(
      "exec /nix/store/00000000000000000000000000000000-nixoci/bin/nixoci build '--devbox'",
    );
    expect(v.registry.text).toContain('--to \'docker://ghcr.io/me/app:v1\' "$@"');
  });
});
