import { childProcess } from '../../core/builtins.js';
import { z } from 'zod';
import { NixociError, reason } from '../../core/errors.js';
import type { Credentials } from './credentials.js';

const helperOutput = z.object({ Username: z.string(), Secret: z.string() });

/** Docker's convention: a helper returns this user name when `Secret` is an identity (refresh) token. */
const TOKEN_USER = '<token>';

/**
 * The most a helper may print (stdout and stderr together): an answer is a few hundred bytes, and
 * a helper printing without end would otherwise fill the memory before the timeout.
 */
const MAX_HELPER_OUTPUT = 1 << 20;

/** How long a helper may take (one that asks for a password on a terminal nobody watches). */
const HELPER_TIMEOUT_MS = 30_000;

export interface HelperOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Ctrl-C: the helper is killed and the lookup ends at once. */
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/**
 * Runs `docker-credential-<helper> get` with the server URL on stdin, as docker does. Returns
 * undefined when the helper has nothing for this server; a helper that cannot run or answers
 * garbage is an error naming the helper (never its output, which may hold a secret).
 */
export async function runCredentialHelper(
  helper: string,
  serverUrl: string,
  registry: string,
  options: HelperOptions = {},
): Promise<Credentials | undefined> {
  const bin = helperBin(helper, registry);
  const { code, stdout, stderr } = await run(bin, ['get'], serverUrl, registry, options);
  if (code !== 0) {
    // Helpers print this (and exit 1) when they simply have no entry for the server.
    if (/credentials not found/i.test(stdout + stderr)) return undefined;
    throw new NixociError(
      'CREDENTIALS',
      `credential helper ${bin} failed for ${registry}: ${typeof code === 'number' ? `exit code ${code}` : `killed by ${code}`}`,
      {
        hint: `run \`echo ${serverUrl} | ${bin} get\` to see why, or pass --creds`,
      },
    );
  }
  let parsed: z.infer<typeof helperOutput>;
  try {
    parsed = helperOutput.parse(JSON.parse(stdout));
  } catch {
    throw new NixociError('CREDENTIALS', `credential helper ${bin} gave unreadable output for ${registry}`, {
      hint: 'it must print {"Username": …, "Secret": …} as JSON',
    });
  }
  if (parsed.Username === TOKEN_USER) return { identityToken: parsed.Secret };
  return { username: parsed.Username, password: parsed.Secret };
}

/**
 * `docker-credential-<helper> store` with `{"ServerURL", "Username", "Secret"}` on stdin, as
 * `docker login` stores through a helper. A failure names the helper, never the secret.
 */
export async function storeWithHelper(
  helper: string,
  serverUrl: string,
  username: string,
  secret: string,
  registry: string,
  options: HelperOptions = {},
): Promise<void> {
  const bin = helperBin(helper, registry);
  const input = JSON.stringify({ ServerURL: serverUrl, Username: username, Secret: secret });
  const { code } = await run(bin, ['store'], input, registry, options, serverUrl);
  if (code !== 0) throw helperFailed(bin, 'store', code, registry);
}

/**
 * `docker-credential-<helper> erase` with the server URL on stdin. False when the helper had
 * nothing for the server ("credentials not found"), as `get` says it.
 */
export async function eraseWithHelper(
  helper: string,
  serverUrl: string,
  registry: string,
  options: HelperOptions = {},
): Promise<boolean> {
  const bin = helperBin(helper, registry);
  const { code, stdout, stderr } = await run(bin, ['erase'], serverUrl, registry, options);
  if (code === 0) return true;
  if (/credentials not found/i.test(stdout + stderr)) return false;
  throw helperFailed(bin, 'erase', code, registry);
}

function helperBin(helper: string, registry: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) {
    throw new NixociError(
      'CREDENTIALS',
      `credential helper ${JSON.stringify(helper)} for ${registry} is not a valid name`,
      {
        hint: 'check credHelpers / credsStore in the docker config',
      },
    );
  }
  return `docker-credential-${helper}`;
}

function helperFailed(
  bin: string,
  action: string,
  code: number | NodeJS.Signals,
  registry: string,
): NixociError {
  // its output is not quoted: a helper may echo what it was given
  return new NixociError(
    'CREDENTIALS',
    `credential helper ${bin} failed to ${action} the credentials for ${registry}: ${typeof code === 'number' ? `exit code ${code}` : `killed by ${code}`}`,
    {
      hint: `check that ${bin} works (\`${bin} list\`), or remove credsStore / credHelpers from the auth file to store in it`,
    },
  );
}

function run(
  bin: string,
  args: string[],
  input: string,
  registry: string,
  options: HelperOptions,
  /** What messages may quote of the input (a `store`'s input holds the secret). */
  shown = input,
): Promise<{ code: number | NodeJS.Signals; stdout: string; stderr: string }> {
  const { signal } = options;
  const timeoutMs = options.timeoutMs ?? HELPER_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new NixociError('ABORTED', 'aborted'));
      return;
    }
    const child = childProcess().spawn(bin, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    // Settled by the helper's end, or at once by a timeout or Ctrl-C: a helper script killed then
    // may leave a child of its own holding the pipes, whose 'close' would never come.
    const stop = (e: NixociError): void => {
      done();
      child.kill('SIGKILL');
      child.stdin.destroy();
      child.stdout.destroy();
      child.stderr.destroy();
      reject(e);
    };
    const onAbort = (): void => stop(new NixociError('ABORTED', 'aborted'));
    const timer = setTimeout(() => {
      stop(
        new NixociError(
          'CREDENTIALS',
          `credential helper ${bin} for ${registry} did not answer within ${Math.round(timeoutMs / 1000)} s`,
          {
            hint: `run \`echo ${shown} | ${bin} get\` to see why (it may be waiting for a password), or pass --creds`,
          },
        ),
      );
    }, timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    let size = 0;
    const keep = (into: Buffer[]) => (b: Buffer) => {
      size += b.length;
      if (size <= MAX_HELPER_OUTPUT) {
        into.push(b);
        return;
      }
      stop(
        new NixociError(
          'CREDENTIALS',
          `credential helper ${bin} for ${registry} printed more than ${MAX_HELPER_OUTPUT >> 20} MiB and was stopped`,
          { hint: `run \`echo ${shown} | ${bin} get\` to see what it prints, or pass --creds` },
        ),
      );
    };
    child.stdout.on('data', keep(out));
    child.stderr.on('data', keep(err));
    child.stdin.on('error', () => {
      // A helper that exits without reading stdin is judged by its exit code.
    });
    child.on('error', (e) => {
      done();
      reject(
        new NixociError(
          'CREDENTIALS',
          `credential helper ${bin} for ${registry} could not run: ${reason(e)}`,
          {
            hint: `install ${bin} on PATH or remove it from the docker config`,
            cause: e,
          },
        ),
      );
    });
    child.on('close', (code, sig) => {
      done();
      resolve({
        code: code ?? sig ?? 1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.end(input);
  });
}
