// "did you mean …?" for mistyped commands and flags, and nixoci's spelling of other tools' flags
// (docker's --platform, skopeo's --dest-creds and --dest-tls-verify, Nix's system names), from the
// built CLI: a usage error (exit 2) whose hint line says what to write. Nothing here gets as far as
// reading a closure or contacting a registry.
import { describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';

/** Runs nixoci, expects a usage error, and returns its hint line. */
async function hintOf(args: string[]): Promise<string> {
  const r = await nixoci(args);
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  // the error, then one hint line; no stack trace
  expect(lines, r.stderr).toHaveLength(2);
  expect(lines[0]).toMatch(/^nixoci: error: /);
  expect(lines[1]).toMatch(/^hint: /);
  return lines[1]!;
}

describe('did you mean', () => {
  it('names the nearest command', async () => {
    expect(await hintOf(['biuld'])).toBe('hint: did you mean build?');
    expect(await hintOf(['inspetc', 'oci:x'])).toBe('hint: did you mean inspect?');
    expect(await hintOf(['pusj'])).toBe('hint: did you mean push?');
    // nothing near: the general hint
    expect(await hintOf(['frobnicate'])).toBe('hint: run `nixoci --help` for the commands');
  });

  it("names the nearest of the command's own flags", async () => {
    expect(await hintOf(['build', '--path', '/nix/store/x', '--comprssion', 'gzip'])).toBe(
      'hint: did you mean --compression?',
    );
    expect(await hintOf(['push', '--max-layer', '10'])).toBe('hint: did you mean --max-layers?');
    expect(await hintOf(['diff', '--hots', 'x'])).toBe('hint: did you mean --host?');
    expect(await hintOf(['inspect', '--jsno'])).toBe('hint: did you mean --json?');
    // a flag of another command is no suggestion for this one: --to is build's, not push's
    expect(await hintOf(['push', '--to', 'oci:x'])).toBe(
      'hint: run `nixoci push --help` for the list of flags',
    );
    expect(await hintOf(['build', '--too', 'oci:x'])).toBe('hint: did you mean --to?');
    expect(await hintOf(['completion', '--zzzzzzzz'])).toBe(
      'hint: run `nixoci completion --help` for the list of flags',
    );
  });

  it("maps docker's --platform to --arch", async () => {
    expect(await hintOf(['build', '--platform', 'linux/arm64'])).toBe('hint: did you mean --arch arm64?');
    expect(await hintOf(['push', '--platform=linux/amd64,linux/arm64'])).toBe(
      'hint: did you mean --arch amd64,arm64?',
    );
    expect(await hintOf(['build', '--platform', 'linux/s390x'])).toMatch(/^hint: did you mean --arch\? /);
  });

  it("maps skopeo's --dest-creds and --dest-tls-verify, never echoing the credentials", async () => {
    for (const flag of ['--dest-creds', '--src-creds']) {
      const r = await nixoci([
        'push',
        '--path',
        '/nix/store/x',
        flag,
        'hx-ux-user:hx-ux-secret',
        'docker://x/y',
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('hint: did you mean --creds USER:PASSWORD?');
      expect(r.stderr).not.toContain('hx-ux-secret');
    }
    expect(
      await hintOf(['push', '--dest-tls-verify=false', 'docker://127.0.0.1:5000/hx-ux-suggest:v1']),
    ).toBe('hint: did you mean --insecure-registry 127.0.0.1:5000?');
    expect(await hintOf(['diff', '--src-tls-verify=false', 'a', 'b'])).toBe(
      'hint: did you mean --insecure-registry HOST?',
    );
    expect(await hintOf(['push', '--dest-tls-verify', 'docker://x/y'])).toMatch(
      /^hint: TLS is verified by default/,
    );
  });

  it('maps platform and Nix system names given to --arch', async () => {
    expect(await hintOf(['build', '--arch', 'linux/arm64'])).toBe('hint: did you mean --arch arm64?');
    expect(await hintOf(['push', '--arch', 'x86_64-linux,aarch64-linux'])).toBe(
      'hint: did you mean --arch amd64,arm64?',
    );
    expect(await hintOf(['inspect', '--path', '/nix/store/x', '--arch', 'aarch64-linux'])).toBe(
      'hint: did you mean --arch arm64?',
    );
  });
});
