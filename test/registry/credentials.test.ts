// Credential resolution from real files and a real credential-helper process (a shell script on PATH).
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NixociError } from '../../src/core/errors.js';
import { runCredentialHelper, storeWithHelper } from '../../src/registry/auth/cred-helper.js';
import { parseCredsFlag, resolveCredentials } from '../../src/registry/auth/credentials.js';

function temp(): string {
  return mkdtempSync(path.join(tmpdir(), 'nixoci-creds-'));
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** A docker-credential-test helper that logs its stdin and answers from a table. */
function fakeHelper(dir: string): { bin: string; log: string } {
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  const log = path.join(dir, 'helper.log');
  const script = `#!/bin/sh
read -r server
echo "$1 $server" >> ${log}
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hubuser","Secret":"hubpass"}' ;;
  ghcr.io) echo '{"ServerURL":"ghcr.io","Username":"<token>","Secret":"refresh-123"}' ;;
  broken.io) echo 'garbage'; exit 0 ;;
  failing.io) echo 'boom' >&2; exit 3 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`;
  writeFileSync(path.join(bin, 'docker-credential-test'), script);
  chmodSync(path.join(bin, 'docker-credential-test'), 0o755);
  return { bin, log };
}

describe('resolveCredentials', () => {
  it('prefers --creds, then the NIXOCI_ variables', async () => {
    const env = { NIXOCI_REGISTRY_USER: 'ci', NIXOCI_REGISTRY_PASSWORD: 'p:w', HOME: temp() };
    expect(
      await resolveCredentials('ghcr.io', 'a', { creds: { username: 'u', password: 'p' }, env }),
    ).toEqual({
      credentials: { username: 'u', password: 'p' },
      source: '--creds',
    });
    const r = await resolveCredentials('ghcr.io', 'a', { env });
    expect(r?.credentials).toEqual({ username: 'ci', password: 'p:w' });
  });

  it('refuses NIXOCI_REGISTRY_USER without NIXOCI_REGISTRY_PASSWORD and the reverse, naming the missing one', async () => {
    const dir = temp();
    // credentials in the docker config must not be used silently instead
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ auths: { 'a.io': { auth: b64('u:p') } } }));
    const base = { DOCKER_CONFIG: dir, HOME: temp() };
    await expect(
      resolveCredentials('a.io', 'x', { env: { ...base, NIXOCI_REGISTRY_USER: 'ci' } }),
    ).rejects.toMatchObject({
      code: 'CREDENTIALS',
      message:
        'cannot use credentials for a.io: NIXOCI_REGISTRY_USER is set but NIXOCI_REGISTRY_PASSWORD is not',
    });
    // an empty password is a missing one (a CI secret that does not exist), not a password to send
    await expect(
      resolveCredentials('a.io', 'x', {
        env: { ...base, NIXOCI_REGISTRY_USER: 'ci', NIXOCI_REGISTRY_PASSWORD: '' },
      }),
    ).rejects.toMatchObject({
      code: 'CREDENTIALS',
      message:
        'cannot use credentials for a.io: NIXOCI_REGISTRY_USER is set but NIXOCI_REGISTRY_PASSWORD is empty',
    });
    await expect(
      resolveCredentials('a.io', 'x', { env: { ...base, NIXOCI_REGISTRY_PASSWORD: 'secret-1' } }),
    ).rejects.toMatchObject({
      message:
        'cannot use credentials for a.io: NIXOCI_REGISTRY_PASSWORD is set but NIXOCI_REGISTRY_USER is not',
    });
    // --creds still comes first
    expect(
      (
        await resolveCredentials('a.io', 'x', {
          creds: { username: 'u', password: 'p' },
          env: { ...base, NIXOCI_REGISTRY_USER: 'ci' },
        })
      )?.source,
    ).toBe('--creds');
  });

  it('reads auths from $DOCKER_CONFIG/config.json with any key spelling', async () => {
    const dir = temp();
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hub:secret') },
          'http://Reg.Example:5000/v2/': { auth: b64('u:pa:ss') },
          'oauth.io': { identitytoken: 'rt-1' },
        },
      }),
    );
    const env = { DOCKER_CONFIG: dir, HOME: temp() };
    expect((await resolveCredentials('docker.io', 'library/x', { env }))?.credentials).toEqual({
      username: 'hub',
      password: 'secret',
    });
    expect((await resolveCredentials('reg.example:5000', 'x', { env }))?.credentials).toEqual({
      username: 'u',
      password: 'pa:ss',
    });
    expect((await resolveCredentials('oauth.io', 'x', { env }))?.credentials).toEqual({
      identityToken: 'rt-1',
    });
    expect(await resolveCredentials('other.io', 'x', { env })).toBeUndefined();
  });

  it('takes the key docker login wrote before other spellings of the same host, as docker does', async () => {
    const dir = temp();
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        auths: {
          'docker.io': { auth: b64('stale:hub') },
          'https://index.docker.io/v1/': { auth: b64('hub:new') },
          'https://reg.example:5000/v1/': { auth: b64('stale:reg') },
          'reg.example:5000': { auth: b64('reg:new') },
        },
      }),
    );
    const env = { DOCKER_CONFIG: dir, HOME: temp() };
    expect((await resolveCredentials('docker.io', 'library/x', { env }))?.credentials).toEqual({
      username: 'hub',
      password: 'new',
    });
    expect((await resolveCredentials('reg.example:5000', 'x', { env }))?.credentials).toEqual({
      username: 'reg',
      password: 'new',
    });
    // podman's auth.json: `podman login` writes docker.io, and a namespace key still beats the host
    const file = path.join(dir, 'auth.json');
    writeFileSync(
      file,
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('stale:hub') },
          'docker.io': { auth: b64('pod:hub') },
          'http://quay.io/team': { auth: b64('stale:team') },
          'quay.io/team': { auth: b64('pod:team') },
          'quay.io': { auth: b64('pod:all') },
        },
      }),
    );
    const podEnv = { REGISTRY_AUTH_FILE: file, HOME: temp() };
    expect((await resolveCredentials('docker.io', 'library/x', { env: podEnv }))?.credentials).toEqual({
      username: 'pod',
      password: 'hub',
    });
    expect((await resolveCredentials('quay.io', 'team/app', { env: podEnv }))?.credentials).toEqual({
      username: 'pod',
      password: 'team',
    });
  });

  it('falls back to ~/.docker/config.json', async () => {
    const home = temp();
    mkdirSync(path.join(home, '.docker'));
    writeFileSync(
      path.join(home, '.docker', 'config.json'),
      JSON.stringify({ auths: { 'q.io': { username: 'a', password: 'b' } } }),
    );
    expect((await resolveCredentials('q.io', 'x', { env: { HOME: home } }))?.source).toBe(
      path.join(home, '.docker', 'config.json'),
    );
  });

  it('runs credHelpers before credsStore before auths, with the server URL on stdin', async () => {
    const dir = temp();
    const { bin, log } = fakeHelper(dir);
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        credsStore: 'test',
        credHelpers: { 'ghcr.io': 'test' },
        auths: { 'plain.io': { auth: b64('file:user') } },
      }),
    );
    const env = { DOCKER_CONFIG: dir, HOME: temp(), PATH: `${bin}:${process.env.PATH}` };
    expect(await resolveCredentials('docker.io', 'library/x', { env })).toEqual({
      credentials: { username: 'hubuser', password: 'hubpass' },
      source: 'docker-credential-test',
    });
    expect((await resolveCredentials('ghcr.io', 'o/x', { env }))?.credentials).toEqual({
      identityToken: 'refresh-123',
    });
    // The store has nothing for plain.io: the auths entry is used.
    expect((await resolveCredentials('plain.io', 'x', { env }))?.credentials).toEqual({
      username: 'file',
      password: 'user',
    });
    await expect(resolveCredentials('broken.io', 'x', { env })).rejects.toMatchObject({
      code: 'CREDENTIALS',
    });
    const failing = resolveCredentials('failing.io', 'x', { env });
    await expect(failing).rejects.toMatchObject({
      code: 'CREDENTIALS',
      message: expect.stringMatching(/exit code 3/),
    });
    expect(readFileSync(log, 'utf8').split('\n')).toEqual(
      expect.arrayContaining(['get https://index.docker.io/v1/', 'get ghcr.io', 'get plain.io']),
    );
  });

  it('reports a missing helper clearly', async () => {
    const dir = temp();
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credsStore: 'nonexistent-xyz' }));
    await expect(
      resolveCredentials('a.io', 'x', { env: { DOCKER_CONFIG: dir, HOME: temp(), PATH: '/nonexistent' } }),
    ).rejects.toMatchObject({
      code: 'CREDENTIALS',
      message: expect.stringMatching(/docker-credential-nonexistent-xyz/),
    });
  });

  it('ends a helper that hangs (its own child holding the pipes) at the timeout or at once on abort', async () => {
    const dir = temp();
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    // A shell helper waiting on a child (as one asking for a password would): killing the shell
    // leaves the child holding stdout, so the helper's 'close' comes only when the child ends. The
    // child sleeps for a day: code that waited for it never ends (the test's time limit fails it);
    // the children are killed at the end in any case.
    const pids = path.join(dir, 'sleep.pids');
    writeFileSync(
      path.join(bin, 'docker-credential-hang'),
      `#!/bin/sh\nsleep 100000 &\necho $! >> ${pids}\nwait $!\n`,
    );
    chmodSync(path.join(bin, 'docker-credential-hang'), 0o755);
    const started = (): string[] =>
      existsSync(pids) ? readFileSync(pids, 'utf8').split('\n').filter(Boolean) : [];
    const env = { HOME: temp(), PATH: `${bin}:${process.env.PATH}` };
    try {
      await expect(
        runCredentialHelper('hang', 'a.io', 'a.io', { env, timeoutMs: 1000 }),
      ).rejects.toMatchObject({
        code: 'CREDENTIALS',
        message: 'credential helper docker-credential-hang for a.io did not answer within 1 s',
      });

      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credsStore: 'hang' }));
      const abort = new AbortController();
      const before = started().length;
      const p = resolveCredentials('a.io', 'x', {
        env: { ...env, DOCKER_CONFIG: dir },
        signal: abort.signal,
      });
      // aborted once this second helper is waiting on its child
      for (const end = Date.now() + 90_000; started().length === before && Date.now() < end;)
        await new Promise((r) => setTimeout(r, 20));
      abort.abort();
      await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    } finally {
      for (const pid of started())
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // ended with the helper
        }
    }
  });

  it('stops a helper that prints without end at 1 MiB, with one line naming it', async () => {
    const dir = temp();
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    // `yes` as a child of the shell: killing the shell leaves it writing until its pipe is closed.
    writeFileSync(path.join(bin, 'docker-credential-yes'), '#!/bin/sh\nyes\n');
    // 4 MiB, then a clean exit: the old code took it all in and called it unreadable output.
    writeFileSync(path.join(bin, 'docker-credential-big'), '#!/bin/sh\nyes | head -c 4194304\n');
    for (const h of ['yes', 'big']) chmodSync(path.join(bin, `docker-credential-${h}`), 0o755);
    const env = { HOME: temp(), PATH: `${bin}:${process.env.PATH}` };
    for (const h of ['yes', 'big']) {
      const e = await runCredentialHelper(h, 'a.io', 'a.io', { env }).then(
        () => new Error('no error'),
        (err: Error) => err,
      );
      expect(e).toMatchObject({
        code: 'CREDENTIALS',
        message: `credential helper docker-credential-${h} for a.io printed more than 1 MiB and was stopped`,
      });
      expect(e.message).not.toContain('\n');
    }
  });

  it('names a `store` helper that prints without end without quoting the secret it was given', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hx-review-creds-'));
    try {
      const bin = path.join(dir, 'bin');
      mkdirSync(bin);
      // reads the {"ServerURL","Username","Secret"} it is given, then prints 4 MiB
      writeFileSync(
        path.join(bin, 'docker-credential-loud'),
        '#!/bin/sh\ncat >/dev/null\nyes | head -c 4194304\n',
      );
      chmodSync(path.join(bin, 'docker-credential-loud'), 0o755);
      const env = { HOME: dir, PATH: `${bin}:${process.env.PATH}` };
      const e = await storeWithHelper('loud', 'a.io', 'u', 's3cret-pw', 'a.io', { env }).then(
        () => new Error('no error'),
        (err: NixociError) => err,
      );
      expect(e).toMatchObject({
        code: 'CREDENTIALS',
        message: 'credential helper docker-credential-loud for a.io printed more than 1 MiB and was stopped',
      });
      expect(`${e.message} ${(e as NixociError).hint}`).not.toContain('s3cret-pw');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads $REGISTRY_AUTH_FILE and podman auth.json, longest namespace first', async () => {
    const dir = temp();
    const file = path.join(dir, 'auth.json');
    writeFileSync(
      file,
      JSON.stringify({
        auths: { 'quay.io': { auth: b64('all:1') }, 'quay.io/team': { auth: b64('team:2') } },
      }),
    );
    const env = { REGISTRY_AUTH_FILE: file, HOME: temp() };
    expect((await resolveCredentials('quay.io', 'team/app', { env }))?.credentials).toEqual({
      username: 'team',
      password: '2',
    });
    expect((await resolveCredentials('quay.io', 'other/app', { env }))?.credentials).toEqual({
      username: 'all',
      password: '1',
    });
    const run = temp();
    mkdirSync(path.join(run, 'containers'));
    writeFileSync(
      path.join(run, 'containers', 'auth.json'),
      JSON.stringify({ auths: { 'p.io': { auth: b64('pod:man') } } }),
    );
    expect(
      (await resolveCredentials('p.io', 'x', { env: { XDG_RUNTIME_DIR: run, HOME: temp() } }))?.credentials,
    ).toEqual({
      username: 'pod',
      password: 'man',
    });
  });

  it("reads podman's persistent auth.json ($XDG_CONFIG_HOME or ~/.config) after its runtime one", async () => {
    const home = temp();
    mkdirSync(path.join(home, '.config', 'containers'), { recursive: true });
    writeFileSync(
      path.join(home, '.config', 'containers', 'auth.json'),
      JSON.stringify({ auths: { 'p.io': { auth: b64('persistent:1') }, 'q.io': { auth: b64('q:1') } } }),
    );
    const run = temp();
    mkdirSync(path.join(run, 'containers'));
    writeFileSync(
      path.join(run, 'containers', 'auth.json'),
      JSON.stringify({ auths: { 'p.io': { auth: b64('runtime:2') } } }),
    );
    const r = await resolveCredentials('q.io', 'x', { env: { HOME: home, XDG_RUNTIME_DIR: run } });
    expect(r).toEqual({
      credentials: { username: 'q', password: '1' },
      source: path.join(home, '.config', 'containers', 'auth.json'),
    });
    expect(
      (await resolveCredentials('p.io', 'x', { env: { HOME: home, XDG_RUNTIME_DIR: run } }))?.credentials,
    ).toEqual({ username: 'runtime', password: '2' });
    const xdg = temp();
    mkdirSync(path.join(xdg, 'containers'));
    writeFileSync(
      path.join(xdg, 'containers', 'auth.json'),
      JSON.stringify({ auths: { 'p.io': { auth: b64('xdg:3') } } }),
    );
    expect(
      (await resolveCredentials('p.io', 'x', { env: { HOME: home, XDG_CONFIG_HOME: xdg } }))?.credentials,
    ).toEqual({ username: 'xdg', password: '3' });
  });

  it('rejects an unreadable config without printing it', async () => {
    const dir = temp();
    writeFileSync(path.join(dir, 'config.json'), '{"auths": {"a.io": {"auth": "c2VjcmV0"}}}');
    const p = resolveCredentials('a.io', 'x', { env: { DOCKER_CONFIG: dir, HOME: temp() } });
    await expect(p).rejects.toMatchObject({ code: 'CREDENTIALS' });
    await p.catch((e: Error) => expect(e.message).not.toMatch(/secret|c2VjcmV0/));
  });

  it('parses --creds', () => {
    expect(parseCredsFlag('u:p:q')).toEqual({ username: 'u', password: 'p:q' });
    expect(() => parseCredsFlag('nocolon')).toThrow(/USER:PASSWORD/);
  });
});
