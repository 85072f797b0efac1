import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { writeTestFlake } from '../helpers/flake.js';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { absentPath, writeDevboxProject } from '../helpers/devbox.js';
import { buildFixtureClosure, fixtureClosureNix, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-sources-'));
const env = { NIX_REMOTE: '' };
const ref = 'nixoci-installable-test:latest';
let fx: FixtureClosure;
let flake: string;

interface Report {
  plans: { layers: { storePaths: string[] }[] }[];
}

const storePathsOf = (r: Report): string[] => r.plans[0]!.layers.flatMap((l) => l.storePaths).sort();

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'sources' });
  flake = writeTestFlake();
});
afterAll(async () => {
  await dockerRmi(ref);
});

describe('sources', () => {
  it('--installable builds a flake with nix build and makes an image that runs it', async () => {
    const r = await nixoci(['inspect', '--installable', `${flake}#default`, '--verbose', '--json'], { env });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /running: nix build --extra-experimental-features 'nix-command flakes' --no-link --json --system x86_64-linux \S+#default/,
    );
    const paths = storePathsOf(JSON.parse(r.stdout) as Report);
    expect(paths).toHaveLength(2);
    expect(paths.some((p) => p.endsWith('-flake-hello'))).toBe(true);

    const archive = join(work, 'flake.tar');
    const b = await nixoci(
      [
        'build',
        '--installable',
        `${flake}#default`,
        '--to',
        `docker-archive:${archive}:${ref}`,
        '--cmd',
        'flake-hello',
      ],
      { env },
    );
    expect(b.code, b.stderr).toBe(0);
    await docker(['load', '-i', archive]);
    expect(await dockerRunOutput(ref)).toBe('hello from a flake\n');
  });

  it('--file X.nix --attr A builds with nix-build', async () => {
    const r = await nixoci(['inspect', '--file', fixtureClosureNix, '--attr', 'app', '--verbose', '--json'], {
      env,
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      `running: nix-build --no-out-link --no-build-output ${fixtureClosureNix} -A app --option system x86_64-linux`,
    );
    // the default tag is v1: another app path than fx.app, the same dependencies
    const paths = storePathsOf(JSON.parse(r.stdout) as Report);
    expect(paths.filter((p) => !p.endsWith('-fixture-app'))).toEqual(fx.paths.filter((p) => p !== fx.app));
  });

  it('rejects two sources, and --attr without --file', async () => {
    let r = await nixoci(['inspect', '--file', fixtureClosureNix, '--graph', fx.graphFile], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('give one source, not --graph and --file');
    r = await nixoci(['inspect', '--attr', 'app', '--graph', fx.graphFile], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--attr needs --file X.nix');
  });

  it('a bin farm refuses two packages with the same bin/NAME unless --ignore-collisions (first wins)', async () => {
    const installed = await nixociJson<Report>(['inspect', '--installable', `${flake}#default`], { env });
    const hello = storePathsOf(installed).find((p) => p.endsWith('-flake-hello'))!;
    const busybox = storePathsOf(installed).find((p) => p.endsWith('-busybox'))!;
    const args = ['inspect', '--path', hello, '--path', busybox, '--bin-farm'];
    const r = await nixoci(args, { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nixoci: error: bin/sh is provided by two packages: flake-hello');
    const ok = await nixoci([...args, '--ignore-collisions'], { env });
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('--path takes a result symlink, as nix path-info does, and refuses one into a store path', async () => {
    const dir = mkdtempSync(join(work, 'result-'));
    symlinkSync(fx.app, join(dir, 'result'));
    const r = await nixoci(['inspect', '--path', './result', '--json', '--verbose'], { env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`--path ./result: ${fx.app}\n`);
    expect(storePathsOf(JSON.parse(r.stdout) as Report)).toEqual(fx.paths);
    const inside = join(fx.app, readdirSync(fx.app)[0]!);
    symlinkSync(inside, join(dir, 'inside'));
    const bad = await nixoci(['inspect', '--path', join(dir, 'inside')], { env });
    // a mistake in the command line, as a malformed image reference is
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      `nixoci inspect: --path: "${inside}" is not a store path: a path inside a store path`,
    );
  });

  it('--path takes a result symlink to a store path that is itself a symlink, and a trailing slash', async () => {
    const dir = mkdtempSync(join(work, 'result-'));
    // a store path that is a symlink (pointing out of the store), as `nix-store --add` of a link makes
    symlinkSync('/etc/hostname', join(dir, 'hostname-link'));
    const linkPath = execFileSync('nix-store', ['--add', join(dir, 'hostname-link')], {
      encoding: 'utf8',
    }).trim();
    symlinkSync(linkPath, join(dir, 'result'));
    const r = await nixoci(['inspect', '--path', './result', '--json'], { env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(storePathsOf(JSON.parse(r.stdout) as Report)).toEqual([linkPath]);
    // what shell completion leaves after a directory or a link to one; nix path-info takes both
    symlinkSync(fx.app, join(dir, 'app'));
    for (const p of [`${fx.app}/`, './app/', `${join(dir, 'app')}//`]) {
      const s = await nixoci(['inspect', '--path', p, '--json'], { env, cwd: dir });
      expect(s.code, `${p}: ${s.stderr}`).toBe(0);
      expect(storePathsOf(JSON.parse(s.stdout) as Report)).toEqual(fx.paths);
    }
  });

  it('a store path given twice (itself and a result link to it) is one root: the same image as once', async () => {
    const dir = mkdtempSync(join(work, 'twice-'));
    symlinkSync(fx.app, join(dir, 'result'));
    const configOf = async (name: string, paths: string[]): Promise<{ digest: string; env: string[] }> => {
      const out = join(dir, name);
      const r = await nixociJson<{ manifestDigest: string }>(
        ['build', ...paths.flatMap((p) => ['--path', p]), '--to', `oci:${out}`],
        { env, cwd: dir },
      );
      const blob = (d: string): string => readFileSync(join(out, 'blobs', 'sha256', d.slice(7)), 'utf8');
      const manifest = JSON.parse(blob(r.manifestDigest)) as { config: { digest: string } };
      const config = JSON.parse(blob(manifest.config.digest)) as { config: { Env: string[] } };
      return { digest: r.manifestDigest, env: config.config.Env };
    };
    const once = await configOf('once', [fx.app]);
    expect(once.env).toEqual([`PATH=${fx.app}/bin`]);
    expect(await configOf('twice', [fx.app, './result'])).toEqual(once);
  });

  it('--installable takes a store path or a result link, which nix build --json prints as {path}', async () => {
    const dir = mkdtempSync(join(work, 'installable-'));
    symlinkSync(fx.app, join(dir, 'result'));
    for (const installable of [fx.app, './result']) {
      const r = await nixoci(['inspect', '--installable', installable, '--json'], { env, cwd: dir });
      expect(r.code, `${installable}: ${r.stderr}`).toBe(0);
      expect(storePathsOf(JSON.parse(r.stdout) as Report)).toEqual(fx.paths);
    }
  });

  it('--installable STOREPATH/DIR#ATTR with no flake in DIR is an error, not an image of the store path', async () => {
    // a devbox project copied into the store without its relative flake (e.g. by a filter)
    const project = mkdtempSync(join(work, 'copied-project-'));
    writeFileSync(join(project, 'devbox.json'), '{"packages": ["./sub#default"]}');
    const copied = execFileSync('nix-store', ['--add', project], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    }).trim();
    const r = await nixoci(['inspect', '--installable', `${copied}/sub#default`], { env });
    expect(r.code, r.stdout).toBe(1);
    expect(r.stderr).toContain(
      `nix build ${copied}/sub#default: Nix found no flake.nix in ${copied}/sub and took the ref for the store path ${copied} instead of building #default`,
    );
  });

  it('an arm64 build whose builder this amd64 machine cannot run says so, with what to do', async () => {
    // an aarch64 builder: the host's busybox with e_machine set to AArch64 (0xb7)
    const dir = mkdtempSync(join(work, 'arm-flake-'));
    const elf = readFileSync('/usr/bin/busybox');
    elf.writeUInt16LE(0xb7, 18);
    writeFileSync(join(dir, 'builder'), elf, { mode: 0o755 });
    writeFileSync(
      join(dir, 'flake.nix'),
      `{ outputs = { self }: { packages.aarch64-linux.default = derivation {
        name = "arm-only"; system = "aarch64-linux"; builder = "\${./builder}"; args = [ "true" ];
      }; }; }`,
    );
    const r = await nixoci(['inspect', '--installable', `${dir}#default`, '--arch', 'arm64'], { env });
    expect(r.code).toBe(1);
    const [line, hint] = r.stderr.split('\n');
    expect(line).toMatch(
      /^nixoci: error: nix build failed: this x86_64-linux machine cannot run aarch64-linux builders: error: builder for '\S+-arm-only\.drv' failed .*Exec format error/,
    );
    expect(hint).toBe(
      'hint: build on an aarch64-linux machine (a remote builder: builders in nix.conf), enable emulation (binfmt, extra-platforms = aarch64-linux), use a binary cache that has the paths, or give a closure built elsewhere (--graph arm64=FILE)',
    );
  });

  it("a derivation fixed to another system than the --arch's says so, not only Nix's 'but I am a …'", async () => {
    const dir = mkdtempSync(join(work, 'fixed-system-'));
    writeFileSync(
      join(dir, 'x86.nix'),
      `let fx = import ${fixtureClosureNix} { system = "x86_64-linux"; }; in derivation {
        name = "hx-x86-only"; system = "x86_64-linux"; builder = "\${fx.busybox}/bin/sh"; args = [ "-c" "mkdir $out" ];
      }`,
    );
    const r = await nixoci(['inspect', '--file', 'x86.nix', '--arch', 'arm64'], { env, cwd: dir });
    expect(r.code).toBe(1);
    const [line, hint, ...rest] = r.stderr.split('\n');
    expect(line).toMatch(
      /^nixoci: error: nix-build failed: a derivation is for x86_64-linux, not aarch64-linux \(the system of --arch arm64\): error: a 'x86_64-linux' with features \{\} is required to build '\S+-hx-x86-only\.drv'/,
    );
    expect(hint).toBe(
      'hint: give --arch amd64, or let the Nix file build for the system nixoci asks for (builtins.currentSystem; in a flake, packages.SYSTEM)',
    );
    expect(rest).toEqual(['']);
  });

  it("a Nix error is reported by its error line, not its last lines, and without Nix's control characters", async () => {
    const dir = mkdtempSync(join(work, 'nix-errors-'));
    writeFileSync(join(dir, 'eval.nix'), 'let x = 1;\nin x.y\n');
    const e = await nixoci(['inspect', '--file', 'eval.nix'], { env, cwd: dir });
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(
      /^nixoci: error: nix-build failed: error: value is an integer while a set was expected \| at \S*eval\.nix:2:4:/,
    );
    // a builder that writes NULs and a colour escape to stderr, then fails
    writeFileSync(
      join(dir, 'build.nix'),
      `let fx = import ${fixtureClosureNix} { }; in derivation {
        name = "fails"; system = builtins.currentSystem; builder = "\${fx.busybox}/bin/sh";
        args = [ "-c" "printf 'bad\\\\000\\\\033[31mred\\\\n' >&2; exit 3" ];
      }`,
    );
    const b = await nixoci(['inspect', '--file', 'build.nix'], { env, cwd: dir });
    expect(b.code).toBe(1);
    const [line, hint, ...rest] = b.stderr.split('\n');
    expect(line).toMatch(
      /^nixoci: error: nix-build failed: error: builder for '\S+-fails\.drv' failed with exit code 3/,
    );
    expect(line).toContain('> badred');
    expect(line).not.toMatch(/[\x00-\x1f\x7f]/);
    expect(hint).toMatch(/^hint: /);
    expect(rest).toEqual(['']);
  });

  it("a failed build is reported by the builder's error and the end of its log, with nix log in the hint", async () => {
    // the app's dependency fails after 200 lines; Nix then closes with "1 dependencies … failed"
    const dir = mkdtempSync(join(work, 'nix-build-fails-'));
    writeFileSync(
      join(dir, 'dep.nix'),
      `let fx = import ${fixtureClosureNix} { }; sh = "\${fx.busybox}/bin/sh";
        lib = derivation {
          name = "hx-lib-fails"; system = builtins.currentSystem; builder = sh; stamp = "${dir}";
          args = [ "-c" "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; echo 'lib.c:3: the real problem' >&2; exit 1" ];
        };
      in derivation {
        name = "hx-app"; system = builtins.currentSystem; builder = sh; args = [ "-c" "echo \${lib}; exit 1" ];
      }`,
    );
    const r = await nixoci(['inspect', '--file', 'dep.nix'], { env, cwd: dir });
    expect(r.code).toBe(1);
    const [line, hint, ...rest] = r.stderr.split('\n');
    expect(line).toMatch(
      /^nixoci: error: nix-build failed: error: builder for '\S+-hx-lib-fails\.drv' failed with exit code 1; \| > line 196 \| > line 197 \| > line 198 \| > line 199 \| > lib\.c:3: the real problem$/,
    );
    expect(hint).toMatch(
      /^hint: fix the build; its whole log: nix log \/nix\/store\/\w{32}-hx-lib-fails\.drv$/,
    );
    expect(rest).toEqual(['']);
  });

  it('a path no substituter provided because the one configured was unreachable says so', async () => {
    // nothing listens on this loopback port (one the system just gave out and took back, not a
    // guessed one another test's server may hold): Nix warns it cannot reach the cache, then fails
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const cache = `http://127.0.0.1:${port}`;
    const unreachable = { ...env, NIX_CONFIG: `substituters = ${cache}\nconnect-timeout = 2` };
    const missing = absentPath('hx-not-here');
    const hint =
      'hint: check that Nix reaches its substituters (substituters in nix.conf, the network, a proxy), or build the paths here';
    const said = `a substituter was unreachable: unable to download '${cache}/nix-cache-info': Couldn't connect to server (7)`;
    const r = await nixoci(['inspect', '--installable', missing], { env: unreachable });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `nixoci: error: nix build failed: error: path '${missing}' is required, but there is no substituter that can build it | ${said}\n${hint}\n`,
    );
    const project = writeDevboxProject({
      json: { packages: ['hello@2.12'] },
      lock: {
        lockfile_version: '1',
        packages: {
          'hello@2.12': {
            systems: { 'x86_64-linux': { outputs: [{ name: 'out', path: missing, default: true }] } },
          },
        },
      },
    });
    const d = await nixoci(['inspect', '--devbox', project], { env: unreachable });
    expect(d.code).toBe(1);
    const [line, dhint] = d.stderr.split('\n');
    expect(line).toContain(said);
    expect(`${dhint}`).toBe(hint);
  });

  it('--verbose shows what Nix builds as it goes, not only the command line', async () => {
    // a derivation no earlier run built: nix-build builds it now, for a couple of seconds
    const dir = mkdtempSync(join(work, 'nix-building-'));
    writeFileSync(
      join(dir, 'slow.nix'),
      `let fx = import ${fixtureClosureNix} { }; in derivation {
        name = "hx-slow"; system = builtins.currentSystem; builder = "\${fx.busybox}/bin/sh";
        stamp = "${dir}"; args = [ "-c" "\${fx.busybox}/bin/sleep 1; \${fx.busybox}/bin/mkdir $out" ];
      }`,
    );
    const r = await nixoci(['inspect', '--file', 'slow.nix', '--verbose', '--json'], { env, cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split('\n');
    const running = lines.findIndex((l) => l.startsWith('running: nix-build '));
    const building = lines.findIndex((l) =>
      /^nix-build: building '\/nix\/store\/\w{32}-hx-slow\.drv'/.test(l),
    );
    expect(running, r.stderr).toBeGreaterThanOrEqual(0);
    expect(building, r.stderr).toBeGreaterThan(running);
    JSON.parse(r.stdout); // standard output stays the report alone
    // without --verbose, nothing of it
    const quiet = await nixoci(['inspect', '--file', 'slow.nix', '--json'], { env, cwd: dir });
    expect(quiet.stderr).toBe('');
  });

  it('an architecture prefix named the Nix or OCI way is a usage error, not a file or path to look for', async () => {
    for (const [flag, prefix] of [
      ['--path', 'x86_64-linux'],
      ['--path', 'AMD64'],
      ['--graph', 'aarch64-linux'],
      ['--graph', 'linux/arm64'],
    ] as const) {
      const v = `${prefix}=${flag === '--path' ? fx.app : fx.graphFile}`;
      const r = await nixoci(['inspect', flag, v], { env });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${flag} ${v}: unknown architecture prefix (use amd64= or arm64=)`);
    }
  });

  it('a --path or --graph prefixed for an architecture not in --arch is refused, not left out', async () => {
    for (const args of [
      ['--path', `amd64=${fx.app}`, '--path', `arm64=${fx.app}`],
      ['--arch', 'arm64', '--path', `amd64=${fx.app}`, '--path', fx.app],
      ['--graph', `arm64=${fx.graphFile}`, '--graph', fx.graphFile],
    ]) {
      const r = await nixoci(['inspect', ...args], { env });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /^nixoci: error: nixoci inspect: --(path|graph) (amd64|arm64)=\S+: \w+ is not among the --arch \((amd64|arm64)\); add it, e\.g\. --arch amd64,arm64\n/,
      );
    }
  });

  it('a NIXOCI_NIX that names no file is named in the error, for nix and for the nix-build beside it', async () => {
    const missing = join(work, 'no-nix', 'bin', 'nix');
    for (const [args, bin] of [
      [['inspect', '--path', fx.app], missing],
      [['inspect', '--file', fixtureClosureNix, '--attr', 'app'], `${missing}-build`],
    ] as const) {
      const r = await nixoci([...args], { env: { ...env, NIXOCI_NIX: missing } });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `nixoci: error: cannot run ${bin}: no such file\n` +
          `hint: check NIXOCI_NIX=${missing}: the nix command, with nix-build and nix-store beside it\n`,
      );
    }
  });

  it('a Nix older than 2.4 (no --extra-experimental-features) is told apart from a Nix error', async () => {
    // what Nix 2.3 answers to a flag it does not know
    const bin = mkdtempSync(join(work, 'nix-2.3-'));
    writeFileSync(
      join(bin, 'nix'),
      `#!/bin/sh
[ "$1" = --version ] && { echo 'nix (Nix) 2.3.16'; exit 0; }
for a; do [ "$a" = --extra-experimental-features ] && { echo "error: unrecognised flag '$a'" >&2; echo "Try 'nix --help' for more information." >&2; exit 1; }; done
exit 1
`,
      { mode: 0o755 },
    );
    const nix = join(bin, 'nix');
    const r = await nixoci(['inspect', '--path', fx.app], { env: { ...env, NIXOCI_NIX: nix } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `nixoci: error: ${nix} path-info failed: error: unrecognised flag '--extra-experimental-features' | Try 'nix --help' for more information.\n` +
        `hint: nixoci needs Nix 2.4 or newer; check \`${nix} --version\`\n`,
    );
  });

  it('a store this user may not use, or no nix-daemon, is told apart from a Nix error', async () => {
    const noDaemon = await nixoci(['inspect', '--path', fx.app], { env: { ...env, NIX_REMOTE: 'daemon' } });
    expect(noDaemon.code).toBe(1);
    expect(noDaemon.stderr).toMatch(
      /^nixoci: error: nix path-info failed: error: cannot connect to socket at '\S+\/daemon-socket\/socket'/,
    );
    expect(noDaemon.stderr).toContain(
      '\nhint: no nix-daemon answers: start it (multi-user Nix), or for a single-user Nix leave NIX_REMOTE unset and run as the user who owns the store\n',
    );
    // the single-user store is root's; nobody may not open it (its HOME: a directory it may read)
    const home = mkdtempSync(join(tmpdir(), 'nixoci-nobody-'));
    chmodSync(home, 0o777);
    const nobody = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          cliBin,
          'inspect',
          '--path',
          fx.app,
        ],
        { env: { ...process.env, ...env, HOME: home }, encoding: 'utf8' },
        (error, _stdout, stderr) =>
          resolve({ code: typeof error?.code === 'number' ? error.code : 0, stderr }),
      ),
    );
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toMatch(
      /^nixoci: error: nix path-info failed: error: .*\/var\/nix\/.*: Permission denied\n/,
    );
    expect(nobody.stderr).toContain(
      '\nhint: this user (uid 65534) may not use the Nix store: run nixoci as the user who owns it (single-user Nix), or through a nix-daemon this user may reach (multi-user Nix)\n',
    );
  });

  it('an empty NIXOCI_NIX is unset; one that names no program is named in the error', async () => {
    const r = await nixoci(['inspect', '--path', fx.app], { env: { ...env, NIXOCI_NIX: '' } });
    expect(r.code, r.stderr).toBe(0);
    const d = await nixoci(['inspect', '--path', fx.app], { env: { ...env, NIXOCI_NIX: work } });
    expect(d.code).toBe(1);
    expect(d.stderr).toBe(
      `nixoci: error: cannot run ${work}: spawn ${work} EACCES\n` +
        `hint: check NIXOCI_NIX=${work}: the nix command, with nix-build and nix-store beside it\n`,
    );
  });

  it('plain --graph images get no customisation layer', async () => {
    const r = await nixociJson<Report>(['inspect', '--graph', fx.graphFile], { env });
    expect(r.plans[0]!.layers).toHaveLength(fx.paths.length);
  });

  it("the customisation layer's history entry does not claim to copy store paths", async () => {
    const dir = join(work, 'history-oci');
    const r = await nixociJson<{ manifestDigest: string }>(
      ['build', '--graph', fx.graphFile, '--bin-farm', '--to', `oci:${dir}`],
      { env },
    );
    const blob = (d: string): string => join(dir, 'blobs', 'sha256', d.slice(7));
    const manifest = JSON.parse(readFileSync(blob(r.manifestDigest), 'utf8')) as {
      config: { digest: string };
    };
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as {
      history: { created_by: string; comment: string }[];
    };
    const last = config.history.at(-1)!;
    expect(last.created_by).toBe('nixoci: nixoci customisation layer');
    expect(last.comment).toBe('files made by nixoci: links, users, copied project files');
    expect(config.history[0]!.comment).toBe('store paths copied by nixoci');
  });
});
