// The docker CLI pointed at the test engine (.state/docker.sock), via execFile (no shell).
import { execFile } from 'node:child_process';
import { testEnv } from './env.js';

export interface DockerResult {
  stdout: string;
  stderr: string;
  /** Exit code (null if killed by a signal). */
  code: number | null;
}

export interface DockerOptions {
  /** Data written to the CLI's stdin (e.g. an image archive for `load`). */
  input?: string | Buffer;
  /** Throw if the exit code is not 0 (default true). */
  check?: boolean;
  /** Milliseconds before the CLI is killed (default 120 s). */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** Runs `docker -H <test socket> ...args` and returns its output. */
export function docker(args: string[], opts: DockerOptions = {}): Promise<DockerResult> {
  const env = testEnv();
  const fullArgs = ['-H', env.dockerHost, ...args];
  return new Promise((resolve, reject) => {
    const child = execFile(
      env.dockerCli,
      fullArgs,
      {
        encoding: 'utf8',
        maxBuffer: 256 * 1024 * 1024,
        timeout: opts.timeoutMs ?? 120_000,
        env: { ...process.env, DOCKER_HOST: env.dockerHost, ...opts.env },
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        if (error && typeof error.code === 'string') {
          // spawn failure (ENOENT etc.), not an exit status
          reject(new Error(`cannot run ${env.dockerCli}: ${error.message}`));
          return;
        }
        const result: DockerResult = { stdout, stderr, code };
        if ((opts.check ?? true) && code !== 0) {
          reject(
            new Error(
              `docker ${args.join(' ')} exited with ${String(code)}${error?.killed ? ' (killed)' : ''}\n${stderr}`,
            ),
          );
          return;
        }
        resolve(result);
      },
    );
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => {
        /* reported through the exit status */
      });
      child.stdin?.end(opts.input);
    } else {
      child.stdin?.end();
    }
  });
}

/** `docker run --rm --network none IMAGE ...cmd`; returns stdout. Throws on a non-zero exit. */
export async function dockerRunOutput(
  image: string,
  cmd: string[] = [],
  extraRunArgs: string[] = [],
): Promise<string> {
  const r = await docker(['run', '--rm', '--network', 'none', ...extraRunArgs, image, ...cmd]);
  return r.stdout;
}

/** Removes images by reference, ignoring ones that do not exist. */
export async function dockerRmi(...refs: string[]): Promise<void> {
  if (refs.length === 0) return;
  await docker(['rmi', '--force', ...refs], { check: false });
}
