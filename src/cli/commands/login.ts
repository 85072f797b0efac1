import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { NixociError, isNixociError } from '../../core/errors.js';
import { loginFile, normaliseKey, resolveCredentials } from '../../registry/auth/credentials.js';
import { eraseLogin, otherSpellings, storeLogin } from '../../registry/auth/login-store.js';
import { RegistryClient } from '../../registry/client.js';
import { DOCKER_HUB, DOCKER_HUB_API } from '../../registry/reference.js';
import { outputOptions, parseFlags, usage } from '../flags.js';
import type { Io } from '../output.js';
import { ask, readStdin } from '../prompt.js';
import { HELP_REGISTRY_CONNECTION_FLAGS, registryAccess, registryAccessOptions } from '../registry-flags.js';

const AUTHFILE_HELP = `  --authfile FILE               the auth file (default: $REGISTRY_AUTH_FILE, else
                                $DOCKER_CONFIG/config.json, else ~/.docker/config.json: the first
                                file a push reads)
`;

export const LOGIN_HELP = `Usage: nixoci login [flags] REGISTRY

Check a user name and password (or token) against REGISTRY (GET /v2/, basic or token auth), then
store them where a push finds them: through the credential helper the auth file names for the
registry (credHelpers, credsStore), else as auths[REGISTRY].auth in the file (mode 0600; its other
keys are kept). Docker Hub (docker.io) is stored under https://index.docker.io/v1/, as docker does.
Refused credentials store nothing. On a terminal, what is not given is asked for (the password
without echo).

  -u, --username USER           the user name
  -p, --password PASSWORD       the password (insecure: it shows in the shell history and ps)
  --password-stdin              read the password from standard input (one trailing newline is
                                taken off)
${AUTHFILE_HELP}${HELP_REGISTRY_CONNECTION_FLAGS}  -v, --verbose                 print what is sent and answered (never credentials)
  -h, --help                    this help

Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
`;

export const LOGOUT_HELP = `Usage: nixoci logout [flags] REGISTRY

Remove the credentials for REGISTRY: \`erase\` through the credential helper the auth file names
for it, and its auths entry (REGISTRY, http://REGISTRY, https://REGISTRY) in the file. Says so
when there was nothing to remove (exit 0), and when a push would still find credentials for
REGISTRY elsewhere (credential helpers are not run for that).

${AUTHFILE_HELP}  -h, --help                    this help

Exit codes: 0 success, 1 failure, 2 usage error.
`;

const { creds: _creds, ...accessOptions } = registryAccessOptions;

export const loginOptions = {
  username: { type: 'string', short: 'u' },
  password: { type: 'string', short: 'p' },
  'password-stdin': { type: 'boolean' },
  authfile: { type: 'string' },
  ...accessOptions,
  verbose: outputOptions.verbose,
  help: outputOptions.help,
} as const;

export const logoutOptions = {
  authfile: { type: 'string' },
  help: outputOptions.help,
} as const;

