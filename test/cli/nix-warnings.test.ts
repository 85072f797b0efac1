// Nix's warnings on a build that succeeds (here the "Git tree … is dirty" of a flake in a git
// repository with an uncommitted change) are shown once each on stderr, prefixed with the Nix
// command's name; -q hides them, and --verbose shows them among all of Nix's lines, not twice.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { repoRoot } from '../helpers/env.js';

const work = mkdtempSync(join(tmpdir(), 'hx-ux-nix-warnings-'));
const flake = join(work, 'dirty');
const clean = join(work, 'clean');
// git (and the git Nix runs for the flake) reads no configuration of this machine's user or system
const gitEnv = { GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' };
const env = { NIX_REMOTE: '', ...gitEnv };
const dirty = `nix: warning: Git tree '${flake}' is dirty`;

/** A flake with no inputs (it evaluates offline) in a git repository: busybox, as test/helpers/flake.ts makes it. */
function gitFlake(dir: string, uncommitted: boolean): void {
  const git = (...args: string[]): void => {
    execFileSync('git', ['-c', 'user.name=nixoci test', '-c', 'user.email=test@nixoci.invalid', ...args], {
      cwd: dir,
      env: { ...process.env, ...gitEnv },
      stdio: 'ignore',
    });
  };
  mkdirSync(dir);
  copyFileSync(join(repoRoot, 'nix', 'busybox.nix'), join(dir, 'busybox.nix'));
  copyFileSync('/usr/bin/busybox', join(dir, 'busybox'));
  writeFileSync(
    join(dir, 'flake.nix'),
    `{
  outputs = { self }:
    let system = "x86_64-linux";
    in { packages.\${system}.default = import ./busybox.nix { inherit system; busybox = ./busybox; }; };
}
`,
  );
  git('init', '-q', '.');
  git('add', 'flake.nix', 'busybox.nix', 'busybox');
  git('commit', '-q', '-m', 'init');
  if (uncommitted) writeFileSync(join(dir, 'flake.nix'), '# changed\n', { flag: 'a' });
}

beforeAll(() => {
  gitFlake(flake, true);
  gitFlake(clean, false);
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

const occurrences = (text: string, line: string): number => text.split('\n').filter((l) => l === line).length;

describe("Nix's warnings", () => {
  it('are shown once each, prefixed with the Nix command, when the build succeeds', async () => {
    const oci = join(work, 'oci');
    const r = await nixoci(
      ['build', '--installable', `${flake}#default`, '--to', `oci:${oci}`, '--no-cache'],
      {
        env,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(occurrences(r.stderr, dirty), r.stderr).toBe(1);
    const inspected = await nixoci(['inspect', '--installable', `${flake}#default`], { env });
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(occurrences(inspected.stderr, dirty), inspected.stderr).toBe(1);
  });

  it('are hidden by -q, and shown once with --verbose (among all of Nix lines)', async () => {
    const quiet = await nixoci(['inspect', '--installable', `${flake}#default`, '-q'], { env });
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stderr).not.toContain('warning');
    const verbose = await nixoci(['inspect', '--installable', `${flake}#default`, '--verbose'], { env });
    expect(verbose.code, verbose.stderr).toBe(0);
    expect(occurrences(verbose.stderr, dirty), verbose.stderr).toBe(1);
  });

  it('are not made up: a clean tree gives none', async () => {
    const r = await nixoci(['inspect', '--installable', `${clean}#default`], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('warning');
  });
});
