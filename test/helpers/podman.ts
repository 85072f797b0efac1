// The podman CLI on the image store of the test Podman service (scripts/services: same --root,
// --runroot and storage driver), via execFile (no shell). Local, not `--url`, so that
// `podman image mount` works; the store's locks make it safe next to the running service.
import { execFile } from 'node:child_process';
import { testEnv } from './env.js';

export interface PodmanResult {
  stdout: string;
  stderr: string;
  /** Exit code (null if killed by a signal). */
  code: number | null;
}

/** The global flags that select the test service's store (the same list scripts/services uses). */
export function podmanStoreFlags(): string[] {
  const env = testEnv();
  return [
    '--root',
    env.podmanRoot,
    '--runroot',
    env.podmanRunroot,
    '--tmpdir',
    `${env.podmanRunroot}/libpod`,
    '--storage-driver',
    env.podmanStorageDriver,
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
  ];
}

/**
 * Runs `podman <store flags> ...args`, or with `remote: true` `podman --url <test socket> ...args`
 * (through the API service, as a client would).
 */
export function podman(
  args: string[],
  opts: { check?: boolean; remote?: boolean; timeoutMs?: number } = {},
): Promise<PodmanResult> {
  const global = opts.remote ? ['--url', testEnv().podmanHost] : podmanStoreFlags();
  return new Promise((resolve, reject) => {
    execFile(
      'podman',
      [...global, ...args],
      { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: opts.timeoutMs ?? 120_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code === 'string') {
          reject(new Error(`cannot run podman: ${error.message}`));
          return;
        }
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        if ((opts.check ?? true) && code !== 0) {
          reject(new Error(`podman ${args.join(' ')} exited with ${String(code)}\n${stderr}`));
          return;
        }
        resolve({ stdout, stderr, code });
      },
    );
  });
}

/** `podman image rm --force` of the references; missing ones are ignored. */
export async function podmanRmi(...refs: string[]): Promise<void> {
  if (refs.length > 0) await podman(['image', 'rm', '--force', '--ignore', ...refs], { check: false });
}
