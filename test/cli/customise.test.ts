// The customisation layer's flags as the CLI takes them (--user, --copy, --bin-farm), checked in the
// OCI layout it writes: the config's User and the files of the last layer.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { docker, dockerRmi } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-customise-cli-'));
const env = { NIX_REMOTE: '' };
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'customise-cli' });
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

interface Built {
  user: string | undefined;
  cmd: string[] | undefined;
  entrypoint: string[] | undefined;
  env: string[];
  /** A file of the customisation layer (the last one), as text. */
  file: (path: string) => string;
}

let n = 0;
async function build(args: string[]): Promise<Built> {
  const dir = join(work, `oci-${n++}`);
  const r = await nixociJson<{ manifestDigest: string }>(
    ['build', '--path', fx.app, ...args, '--to', `oci:${dir}`, '--no-cache'],
    { env },
  );
  const blob = (d: string): string => join(dir, 'blobs', 'sha256', d.slice(7));
  const manifest = JSON.parse(readFileSync(blob(r.manifestDigest), 'utf8')) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as {
    config: { User?: string; Env: string[]; Cmd?: string[]; Entrypoint?: string[] };
  };
  const last = blob(manifest.layers.at(-1)!.digest);
  return {
    user: config.config.User,
    cmd: config.config.Cmd,
    entrypoint: config.config.Entrypoint,
    env: config.config.Env,
    file: (path) => execFileSync('tar', ['-xOf', last, path], { encoding: 'utf8' }),
  };
}

describe('customisation flags', () => {
  it('--user nobody is uid and gid 65534, as everywhere, not the 1000 of an app user', async () => {
    const img = await build(['--bin-farm', '--user', 'nobody']);
    expect(img.user).toBe('65534:65534');
    expect(
      img
        .file('etc/passwd')
        .split('\n')
        .filter((l) => l.startsWith('nobody:')),
    ).toEqual(['nobody:x:65534:65534:nobody:/home/nobody:/bin/sh']);
    // another name still defaults to 1000
    expect((await build(['--bin-farm', '--user', 'svc'])).user).toBe('1000:1000');
  });

  it('--user root or root:0 with the layer is written as 0:0, numeric like every other user', async () => {
    for (const user of ['root', 'root:0']) {
      expect((await build(['--bin-farm', '--user', user])).user, user).toBe('0:0');
    }
    // no --user: no User in the config, as before
    expect((await build(['--bin-farm'])).user).toBeUndefined();
  });

  it('a numeric --user without a passwd entry gets HOME=/, as the engines give it, not /root', async () => {
    const home = (img: Built): string | undefined => img.env.find((e) => e.startsWith('HOME='));
    // /root is 0700 and root's: uid 1000 could not use it
    expect(home(await build(['--bin-farm', '--user', '1000']))).toBe('HOME=/');
    expect(home(await build(['--bin-farm', '--user', '1234:1234']))).toBe('HOME=/');
    // the layer's own user keeps its home
    expect(home(await build(['--bin-farm', '--user', '0']))).toBe('HOME=/root');
    expect(home(await build(['--preset', 'runtime', '--user', '1000']))).toBe('HOME=/home/app');
    // and --env HOME=… still wins
    expect(home(await build(['--bin-farm', '--user', '1000', '--env', 'HOME=/data']))).toBe('HOME=/data');
  });

  it('refuses a numeric --user above 2^31-1, which docker and runc refuse to run', async () => {
    for (const user of ['2147483648', '4294967295', '1000:2147483648', 'app:2147483648']) {
      const r = await nixoci(
        ['build', '--path', fx.app, '--user', user, '--to', `oci:${join(work, 'big')}`],
        {
          env,
        },
      );
      expect(r.code, user).toBe(2);
      expect(r.stderr).toContain(`--user ${user}: uids`);
      expect(r.stderr).toContain('must be in the range 0-2147483647');
    }
    expect((await build(['--user', '2147483647:0'])).user).toBe('2147483647:0');
  });
});

describe('default command', () => {
  const loaded = 'hx-ux-default-cmd:v1';
  afterAll(async () => {
    await dockerRmi(loaded);
  });

  it('an image with the customisation layer and no command runs its /bin/sh, as docker base images do', async () => {
    await dockerRmi(loaded);
    const r = await nixoci(
      [
        'build',
        '--path',
        fx.app,
        '--bin-farm',
        '--to',
        `docker-daemon:${loaded}`,
        '-H',
        testEnv().dockerHost,
      ],
      { env },
    );
    expect(r.code, r.stderr).toBe(0);
    const [inspected] = JSON.parse((await docker(['image', 'inspect', loaded])).stdout) as {
      Config: { Cmd: string[] | null };
    }[];
    expect(inspected!.Config.Cmd).toEqual(['/bin/sh']);
    // `docker run -i IMAGE` with no command: before, "No command specified"
    const run = await docker(['run', '--rm', '-i', '--network', 'none', loaded], { input: 'echo hi\n' });
    expect(run.stdout).toBe('hi\n');
  });

  it('is left out when a command is given, cleared, or there is no customisation layer', async () => {
    expect((await build(['--bin-farm'])).cmd).toEqual(['/bin/sh']);
    expect((await build(['--preset', 'runtime'])).cmd).toEqual(['/bin/sh']);
    const given = await build(['--bin-farm', '--cmd', '/bin/app']);
    expect(given.cmd).toEqual(['/bin/app']);
    // an entrypoint alone: the shell would become its argument
    const entry = await build(['--bin-farm', '--entrypoint', '/bin/app']);
    expect([entry.entrypoint, entry.cmd]).toEqual([['/bin/app'], undefined]);
    expect((await build(['--bin-farm', '--cmd', ''])).cmd).toEqual([]);
    expect((await build(['--bin-farm', '--entrypoint', ''])).cmd).toBeUndefined();
    // a plain --path image stays as it was
    expect((await build([])).cmd).toBeUndefined();
  });

  it('is /bin/bash for --preset devcontainer when bash is linked, and nothing when no shell is', async () => {
    // a store path with bin/bash (its content does not matter: it is linked, not run)
    const dir = join(work, 'hx-ux-shell');
    mkdirSync(join(dir, 'bin'), { recursive: true });
    writeFileSync(join(dir, 'bin', 'bash'), '#!/bin/sh\nexec sh "$@"\n');
    chmodSync(join(dir, 'bin', 'bash'), 0o755);
    const bash = execFileSync('nix-store', ['--add', dir], {
      encoding: 'utf8',
      env: { ...process.env, NIX_REMOTE: '' },
    }).trim();
    const img = await build(['--path', bash, '--preset', 'devcontainer']);
    expect(img.cmd).toEqual(['/bin/bash']);
    // the same path alone links no sh: no shell to default to
    const noSh = join(work, 'hx-ux-nosh');
    const r = await nixociJson<{ manifestDigest: string }>(
      ['build', '--path', bash, '--bin-farm', '--to', `oci:${noSh}`, '--no-cache'],
      { env },
    );
    const blob = (d: string): string => join(noSh, 'blobs', 'sha256', d.slice(7));
    const manifest = JSON.parse(readFileSync(blob(r.manifestDigest), 'utf8')) as {
      config: { digest: string };
    };
    const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as {
      config: { Cmd?: string[] };
    };
    expect(config.config.Cmd).toBeUndefined();
  });
});
