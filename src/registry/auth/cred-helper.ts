import { childProcess } from '../../core/builtins.js';
import { z } from 'zod';
import { NixociError, reason } from '../../core/errors.js';
import type { Credentials } from './credentials.js';

const helperOutput = z.object({ Username: z.string(), Secret: z.string() });

/** Docker's convention: a helper returns this user name when `Secret` is an identity (refresh) token. */
const TOKEN_USER = '<token>';

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
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) {
    throw new NixociError(
      'CREDENTIALS',
      `credential helper ${JSON.stringify(helper)} for ${registry} is not a valid name`,
      {
        hint: 'check credHelpers / credsStore in the docker config',
      },
    );
  }
  const bin = `docker-credential-${helper}`;
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

function run(
  bin: string,
  args: string[],
  input: string,
  registry: string,
  options: HelperOptions,
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
            hint: `run \`echo ${input} | ${bin} get\` to see why (it may be waiting for a password), or pass --creds`,
          },
        ),
      );
    }, timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
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
