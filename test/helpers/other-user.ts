// Runs the built CLI as an unprivileged user, the way most users run it (CI runners, laptops),
// while the tests run as root. The user is `nobody` by number (65534:65534, no supplementary
// groups): setpriv needs no passwd entry, so nothing is added to /etc. The checkout may not be
// readable by that user, so bin/, dist/ and package.json are copied to a temp dir it can read.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CliResult } from './cli.js';
import { repoRoot } from './env.js';

export const OTHER_UID = 65534;
export const OTHER_GID = 65534;

export interface OtherUser {
  /** A dir of its own (0755, root's), holding the copy of the CLI; put test files under it. */
  readonly dir: string;
  /** The user's HOME (and XDG dirs), owned by the user. */
  readonly home: string;
  /** Runs the copied CLI as the user: PATH and the Nix settings of the test, HOME and XDG_* in `home`. */
  run(args: string[], opts?: { env?: NodeJS.ProcessEnv; umask?: string; cwd?: string }): Promise<CliResult>;
  /** Gives `file` to the user. */
  own(file: string): void;
  remove(): void;
}

/** A fresh temp dir with a copy of the built CLI, and a HOME owned by the unprivileged user. */
export function otherUser(prefix: string): OtherUser {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  const cli = path.join(dir, 'cli');
  for (const d of ['bin', 'dist']) cpSync(path.join(repoRoot, d), path.join(cli, d), { recursive: true });
  cpSync(path.join(repoRoot, 'package.json'), path.join(cli, 'package.json'));
  const home = path.join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, OTHER_UID, OTHER_GID);
  const bin = path.join(cli, 'bin', 'nixoci.js');
  return {
    dir,
    home,
    run: (args, opts = {}) => {
      // Only what the CLI needs from the test's env: PATH (nix, tar), the Nix settings; not root's
      // HOME or docker config, which the user could not read anyway.
      const env: NodeJS.ProcessEnv = {};
      for (const k of ['PATH', 'NIX_REMOTE', 'NIX_STORE_DIR', 'NIX_PATH', 'LANG', 'TZ']) {
        if (process.env[k] !== undefined) env[k] = process.env[k];
      }
      Object.assign(env, {
        HOME: home,
        XDG_CACHE_HOME: path.join(home, '.cache'),
        XDG_CONFIG_HOME: path.join(home, '.config'),
        XDG_RUNTIME_DIR: path.join(home, '.run'),
        NO_COLOR: '1',
        ...opts.env,
      });
      const umask = opts.umask ?? '022';
      return new Promise((resolve) => {
        execFile(
          'setpriv',
          [
            `--reuid=${OTHER_UID}`,
            `--regid=${OTHER_GID}`,
            '--clear-groups',
            'sh',
            '-c',
            `umask ${umask} && exec "$0" "$@"`,
            bin,
            ...args,
          ],
          { cwd: opts.cwd ?? home, env, maxBuffer: 64 << 20, encoding: 'utf8' },
          (error, stdout, stderr) => {
            const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
            resolve({ code, stdout, stderr });
          },
        );
      });
    },
    own: (file) => chownSync(file, OTHER_UID, OTHER_GID),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
