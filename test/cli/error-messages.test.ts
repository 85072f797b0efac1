// The exact text and exit code of errors a user meets before anything is built: each names the
// flag or argument the user gave, in nixoci's words rather than Node's or a library's.
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';

describe('error messages', () => {
  it('says which flag lacks a value, or takes none, without parseArgs wording', async () => {
    const missing = await nixoci(['build', '--path']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      'nixoci: error: nixoci build: --path needs a value\n' +
        'hint: run `nixoci build --help` for the list of flags\n',
    );
    // a short flag is named by its long name
    const short = await nixoci(['load', '-H']);
    expect(short.code).toBe(2);
    expect(short.stderr).toBe(
      'nixoci: error: nixoci load: --host needs a value\nhint: run `nixoci load --help` for the list of flags\n',
    );
    const boolean = await nixoci(['inspect', '--json=yes', 'oci:./nowhere']);
    expect(boolean.code).toBe(2);
    expect(boolean.stderr).toBe(
      'nixoci: error: nixoci inspect: --json takes no value\n' +
        'hint: run `nixoci inspect --help` for the list of flags\n',
    );
  });

  it('quotes all of what JSON.parse stopped at, not up to its first line break', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    writeFileSync(join(dir, 'bad.json'), 'hello\nworld\n');
    const r = await nixoci(['build', '--graph', 'bad.json', '--to', 'oci:./out'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'nixoci: error: bad.json: not valid JSON: Unexpected token \'h\', "hello\\nworld\\n"\n' +
        'hint: the graph file must be JSON as written by exportReferencesGraph or nix path-info --json\n',
    );
  });

  it('names the tag that is wrong in load as push and oci: do', async () => {
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    const flag = await nixoci(['load', '--path', path, 'hx-t-app', '--tag', 'bad tag']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toBe(
      'nixoci: error: nixoci load: --tag "bad tag" is not a valid tag\nhint: run `nixoci load --help` for usage\n',
    );
    const ref = await nixoci(['build', '--path', path, '--to', 'podman:hx-t-app:ba!d']);
    expect(ref.code).toBe(2);
    expect(ref.stderr).toBe(
      'nixoci: error: nixoci build: podman:hx-t-app:ba!d: "ba!d" is not a valid tag\n' +
        'hint: run `nixoci build --help` for usage\n',
    );
  });

  it('says that --tag takes the tag alone when given NAME:TAG as docker build -t takes it', async () => {
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    for (const [command, dest] of [
      ['push', '127.0.0.1:1/hx-t-app:v1'],
      ['load', 'hx-t-app:v1'],
    ]) {
      const r = await nixoci([command!, '--path', path, dest!, '--tag', 'ghcr.io/org/hx-t-app:v2']);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${command}: --tag "ghcr.io/org/hx-t-app:v2" is not a valid tag: --tag takes the tag alone (e.g. v2), for the destination's repository\n` +
          `hint: run \`nixoci ${command} --help\` for usage\n`,
      );
    }
  });

  it('names the command for a --creds without a colon, and never echoes the value', async () => {
    for (const command of ['inspect', 'diff']) {
      // read from a registry: --creds is for nothing else
      const image = 'docker://127.0.0.1:1/hx-t-none:v1';
      const args = command === 'diff' ? [image, image] : [image];
      const r = await nixoci([command, ...args, '--creds', 's3cret-only']);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${command}: --creds must be USER:PASSWORD\n` +
          'hint: a colon goes between the user name and the password, or set NIXOCI_REGISTRY_USER and NIXOCI_REGISTRY_PASSWORD instead\n',
      );
    }
  });

  it('quotes a registry reference as the user wrote it, with no docker:// added', async () => {
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    const transport = await nixoci(['push', '--path', path, 'oci:./o']);
    expect(transport.code).toBe(2);
    expect(transport.stderr).toBe(
      'nixoci: error: nixoci push: image reference "oci:./o" is invalid: oci: is not a registry\n' +
        'hint: this takes a registry image, [docker://]HOST[:PORT]/REPO[:TAG]; write other destinations with nixoci build --to\n',
    );
    const bare = await nixoci(['push', '--path', path, '127.0.0.1:5000/HX:v1']);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toBe(
      'nixoci: error: nixoci push: image reference "127.0.0.1:5000/HX:v1" is invalid: repository names must be lowercase\n' +
        'hint: use "127.0.0.1:5000/hx:v1"\n',
    );
    // written with docker://, it is quoted with it
    for (const args of [
      ['push', '--path', path, 'docker://127.0.0.1:5000/HX:v1'],
      ['build', '--path', path, '--to', 'docker://127.0.0.1:5000/HX:v1'],
    ]) {
      const r = await nixoci(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${args[0]}: image reference "docker://127.0.0.1:5000/HX:v1" is invalid: repository names must be lowercase\n` +
          'hint: use "docker://127.0.0.1:5000/hx:v1"\n',
      );
    }
  });

  it('refuses docker:NAME (no //) rather than pushing NAME to Docker Hub', async () => {
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    const r = await nixoci(['build', '--path', path, '--to', 'docker:hx-t-app:v1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'nixoci: error: nixoci build: --to docker:hx-t-app:v1: a registry destination is written docker://HOST[:PORT]/REPO[:TAG] (docker-daemon:NAME[:TAG] loads into the Docker engine)\n' +
        'hint: run `nixoci build --help` for usage\n',
    );
  });

  it('names the command for a --ca-file that cannot be used', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    writeFileSync(join(dir, 'x'), 'hi\n');
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    const image = 'docker://127.0.0.1:1/hx-t-none:v1';
    for (const args of [
      ['push', '--path', path, image],
      ['build', '--path', path, '--to', image],
      ['inspect', image],
      ['diff', image, image],
    ]) {
      const r = await nixoci([...args, '--ca-file', './x'], { cwd: dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${args[0]}: --ca-file ./x holds no PEM certificate\n` +
          'hint: give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----); convert a DER file with `openssl x509 -inform der -in FILE`\n',
      );
    }
    const missing = await nixoci(['inspect', image, '--ca-file', './none'], { cwd: dir });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      "nixoci: error: nixoci inspect: cannot read --ca-file ./none: ENOENT: no such file or directory, open './none'\n" +
        'hint: give a PEM file of CA certificates\n',
    );
  });

  it('begins every read error of inspect and diff with "read IMAGE:"', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    writeFileSync(join(dir, 'hello.txt'), 'hello\n');
    const denied = `docker://${testEnv().registryBasic}/nixoci-test/none:v1`;
    const cases: [string[], string][] = [
      [
        ['inspect', denied],
        `read ${denied}: get manifest v1: 401 UNAUTHORIZED: authentication required\n` +
          `hint: log in with nixoci login ${testEnv().registryBasic}, or pass --creds USER:PASSWORD\n`,
      ],
      [
        ['inspect', 'oci:./nope'],
        "read oci:./nope: ENOENT: no such file or directory, open 'nope/index.json'\n" +
          'hint: oci: must name an OCI image layout directory (with index.json)\n',
      ],
      [
        ['diff', 'oci:./nope', 'docker-archive:./hello.txt'],
        "read oci:./nope: ENOENT: no such file or directory, open 'nope/index.json'\n" +
          'hint: oci: must name an OCI image layout directory (with index.json)\n',
      ],
      [
        ['inspect', 'docker-archive:./hello.txt'],
        'read docker-archive:./hello.txt: not a tar archive (6 bytes)\n' +
          'hint: docker-archive: wants a tar as `docker save` writes it (plain, gzip- or zstd-compressed)\n',
      ],
    ];
    for (const [args, text] of cases) {
      const r = await nixoci(args, { cwd: dir, env: { NIXOCI_REGISTRY_USER: '', DOCKER_CONFIG: dir } });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`nixoci: error: ${text}`);
    }
  });

  it('begins "read IMAGE:" a registry or engine that cannot be reached too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    const registry = 'docker://127.0.0.1:1/hx-t-none:v1';
    const engine = 'docker-daemon:hx-t-none:v1';
    const cases: [string[], string][] = [
      [
        ['inspect', registry],
        `read ${registry}: cannot reach http://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1\n` +
          'hint: check the registry address and that it is running\n',
      ],
      [
        ['inspect', engine, '-H', `unix://${dir}/none.sock`],
        `read ${engine}: cannot connect to the Docker engine at unix://${dir}/none.sock: connect ENOENT ${dir}/none.sock\n` +
          'hint: is the engine running? Start it, or name it with --host / DOCKER_HOST\n',
      ],
    ];
    for (const [args, text] of cases) {
      const r = await nixoci(args, { cwd: dir });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`nixoci: error: ${text}`);
    }
  });

  it('refuses the same tag of one OCI layout given twice, however it is written', async () => {
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    const r = await nixoci([
      'build',
      '--path',
      path,
      '--to',
      'oci:./o',
      '--to',
      `oci:${process.cwd()}/o:latest`,
    ]);
    expect([r.code, r.stderr.split('\n')[0]]).toEqual([
      2,
      `nixoci: error: nixoci build: two destinations write the same tag of one OCI layout, oci:${process.cwd()}/o:latest`,
    ]);
    // two tags of one layout are two images
    const two = await nixoci(['build', '--path', path, '--to', 'oci:./o:a', '--to', 'oci:./o:b']);
    expect(two.stderr).not.toContain('same tag');
  });

  it('refuses --arch given twice (a list was meant); other flags of one value keep the last', async () => {
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    const arch = await nixoci([
      'build',
      '--path',
      path,
      '--to',
      'oci:./o',
      '--arch',
      'amd64',
      '--arch',
      'arm64',
    ]);
    expect(arch.code).toBe(2);
    expect(arch.stderr).toBe(
      'nixoci: error: nixoci build: --arch is given twice; it takes one list\n' +
        'hint: several architectures are one list: --arch amd64,arm64\n',
    );
    // as in docker and skopeo, the last value wins: here the second --max-layers is the bad one
    const last = await nixoci(['inspect', '--path', path, '--max-layers', '5', '--max-layers', '0']);
    expect(last.code).toBe(2);
    expect(last.stderr).toContain('--max-layers must be an integer from 1 to 125, got "0"');
    expect(last.stderr).not.toContain('given twice');
  });

  it('refuses a registry or engine flag when no destination or image is of that kind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    const registry = 'is for a registry destination, and no --to is docker://…\n';
    const engine = 'is for an engine destination, and no --to is docker-daemon: or podman:\n';
    const cases: [string[], string][] = [
      // it was taken, out of range, and did nothing
      [
        ['build', '--path', path, '--to', 'oci:./o', '--concurrency', '0'],
        `build: --concurrency ${registry}`,
      ],
      [['build', '--path', path, '--to', 'oci:./o', '--creds', 'u:s3cret'], `build: --creds ${registry}`],
      [
        ['build', '--path', path, '--to', 'docker-daemon:hx-t-a', '--ca-file', './none'],
        `build: --ca-file ${registry}`,
      ],
      [
        ['build', '--path', path, '--to', 'docker://127.0.0.1:1/hx-t-a', '-H', 'unix:///x'],
        `build: --host ${engine}`,
      ],
      [
        ['inspect', 'oci:./o', '--timeout', '0'],
        'inspect: --timeout is for reading an image from a registry, and no image here is docker://…\n',
      ],
      [
        ['diff', 'oci:./o', 'docker://127.0.0.1:1/hx-t-a', '-H', 'unix:///x'],
        'diff: --host is for reading an image from an engine, and no image here is docker-daemon: or podman:\n',
      ],
      [
        ['inspect', '--path', path, '--insecure-registry', 'h:1'],
        'inspect: --insecure-registry is for reading an image from a registry, and a closure source reads no image\n',
      ],
    ];
    for (const [args, text] of cases) {
      const r = await nixoci(args, { cwd: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.split('\n')[0] + '\n').toBe(`nixoci: error: nixoci ${text}`);
      expect(r.stderr).not.toContain('s3cret');
    }
    expect(readdirSync(dir)).toEqual([]);
    // where one destination of the kind is among them, the flag is taken (and checked)
    const both = await nixoci(
      [
        'build',
        '--path',
        path,
        '--to',
        'oci:./o',
        '--to',
        'docker://127.0.0.1:1/hx-t-a',
        '--concurrency',
        '0',
      ],
      { cwd: dir },
    );
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--concurrency must be an integer from 1 to 64, got "0"');
  });

  it('refuses an empty flag value rather than taking a default in its place', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    // --file '' built ./default.nix, --devbox '' the project here, --cache-dir '' turned the cache off
    writeFileSync(join(dir, 'default.nix'), 'throw "read"\n');
    writeFileSync(join(dir, 'devbox.json'), '{}\n');
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    for (const [args, flag] of [
      [['build', '--file', '', '--to', 'oci:./o'], 'file'],
      [['build', '--devbox=', '--to', 'oci:./o'], 'devbox'],
      [['build', '--path', path, '--to', 'oci:./o', '--cache-dir', ''], 'cache-dir'],
      [['inspect', 'docker://127.0.0.1:1/hx-t-a', '--ca-file', ''], 'ca-file'],
      [['load', '--path', path, 'hx-t-a', '-H', ''], 'host'],
    ] as const) {
      const r = await nixoci([...args], { cwd: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${args[0]}: --${flag} is given an empty value\n` +
          `hint: give --${flag} a value, or leave it out (is a variable unset?)\n`,
      );
    }
    expect(readdirSync(dir).sort()).toEqual(['default.nix', 'devbox.json']);
    // an empty --cmd or --entrypoint clears it, as in Docker
    const r = await nixoci(['inspect', '--path', path, '--cmd', '', '--entrypoint=']);
    expect(r.stderr).not.toContain('empty value');
  });

  it('tells a --path that is no store path (exit 2) from one that is not there (exit 1)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    writeFileSync(join(dir, 'plain'), 'x\n');
    const cases: [string, number, string][] = [
      [
        '/tmp',
        2,
        'nixoci build: --path: "/tmp" is not a store path: outside the store dir /nix/store\n' +
          'hint: store paths look like /nix/store/<hash>-<name>\n',
      ],
      [
        'plain',
        2,
        'nixoci build: --path: "plain" is not a store path: relative path\n' +
          'hint: store paths look like /nix/store/<hash>-<name>\n',
      ],
      // not built yet: it said "not a store path: relative path" though a result symlink is taken
      [
        './result',
        1,
        '--path ./result: no such file or symlink\n' +
          'hint: give a store path, or the result symlink nix-build / nix build leaves (build it first)\n',
      ],
      [
        '/nix/store/00000000000000000000000000000000-hx-t-none',
        1,
        '/nix/store/00000000000000000000000000000000-hx-t-none does not exist on disk\n' +
          'hint: build it first (nix-build / nix build) or check the path for typos\n',
      ],
    ];
    for (const [path, code, text] of cases) {
      const r = await nixoci(['build', '--path', path, '--to', 'oci:./o'], { cwd: dir });
      expect(r.code, path).toBe(code);
      expect(r.stderr).toBe(`nixoci: error: ${text}`);
    }
    expect(readdirSync(dir)).toEqual(['plain']);
  });

  it('refuses -q with -v: the verbose lines were printed all the same', async () => {
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    for (const args of [
      ['build', '-qv', '--path', path, '--to', 'oci:./o'],
      ['inspect', '--path', path, '--quiet', '--verbose'],
      ['diff', 'oci:./a', 'oci:./b', '-v', '-q'],
    ]) {
      const r = await nixoci(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${args[0]}: -q/--quiet and -v/--verbose contradict each other; give one of them\n` +
          `hint: run \`nixoci ${args[0]} --help\` for usage\n`,
      );
    }
  });

  it('refuses a --graph-out name before the closure is built, naming the command', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    // reached only if the closure were built first
    writeFileSync(join(dir, 'x.nix'), 'throw "hx-t-built"\n');
    const r = await nixoci(['inspect', '--file', 'x.nix', '--graph-out', 'g.png'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'nixoci: error: nixoci inspect: --graph-out g.png: expected a .dot or .svg file name\n' +
        'hint: e.g. --graph-out closure.svg\n',
    );
  });

  it('refuses arguments after --version and after help COMMAND rather than ignoring them', async () => {
    for (const [args, extra] of [
      [['--version', '--json'], '"--json" after --version'],
      [['version', 'x'], '"x" after version'],
      [['help', 'build', 'push'], '"push" after help'],
    ] as const) {
      const r = await nixoci([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `nixoci: error: unexpected argument ${extra}\nhint: run \`nixoci --help\` for usage\n`,
      );
    }
    expect((await nixoci(['help', 'build'])).code).toBe(0);
  });

  it('refuses a --compression-level where every destination gets uncompressed layers by default', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    for (const [args, target] of [
      [['build', '--path', path, '--to', 'oci:./o:v1', '--compression-level', '5'], 'oci:./o:v1'],
      [['load', '--path', path, 'hx-t-a:v1', '--compression-level', '5'], 'docker-daemon:hx-t-a:v1'],
    ] as const) {
      const r = await nixoci([...args], { cwd: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${args[0]}: --compression-level 5: ${target} gets uncompressed layers (give --compression gzip or zstd)\n` +
          `hint: run \`nixoci ${args[0]} --help\` for usage\n`,
      );
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses --compression gzip|zstd where every destination takes uncompressed layers only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-errors-'));
    const path = '/nix/store/00000000000000000000000000000000-hx-t-none';
    for (const [args, what, target] of [
      [['load', '--path', path, 'hx-t-a:v1', '--compression', 'zstd'], 'zstd', 'docker-daemon:hx-t-a:v1'],
      [
        ['load', '--path', path, 'podman:hx-t-a:v1', '--compression', 'zstd', '--compression-level', '5'],
        'zstd',
        'podman:hx-t-a:v1',
      ],
      [
        ['build', '--path', path, '--to', 'docker-archive:./a.tar', '--compression', 'gzip'],
        'gzip',
        'docker-archive:./a.tar',
      ],
    ] as const) {
      const r = await nixoci([...args], { cwd: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toBe(
        `nixoci: error: nixoci ${args[0]}: --compression ${what}: ${target} takes uncompressed layers only (an engine or a docker-archive); leave --compression out\n` +
          `hint: run \`nixoci ${args[0]} --help\` for usage\n`,
      );
    }
    expect(readdirSync(dir)).toEqual([]);
  });
});
