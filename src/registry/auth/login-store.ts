import { linkTarget } from '../../core/follow-links.js';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { atomicWrite } from '../../core/atomic-write.js';
import { makeDirs } from '../../core/make-dirs.js';
import { NixociError, reason } from '../../core/errors.js';
import { DOCKER_HUB } from '../reference.js';
import { eraseWithHelper, storeWithHelper, type HelperOptions } from './cred-helper.js';
import { configFile, DOCKER_HUB_KEY, helperFor, normaliseKey, type ConfigFile } from './credentials.js';

/** How `nixoci login` stored the credentials: in the file, or through a credential helper. */
export type StoredIn = { readonly file: string } | { readonly helper: string };

/** The auths key (and a helper's ServerURL) of a registry, as `docker login` writes it. */
export function loginKey(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_KEY : registry;
}

/**
 * Stores `username`/`password` for `registry` as `docker login` does: through the helper the file
 * names for the registry (credHelpers, else credsStore), else as `auths[KEY].auth` in the file,
 * every other key of the file kept. The file is checked before anything is stored.
 */
export async function storeLogin(
  file: string,
  registry: string,
  username: string,
  password: string,
  helperOptions: HelperOptions = {},
): Promise<StoredIn> {
  const auth = readAuthFile(file);
  const key = loginKey(registry);
  const helper = auth.config && helperFor(auth.config, registry);
  if (helper) {
    await storeWithHelper(helper, key, username, password, registry, helperOptions);
    return { helper: `docker-credential-${helper}` };
  }
  const auths = { ...(auth.raw.auths as Record<string, unknown> | undefined) };
  // the whole entry is replaced: an identitytoken left in it would be used before the new auth
  auths[key] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  writeAuthFile(auth, { ...auth.raw, auths });
  return { file: auth.target };
}

/**
 * Removes the credentials for `registry` as `docker logout` does: `erase` through the file's
 * helper for it, and the `auths` entries under the keys docker removes (KEY, `http://KEY`,
 * `https://KEY`). Returns where something was removed (empty: there was nothing to remove).
 */
export async function eraseLogin(
  file: string,
  registry: string,
  helperOptions: HelperOptions = {},
): Promise<string[]> {
  const auth = readAuthFile(file);
  if (!auth.config) return [];
  const key = loginKey(registry);
  const removed: string[] = [];
  const helper = helperFor(auth.config, registry);
  if (helper && (await eraseWithHelper(helper, key, registry, helperOptions)))
    removed.push(`docker-credential-${helper}`);
  const keys = registry === DOCKER_HUB ? [key] : [key, `http://${key}`, `https://${key}`];
  const auths = { ...(auth.raw.auths as Record<string, unknown> | undefined) };
  const gone = keys.filter((k) => Object.hasOwn(auths, k));
  if (gone.length > 0) {
    for (const k of gone) delete auths[k];
    writeAuthFile(auth, { ...auth.raw, auths });
    removed.push(auth.target);
  }
  return removed;
}

/** The keys of `file`'s auths other than those `eraseLogin` removes that still name `registry`. */
export function otherSpellings(file: string, registry: string): string[] {
  let auth: AuthFile;
  try {
    auth = readAuthFile(file);
  } catch {
    return [];
  }
  const key = loginKey(registry);
  const skip = new Set([key, `http://${key}`, `https://${key}`]);
  return Object.keys(auth.config?.auths ?? {}).filter(
    (k) => !skip.has(k) && normaliseKey(k, false) === registry,
  );
}

interface AuthFile {
  /** The file as named. */
  readonly file: string;
  /** Where it is written: a symlink (even a dangling one) is followed, not replaced. */
  readonly target: string;
  /** Its JSON, every key; `{}` when the file does not exist yet. */
  readonly raw: Record<string, unknown>;
  /** The keys nixoci uses, checked; undefined when the file does not exist. */
  readonly config: ConfigFile | undefined;
}

function readAuthFile(file: string): AuthFile {
  const target = followLinks(file);
  let fd: number;
  try {
    // non-blocking: a FIFO named as the file is refused below, never waited on
    fd = openSync(target, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { file, target, raw: {}, config: undefined };
    if (code === 'EISDIR') throw notAFile(file, 'a directory');
    throw new NixociError('CREDENTIALS', `cannot read the auth file ${file}: ${reason(e)}`, {
      hint: 'check its permissions, or name another one with --authfile',
    });
  }
  let text: string;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notAFile(file, st.isDirectory() ? 'a directory' : 'a device, FIFO or socket');
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  let raw: unknown;
  try {
    raw = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    raw = undefined;
  }
  const parsed = configFile.safeParse(raw);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !parsed.success)
    throw new NixociError(
      'CREDENTIALS',
      `cannot use the auth file ${file}: not a valid docker/podman auth file`,
      {
        hint: 'fix or remove the file (nothing was changed), or name another one with --authfile',
      },
    );
  return { file, target, raw: raw as Record<string, unknown>, config: parsed.data };
}

function writeAuthFile(auth: AuthFile, content: Record<string, unknown>): void {
  const dir = dirname(auth.target);
  try {
    // docker's own mode for the directory it makes: it holds secrets
    makeDirs(dirname(dir));
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    atomicWrite(auth.target, `${JSON.stringify(content, null, '\t')}\n`, { mode: 0o600 });
  } catch (e) {
    throw new NixociError('CREDENTIALS', `cannot write the auth file ${auth.file}: ${reason(e)}`, {
      hint: 'check the permissions of the file and its directory, or name another one with --authfile',
    });
  }
}

function notAFile(file: string, what: string): NixociError {
  return new NixociError('CREDENTIALS', `the auth file ${file} is ${what}, not a regular file`, {
    hint: 'name a JSON file (it is created if missing) with --authfile',
  });
}

function followLinks(file: string): string {
  const target = linkTarget(file);
  if (target !== undefined) return target;
  throw new NixociError(
    'CREDENTIALS',
    `cannot use the auth file ${file}: too many levels of symbolic links`,
    {
      hint: 'name the file itself with --authfile',
    },
  );
}
