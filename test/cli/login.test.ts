// `nixoci login` / `nixoci logout` as users run them (bin/nixoci.js on dist/), against the real
// registries of scripts/services: the basic-auth one (:5001) and a token-auth registry with its
// token server started here on free ports. Every run gets its own HOME, DOCKER_CONFIG and XDG
// directories under a fresh temp dir, so no real ~/.docker or /run/containers file is read.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/core/shell-quote.js';
import { cliBin, type CliResult } from '../helpers/cli.js';
import { repoRoot, testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { startTokenRegistry, type TokenRegistry } from '../helpers/token-registry.js';
import { uniqueRepo } from '../registry/push-helpers.js';

const env = testEnv();
const user = env.registryBasicUser;
const pass = env.registryBasicPassword;
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh home for one test: its docker config dir (not created) and the environment to run with. */
function home(): { dir: string; config: string; env: NodeJS.ProcessEnv } {
  const dir = mkdtempSync(path.join(tmpdir(), 'hx-login-'));
  dirs.push(dir);
  const docker = path.join(dir, 'docker');
  return {
    dir,
    config: path.join(docker, 'config.json'),
    env: {
      HOME: dir,
      DOCKER_CONFIG: docker,
      XDG_RUNTIME_DIR: path.join(dir, 'run'),
      XDG_CONFIG_HOME: path.join(dir, 'config'),
      REGISTRY_AUTH_FILE: '',
      NIXOCI_REGISTRY_USER: '',
      NIXOCI_REGISTRY_PASSWORD: '',
    },
  };
}

/** Runs the CLI with `input` on its standard input (a pipe, never a terminal). */
function run(args: string[], runEnv: NodeJS.ProcessEnv, input = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cliBin, args, { cwd: repoRoot, env: { ...process.env, ...runEnv } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => {
      // a run that refuses before reading its input closes the pipe
    });
    child.stdin.end(input);
  });
}

const decoded = (file: string, key: string): string => {
  const auths = (JSON.parse(readFileSync(file, 'utf8')) as { auths: Record<string, { auth: string }> }).auths;
  return Buffer.from(auths[key]!.auth, 'base64').toString();
};

