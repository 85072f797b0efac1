import { NixociError, quote } from '../core/errors.js';

/** An absolute path directly under the store dir, e.g. `/nix/store/<32 nix32 chars>-name`. */
export type StorePath = string & { readonly __brand: 'StorePath' };

export const DEFAULT_STORE_DIR = '/nix/store';

// nix32 alphabet: 0-9 a-z without e o u t.
export const HASH_PART = '[0123456789abcdfghijklmnpqrsvwxyz]{32}';
const NAME_PART = '[A-Za-z0-9+\\-._?=]+';

export function storeDirFromEnv(): string {
  return process.env.NIX_STORE_DIR || DEFAULT_STORE_DIR;
}

/** Parse a string as a store path; `where` names the file or flag it came from, for the error. */
export function parseStorePath(s: string, where: string, storeDir = storeDirFromEnv()): StorePath {
  const bad = (why: string): never => {
    throw new NixociError('STORE_PATH_INVALID', `${where}: ${quote(s)} is not a store path: ${why}`, {
      hint: `store paths look like ${storeDir}/<hash>-<name>`,
    });
  };
  if (typeof s !== 'string' || s.length === 0) bad('empty');
  if (s.includes('\0')) bad('contains a NUL byte');
  if (!s.startsWith('/')) bad('relative path');
  if (s.split('/').some((c) => c === '..' || c === '.')) bad('contains a "." or ".." component');
  if (!s.startsWith(storeDir + '/')) bad(`outside the store dir ${storeDir}`);
  const base = s.slice(storeDir.length + 1);
  if (base.includes('/')) bad('a path inside a store path, not a store path itself');
  if (!new RegExp(`^${HASH_PART}-${NAME_PART}$`).test(base))
    bad('the name is not <32-char nix32 hash>-<name>');
  return s as StorePath;
}

export const storePathHash = (p: StorePath): string =>
  p.slice(p.lastIndexOf('/') + 1, p.lastIndexOf('/') + 33);
export const storePathName = (p: StorePath): string => p.slice(p.lastIndexOf('/') + 34);

/** Bytewise comparison, the order used for tar entries and plans (not locale order). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
