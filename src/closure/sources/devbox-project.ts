import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { z } from 'zod';
import { NixociError, reason } from '../../core/errors.js';
import { readRegularFile } from '../../core/read-small-file.js';
import {
  devboxJsonSchema,
  devboxLockSchema,
  LOCKFILE_VERSIONS,
  type DevboxJson,
  type DevboxLock,
  type LockPackage,
} from './devbox-schema.js';
import { JsoncSyntaxError, parseJsonc } from './jsonc.js';

/** One entry of devbox.json's `packages`, normalised. */
export interface PackageRequest {
  /** As written in devbox.json (`curl@8.4.0`, `curl`, `github:org/repo#pkg`). */
  readonly spec: string;
  /** Keys it may have in devbox.lock, most specific first. */
  readonly lockKeys: readonly string[];
  /** A flake reference rather than a nixpkgs package name. */
  readonly flake: boolean;
  readonly platforms?: readonly string[];
  readonly excludedPlatforms?: readonly string[];
  /** Outputs asked for explicitly; otherwise the lock's default outputs. */
  readonly outputs?: readonly string[];
}

export interface DevboxProject {
  readonly dir: string;
  readonly jsonFile: string;
  readonly lockFile: string;
  readonly json: DevboxJson;
  /** undefined when there is no devbox.lock. */
  readonly lock: DevboxLock | undefined;
  readonly packages: readonly PackageRequest[];
  readonly env: Readonly<Record<string, string>>;
}

const devboxError = (message: string, hint: string): NixociError =>
  new NixociError('DEVBOX', message, { hint });

/** Reads and validates devbox.json and (if present) devbox.lock of a project directory. */
export function readDevboxProject(given: string): DevboxProject {
  // devbox's --config takes the devbox.json file as well as its directory.
  const dir =
    basename(given) === 'devbox.json' && statSync(given, { throwIfNoEntry: false })?.isFile()
      ? dirname(given)
      : given;
  const jsonFile = join(dir, 'devbox.json');
  const lockFile = join(dir, 'devbox.lock');
  if (!existsSync(jsonFile)) {
    throw devboxError(`${jsonFile}: not found`, 'pass the directory that holds devbox.json (--devbox DIR)');
  }
  const json = parseFile(jsonFile, devboxJsonSchema, 'devbox.json');
  const lock = existsSync(lockFile) ? readLock(lockFile) : undefined;
  return {
    dir,
    jsonFile,
    lockFile,
    json,
    lock,
    packages: packageRequests(json, jsonFile),
    env: json.env ?? {},
  };
}

function readLock(lockFile: string): DevboxLock {
  const raw = parseText(lockFile, 'devbox.lock');
  const version = (raw as { lockfile_version?: unknown } | null)?.lockfile_version;
  if (typeof version === 'string' && !(LOCKFILE_VERSIONS as readonly string[]).includes(version)) {
    throw devboxError(
      `${lockFile}: lockfile_version ${JSON.stringify(version)} is not supported (nixoci reads version ${LOCKFILE_VERSIONS.join(', ')})`,
      'update nixoci, or regenerate the lock with a devbox release that writes lockfile_version "1"',
    );
  }
  return validate(lockFile, raw, devboxLockSchema, 'devbox.lock');
}

/** devbox.json and devbox.lock of hundreds of packages are some 100 KiB. */
const MAX_DEVBOX_FILE_BYTES = 64 << 20;

function parseText(file: string, what: string): unknown {
  let text: string;
  try {
    text = readRegularFile(file, MAX_DEVBOX_FILE_BYTES);
  } catch (e) {
    throw devboxError(`cannot read ${file}: ${reason(e)}`, `check that ${what} is readable`);
  }
  try {
    return parseJsonc(text);
  } catch (e) {
    if (e instanceof JsoncSyntaxError) {
      throw devboxError(
        `${file}:${e.line}:${e.column}: syntax error in ${what}: ${e.message}`,
        `fix the ${what} syntax at line ${e.line} (comments and trailing commas are allowed)`,
      );
    }
    throw e;
  }
}