describe('nixoci login / logout against the basic-auth registry', () => {
  let fixture: FixtureClosure;
  beforeAll(async () => {
    fixture = await buildFixtureClosure({ tag: 'v1' });
  });

  it('refuses a wrong password and writes nothing', async () => {
    const h = home();
    mkdirSync(path.dirname(h.config));
    const before = JSON.stringify({ auths: { 'other.example': { auth: 'eDp5' } }, psFormat: 'x' });
    writeFileSync(h.config, before);
    const r = await run(['login', '-u', user, '--password-stdin', env.registryBasic], h.env, 'hx-wrong\n');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `nixoci: error: login to ${env.registryBasic} failed: GET /v2/: 401 UNAUTHORIZED: authentication required\n` +
        `hint: check the user name and password for ${env.registryBasic}; nothing was stored\n`,
    );
    expect(readFileSync(h.config, 'utf8')).toBe(before);
  });

  it('stores what the registry took, keeps the other keys, and push uses it; logout removes it', async () => {
    const h = home();
    mkdirSync(path.dirname(h.config));
    writeFileSync(h.config, JSON.stringify({ auths: { 'other.example': { auth: 'eDp5' } }, psFormat: 'x' }));
    const repo = uniqueRepo('hx-login-push');
    const ref = `docker://${env.registryBasic}/${repo}:v1`;
    const push = (): Promise<CliResult> =>
      run(['push', '--graph', fixture.graphFile, ref, '--no-cache'], h.env);

    const denied = await push();
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain(`hint: log in with nixoci login ${env.registryBasic}, or pass --creds`);

    // the password ends in a newline on stdin: exactly one is taken off
    const r = await run(
      ['login', '-u', user, '--password-stdin', '-v', env.registryBasic],
      h.env,
      `${pass}\n`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Login Succeeded\n');
    expect(r.stderr).toContain('GET /v2/ → 200');
    expect(r.stderr).not.toContain(pass);
    expect(r.stderr).not.toContain(Buffer.from(`${user}:${pass}`).toString('base64'));
    const written = JSON.parse(readFileSync(h.config, 'utf8')) as Record<string, unknown>;
    expect(written.psFormat).toBe('x');
    expect(Object.keys(written.auths as object).sort()).toEqual([env.registryBasic, 'other.example']);
    expect(decoded(h.config, 'other.example')).toBe('x:y');
    expect(decoded(h.config, env.registryBasic)).toBe(`${user}:${pass}`);
    expect(statSync(h.config).mode & 0o777).toBe(0o600);
    // no temp file is left beside it
    expect(readdirSync(path.dirname(h.config))).toEqual(['config.json']);

    const pushed = await push();
    expect(pushed.code, pushed.stderr).toBe(0);

    const out = await run(['logout', env.registryBasic], h.env);
    expect(out.code).toBe(0);
    expect(out.stdout).toBe(`Removed login credentials for ${env.registryBasic} from ${h.config}\n`);
    expect(out.stderr).toBe('');
    expect(Object.keys((JSON.parse(readFileSync(h.config, 'utf8')) as { auths: object }).auths)).toEqual([
      'other.example',
    ]);
    const again = await push();
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`hint: log in with nixoci login ${env.registryBasic}, or pass --creds`);

    const twice = await run(['logout', env.registryBasic], h.env);
    expect(twice.code).toBe(0);
    expect(twice.stdout).toBe(`Not logged in to ${env.registryBasic}\n`);
  });

  it('creates the directory 0700 and the file 0600; -p warns; logout names credentials left elsewhere', async () => {
    const h = home();
    const r = await run(['login', '-u', user, '-p', pass, `http://${env.registryBasic}/`], h.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('nixoci: warning: --password on the command line is insecure');
    expect(r.stderr).not.toContain(pass);
    expect(statSync(path.dirname(h.config)).mode & 0o777).toBe(0o700);
    expect(statSync(h.config).mode & 0o777).toBe(0o600);
    expect(decoded(h.config, env.registryBasic)).toBe(`${user}:${pass}`);

    // another spelling of the host, as an older docker wrote it: logout leaves it, and says so
    const config = JSON.parse(readFileSync(h.config, 'utf8')) as { auths: Record<string, unknown> };
    config.auths[`https://${env.registryBasic}/v1/`] = { auth: 'eDp5' };
    writeFileSync(h.config, JSON.stringify(config));
    const out = await run(['logout', env.registryBasic], h.env);
    expect(out.code).toBe(0);
    expect(out.stderr).toBe(
      `nixoci: note: a push to ${env.registryBasic} still finds credentials in ${h.config} (under https://${env.registryBasic}/v1/)\n`,
    );

    // an --authfile that is not the default: the default file is still there for a push
    const other = path.join(h.dir, 'other.json');
    const viaOther = await run(
      ['login', '-u', user, '--password-stdin', '--authfile', other, env.registryBasic],
      h.env,
      pass,
    );
    expect(viaOther.code, viaOther.stderr).toBe(0);
    expect(viaOther.stderr).toContain(
      `nixoci: note: a push to ${env.registryBasic} finds the credentials from ${h.config} first\n`,
    );
    const outOther = await run(['logout', '--authfile', other, env.registryBasic], h.env);
    expect(outOther.stdout).toBe(`Removed login credentials for ${env.registryBasic} from ${other}\n`);
    expect(outOther.stderr).toBe(
      `nixoci: note: a push to ${env.registryBasic} still finds credentials in ${h.config}\n`,
    );
  });

  it('refuses a missing password source, a FIFO or a directory as --authfile; writes through a dangling symlink', async () => {
    const h = home();
    const none = await run(['login', '-u', user, env.registryBasic], h.env);
    expect(none.code).toBe(2);
    expect(none.stderr).toBe(
      'nixoci: error: nixoci login: no password: standard input is not a terminal to ask on\n' +
        `hint: pipe it in with --password-stdin, e.g. \`printenv TOKEN | nixoci login -u ${user} --password-stdin ${env.registryBasic}\`\n`,
    );
    expect(existsSync(path.dirname(h.config))).toBe(false);

    const fifo = path.join(h.dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const dir = path.join(h.dir, 'a-dir');
    mkdirSync(dir);
    for (const [file, what] of [
      [fifo, 'a device, FIFO or socket'],
      [dir, 'a directory'],
    ] as const) {
      for (const cmd of [['login', '-u', user, '--password-stdin'], ['logout']]) {
        const r = await run([...cmd, '--authfile', file, env.registryBasic], h.env, pass);
        expect(r.code).toBe(1);
        expect(r.stderr).toBe(
          `nixoci: error: the auth file ${file} is ${what}, not a regular file\n` +
            'hint: name a JSON file (it is created if missing) with --authfile\n',
        );
      }
    }
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(lstatSync(dir).isDirectory()).toBe(true);

    const link = path.join(h.dir, 'link.json');
    const target = path.join(h.dir, 'dotfiles', 'auth.json');
    symlinkSync(target, link);
    const r = await run(
      ['login', '-u', user, '--password-stdin', '--authfile', link, env.registryBasic],
      h.env,
      pass,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(readlinkSync(link)).toBe(target);
    expect(decoded(target, env.registryBasic)).toBe(`${user}:${pass}`);
    expect(statSync(target).mode & 0o777).toBe(0o600);
  });

  it('asks for the user name and the password on a terminal, the password without echo', async () => {
    const h = home();
    const typescript = path.join(h.dir, 'typescript');
    const cmd = [cliBin, 'login', env.registryBasic].map(shellQuote).join(' ');
    const child = spawn('script', ['-q', '-e', '-c', cmd, typescript], {
      cwd: repoRoot,
      env: { ...process.env, ...h.env },
    });
    let seen = '';
    let step = 0;
    child.stdout.on('data', (b: Buffer) => {
      seen += b.toString();
      // each answer only once its question is on the screen: raw mode is on by then
      if (step === 0 && seen.includes('Username: ')) {
        step = 1;
        child.stdin.write(`${user}\r`);
      }
      if (step === 1 && seen.includes('Password: ')) {
        step = 2;
        child.stdin.write(`${pass}\r`);
      }
    });
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
    child.stdin.destroy();
    expect(code, seen).toBe(0);
    expect(seen).toContain(`Username: ${user}`);
    expect(seen).toContain('Login Succeeded');
    expect(seen).not.toContain(pass);
    expect(decoded(h.config, env.registryBasic)).toBe(`${user}:${pass}`);
  });
});

describe('nixoci login against a token-auth registry', () => {
  let reg: TokenRegistry;
  beforeAll(async () => {
    reg = await startTokenRegistry({ users: { 'hx-login-alice': 'hx-login-secret' } });
  });
  afterAll(async () => reg.close());

  it('gets a token with the credentials before storing them; a refused password stores nothing', async () => {
    const h = home();
    const bad = await run(['login', '-u', 'hx-login-alice', '--password-stdin', reg.host], h.env, 'nope');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      new RegExp(
        `^nixoci: error: authentication to ${reg.host} failed: the token server .* refused the credentials \\(401\\)\\n`,
      ),
    );
    expect(bad.stderr).toContain(
      `hint: check the user name and password for ${reg.host}; nothing was stored\n`,
    );
    expect(existsSync(path.dirname(h.config))).toBe(false);

    const ok = await run(
      ['login', '-u', 'hx-login-alice', '--password-stdin', reg.host],
      h.env,
      'hx-login-secret\n',
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('Login Succeeded\n');
    expect(reg.tokenServer.requests.some((q) => q.user === 'hx-login-alice' && q.status === 200)).toBe(true);
    expect(decoded(h.config, reg.host)).toBe('hx-login-alice:hx-login-secret');
  });
});

describe('nixoci login through a credential helper', () => {
  it('stores with `store` and removes with `erase` when the config names credsStore; the file is left as it was', async () => {
    const h = home();
    const bin = path.join(h.dir, 'bin');
    mkdirSync(bin);
    const store = path.join(h.dir, 'helper-store');
    // a helper that keeps one entry in a file: store writes its input, erase removes the file
    writeFileSync(
      path.join(bin, 'docker-credential-hxtest'),
      [
        '#!/bin/sh',
        `f=${shellQuote(store)}`,
        'case "$1" in',
        '  store) cat > "$f" ;;',
        '  erase) read -r url; if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;',
        '  get) echo "credentials not found in native keychain"; exit 1 ;;',
        'esac',
        '',
      ].join('\n'),
    );
    chmodSync(path.join(bin, 'docker-credential-hxtest'), 0o755);
    mkdirSync(path.dirname(h.config));
    const before = JSON.stringify({ credsStore: 'hxtest' });
    writeFileSync(h.config, before);
    const runEnv = { ...h.env, PATH: `${bin}:${process.env.PATH}` };

    const r = await run(['login', '-u', user, '--password-stdin', env.registryBasic], runEnv, pass);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Login Succeeded\n');
    expect(r.stderr).toBe('');
    expect(JSON.parse(readFileSync(store, 'utf8'))).toEqual({
      ServerURL: env.registryBasic,
      Username: user,
      Secret: pass,
    });
    expect(readFileSync(h.config, 'utf8')).toBe(before);

    const out = await run(['logout', env.registryBasic], runEnv);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe(
      `Removed login credentials for ${env.registryBasic} from docker-credential-hxtest\n`,
    );
    expect(existsSync(store)).toBe(false);
    const twice = await run(['logout', env.registryBasic], runEnv);
    expect(twice.stdout).toBe(`Not logged in to ${env.registryBasic}\n`);
  });
});
