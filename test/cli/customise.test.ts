// The customisation layer's flags as the CLI takes them (--user, --copy, --bin-farm), checked in the
// OCI layout it writes: the config's User and the files of the last layer.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-customise-cli-'));
const env = { NIX_REMOTE: '' };
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'customise-cli' });
});

interface Built {
  user: string | undefined;
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
    config: { User?: string; Env: string[] };
  };
  const last = blob(manifest.layers.at(-1)!.digest);
  return {
    user: config.config.User,
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