function parseFile<T extends z.ZodTypeAny>(file: string, schema: T, what: string): z.infer<T> {
  return validate(file, parseText(file, what), schema, what);
}

function validate<T extends z.ZodTypeAny>(file: string, raw: unknown, schema: T, what: string): z.infer<T> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data as z.infer<T>;
  const issue = innermost(r.error.issues[0]!);
  const at = issue.path.join('.') || '(top level)';
  throw devboxError(
    `${file}: ${at}: ${issue.message}`,
    `see the ${what} reference at https://www.jetify.com/docs/devbox/`,
  );
}

/**
 * Where a value fits no branch of a union: the issue of the branch that got furthest into it
 * (`packages.0: Expected string` for `"packages": [3]`), or the union's own message when every
 * branch failed at the value itself (zod would say only "Invalid input").
 */
function innermost(issue: z.ZodIssue): z.ZodIssue {
  if (issue.code !== 'invalid_union') return issue;
  let best: z.ZodIssue = issue;
  for (const inner of issue.unionErrors.flatMap((e) => e.issues).map(innermost))
    if (inner.path.length > best.path.length) best = inner;
  return best;
}

/** `github:…`, `path:…`, `./flake#pkg`, `/abs#pkg`: a flake reference, locked under its own name. */
const isFlakeRef = (s: string): boolean =>
  /^[a-z][a-z0-9+]*:/.test(s) || s.startsWith('.') || s.startsWith('/');

function packageRequests(json: DevboxJson, jsonFile: string): PackageRequest[] {
  const pkgs = json.packages ?? [];
  if (Array.isArray(pkgs)) return pkgs.map((spec) => requestOf(spec, undefined, {}, jsonFile));
  return Object.entries(pkgs).map(([name, v]) =>
    typeof v === 'string' ? requestOf(name, v, {}, jsonFile) : requestOf(name, v.version, v, jsonFile),
  );
}

function requestOf(
  name: string,
  version: string | undefined,
  o: { platforms?: string[]; excluded_platforms?: string[]; outputs?: string[] },
  jsonFile: string,
): PackageRequest {
  if (name.startsWith('runx:')) {
    throw devboxError(
      `${jsonFile}: package ${name}: runx packages are not Nix store paths and cannot be put in an image`,
      'remove it from devbox.json or add a Nix package that provides the tool',
    );
  }
  const extra = {
    ...(o.platforms ? { platforms: o.platforms } : {}),
    ...(o.excluded_platforms ? { excludedPlatforms: o.excluded_platforms } : {}),
    // `outputs: []` means the default outputs in devbox (it installs those), not none at all
    ...(o.outputs && o.outputs.length > 0 ? { outputs: o.outputs } : {}),
  };
  if (isFlakeRef(name)) return { spec: name, lockKeys: [name], flake: true, ...extra };
  // In the array form the version is part of the string: `name@version` (the last `@`).
  let base = name;
  let ver = version;
  const at = name.lastIndexOf('@');
  if (version === undefined && at > 0) {
    base = name.slice(0, at);
    ver = name.slice(at + 1);
  }
  const spec = ver === undefined || ver === '' ? base : `${base}@${ver}`;
  const keys =
    ver === undefined || ver === '' || ver === 'latest' ? [`${base}@latest`, base] : [`${base}@${ver}`];
  return { spec, lockKeys: keys, flake: false, ...extra };
}

/** Whether the package is installed on `system` (devbox's platforms / excluded_platforms). */
export function includedOn(p: PackageRequest, system: string): boolean {
  if (p.platforms && !p.platforms.includes(system)) return false;
  return !p.excludedPlatforms?.includes(system);
}

export function lockEntry(
  project: DevboxProject,
  p: PackageRequest,
): { key: string; entry: LockPackage } | undefined {
  for (const key of p.lockKeys) {
    const entry = project.lock?.packages[key];
    if (entry) return { key, entry };
  }
  return undefined;
}