export async function loginCommand(argv: readonly string[], io: Io, signal?: AbortSignal): Promise<number> {
  const { values, positionals } = parseFlags('login', argv, loginOptions);
  if (values.help) {
    io.out(LOGIN_HELP);
    return 0;
  }
  const registry = registryArg('login', positionals);
  const access = registryAccess(values, 'login');
  if (values['password-stdin'] && values.password !== undefined)
    throw usage('login', '--password and --password-stdin contradict each other; give one of them');
  const tty = Boolean(process.stdin.isTTY);
  let username = values.username;
  if (username === undefined) {
    if (values['password-stdin'] || !tty)
      throw usage(
        'login',
        'no user name: give it with -u/--username (standard input is not a terminal to ask on)',
      );
    username = await ask('Username: ', true, io.err);
  }
  if (username === '' || username.includes(':'))
    throw usage('login', 'the user name must not be empty or contain ":"');
  let password = values.password;
  if (password !== undefined)
    io.err(
      'nixoci: warning: --password on the command line is insecure (shell history, ps); use --password-stdin\n',
    );
  else if (values['password-stdin']) password = await readStdin();
  else if (tty) password = await ask('Password: ', false, io.err);
  else
    throw new NixociError('USAGE', 'nixoci login: no password: standard input is not a terminal to ask on', {
      hint: `pipe it in with --password-stdin, e.g. \`printenv TOKEN | nixoci login -u ${username} --password-stdin ${registry}\``,
    });
  if (password === '') throw usage('login', 'the password is empty');

  const log = values.verbose ? (l: string): void => io.err(`${l}\n`) : undefined;
  const client = new RegistryClient(registry, registry === DOCKER_HUB ? DOCKER_HUB_API : registry, {
    ...access,
    what: `login to ${registry}`,
    creds: { username, password },
    credsSource: 'the user name and password given',
    ...(log ? { log } : {}),
    ...(signal ? { signal } : {}),
  });
  try {
    await client.checkVersion(signal);
  } catch (e) {
    // the hint a push gives ("which came from --creds … or nixoci login") does not fit here
    if (isNixociError(e) && e.code === 'REGISTRY_AUTH' && !e.hint?.includes('invalid_token'))
      throw new NixociError(e.code, e.message, {
        hint: `check the user name and password for ${registry}; nothing was stored`,
      });
    throw e;
  }
  const file = authFile(values.authfile);
  const stored = await storeLogin(file, registry, username, password, signal ? { signal } : {});
  if ('file' in stored) {
    io.err(
      `nixoci: warning: the password is stored unencrypted in ${stored.file} (set credsStore to a credential helper to keep it elsewhere)\n`,
    );
    const used = await resolveCredentials(registry, '', { helpers: false }).catch(() => undefined);
    if (!used || !sameFile(used.source, stored.file))
      io.err(
        used
          ? `nixoci: note: a push to ${registry} finds the credentials from ${used.source} first\n`
          : `nixoci: note: a push reads ${file} only when REGISTRY_AUTH_FILE names it\n`,
      );
  }
  io.out('Login Succeeded\n');
  return 0;
}

export async function logoutCommand(argv: readonly string[], io: Io, signal?: AbortSignal): Promise<number> {
  const { values, positionals } = parseFlags('logout', argv, logoutOptions);
  if (values.help) {
    io.out(LOGOUT_HELP);
    return 0;
  }
  const registry = registryArg('logout', positionals);
  const file = authFile(values.authfile);
  const removed = await eraseLogin(file, registry, signal ? { signal } : {});
  io.out(
    removed.length > 0
      ? `Removed login credentials for ${registry} from ${removed.join(' and ')}\n`
      : `Not logged in to ${registry}\n`,
  );
  // Files and variables only: a helper may ask for a password or unlock a keyring.
  const left = await resolveCredentials(registry, '', { helpers: false }).catch(() => undefined);
  if (left) {
    const others = sameFile(left.source, file) ? otherSpellings(file, registry) : [];
    const under = others.length > 0 ? ` (under ${others.join(', ')})` : '';
    io.err(`nixoci: note: a push to ${registry} still finds credentials in ${left.source}${under}\n`);
  }
  return 0;
}

/** `--authfile`, else the file a push reads first (see `loginFile`). */
function authFile(flag: string | undefined): string {
  return flag ?? loginFile(process.env);
}

function sameFile(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  return real(a) === real(b);
}

/**
 * REGISTRY as docker takes it: `HOST[:PORT]`, or a URL of it (`https://HOST/`, Docker Hub's
 * `https://index.docker.io/v1/`); Docker Hub's names are `docker.io`.
 */
function registryArg(command: string, positionals: readonly string[]): string {
  if (positionals.length !== 1)
    throw usage(
      command,
      `give one REGISTRY (e.g. ghcr.io or 127.0.0.1:5000), got ${positionals.length} arguments`,
    );
  const arg = positionals[0]!;
  const bare = arg.replace(/^https?:\/\//i, '');
  // USER:PASSWORD@HOST: never echoed
  if (bare.includes('@'))
    throw usage(command, 'credentials do not go in REGISTRY; give them with -u and --password-stdin');
  const registry = normaliseKey(arg, false);
  const path = bare.slice(bare.indexOf('/') + 1 || bare.length).replace(/\/+$/, '');
  const host = /^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/;
  if (!host.test(registry) || !/^(?:v[12])?$/.test(path))
    throw usage(
      command,
      `${JSON.stringify(arg)} is not a registry: give HOST or HOST:PORT (e.g. ghcr.io, 127.0.0.1:5000)`,
    );
  return registry;
}
