import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, join, posix } from 'node:path';
import type { Closure } from '../closure/closure.js';
import { compareBytes, storePathName, type StorePath } from '../closure/store-path.js';
import { NixociError, reason } from '../core/errors.js';
import type { ExtraEntry } from './plan.js';
import { printable, specialKind } from './tree.js';

/** The user the image runs as; root unless asked otherwise. */
export interface ImageUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

export const ROOT_USER: ImageUser = { name: 'root', uid: 0, gid: 0, home: '/root' };

export interface CopySpec {
  /** A file or directory on the host. */
  readonly src: string;
  /** Absolute path in the image; a trailing `/` (or the root) puts `src` inside it under its own name. */
  readonly dest: string;
}

export interface CustomiseOptions {
  readonly user?: ImageUser;
  /** A directory created for (and owned by) the user, e.g. the preset's `/app`. */
  readonly workdir?: string;
  readonly ignoreCollisions?: boolean;
  readonly copies?: readonly CopySpec[];
  /** Prefer this login shell (a name in the bin farm, e.g. `bash`) when it is there. */
  readonly preferShell?: string;
}

export interface Customisation {
  readonly entries: ExtraEntry[];
  /** Env entries the layer implies: PATH, HOME, SSL_CERT_FILE (and SHELL with a preferred shell). */
  readonly env: string[];
  /** The login shell written to /etc/passwd: one the layer links in /bin, or NO_SHELL. */
  readonly shell: string;
}

/** The login shell of /etc/passwd when the layer links none. */
export const NO_SHELL = '/sbin/nologin';

const MAX_COPY_BYTES = 64 << 20;
/** Directories this layer makes for the system: root keeps them whatever --workdir says. */
const SYSTEM_DIRS = new Set([
  'bin',
  'usr',
  'usr/bin',
  'etc',
  'etc/ssl',
  'etc/ssl/certs',
  'tmp',
  'root',
  'home',
]);
const CA_BUNDLES = ['etc/ssl/certs/ca-bundle.crt', 'etc/ssl/certs/ca-certificates.crt'];
const CERT_FILE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * The customisation layer: what a distribution image has and a bare closure lacks. `/bin` and
 * `/usr/bin` hold symlinks to the roots' binaries (like nixpkgs' buildEnv), plus /etc/passwd,
 * /etc/group, /etc/nsswitch.conf, /tmp, the user's home and the CA bundle when the closure has one.
 * Reads directory listings of the roots and the files given with `copies`; the result is plain
 * data that planLayers puts in the last layer.
 */
export function customisationLayer(closure: Closure, options: CustomiseOptions = {}): Customisation {
  const user = options.user ?? ROOT_USER;
  const farm = binFarm(closure.roots, options.ignoreCollisions ?? false);
  const entries: ExtraEntry[] = [];
  const dir = (path: string, mode = 0o755, owner?: ImageUser): void => {
    entries.push({
      kind: 'dir',
      path,
      mode,
      ...(owner && owner.uid !== 0 ? { uid: owner.uid, gid: owner.gid } : {}),
    });
  };
  const file = (path: string, content: string, mode = 0o644): void => {
    entries.push({ kind: 'file', path, mode, content });
  };
  const link = (path: string, target: string): void => {
    entries.push({ kind: 'symlink', path, target });
  };

  dir('bin');
  dir('usr');
  dir('usr/bin');
  for (const [name, target] of farm) {
    link(`bin/${name}`, target);
    link(`usr/bin/${name}`, target);
  }
  // Scripts start with #!/usr/bin/env and #!/bin/sh; a closure often has them outside the roots.
  for (const tool of ['env', 'sh']) {
    if (farm.has(tool)) continue;
    const found = findInClosure(closure, `bin/${tool}`);
    if (found) {
      link(`usr/bin/${tool}`, found);
      if (tool === 'sh') link('bin/sh', found);
    }
  }
  const preferred =
    options.preferShell && farm.has(options.preferShell) ? `/bin/${options.preferShell}` : undefined;
  const shell = preferred ?? (farm.has('sh') || findInClosure(closure, 'bin/sh') ? '/bin/sh' : NO_SHELL);

  dir('etc');
  file('etc/passwd', passwd(user, shell));
  file('etc/group', group(user));
  file('etc/nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n');
  dir('tmp', 0o1777);
  dir('root', 0o700);
  if (user.name !== 'root') {
    for (const parent of ancestors(user.home)) dir(parent);
    dir(rel(user.home), 0o755, user);
  }
  const work = options.workdir === undefined ? '' : rel(options.workdir);
  // A workdir in the store is left to the store layers (and the runtime, which makes a missing one):
  // entries for it here would turn the read-only store directories above it into 0755 ones.
  if (work !== '' && !/^nix(\/|$)/.test(work)) {
    for (const parent of ancestors(options.workdir!)) dir(parent);
    // The user owns a workdir of its own, never / or a directory of the system.
    dir(work, 0o755, SYSTEM_DIRS.has(work) ? undefined : user);
  }

  const env = ['PATH=' + ['/bin', '/usr/bin', ...rootBins(closure.roots)].join(':'), `HOME=${user.home}`];
  if (preferred) env.push(`SHELL=${preferred}`);
  const bundle = findInClosure(closure, ...CA_BUNDLES);
  if (bundle) {
    dir('etc/ssl');
    dir('etc/ssl/certs');
    link(rel(CERT_FILE), bundle);
    env.push(`SSL_CERT_FILE=${CERT_FILE}`);
  }
  for (const c of options.copies ?? []) entries.push(...copyEntries(c, closure.storeDir));
  return { entries: dedupe(entries), env, shell };
}

/** name → absolute target, over the roots in order; a name from two different files is a collision. */
function binFarm(roots: readonly StorePath[], ignoreCollisions: boolean): Map<string, string> {
  const farm = new Map<string, { target: string; root: StorePath }>();
  for (const root of roots) {
    const bin = join(root, 'bin');
    let names: string[];
    try {
      if (!statSync(bin).isDirectory()) continue;
      // A name that is not UTF-8 gets no link: the layer's entries are text, and a link made from
      // the decoded name (U+FFFD for its bytes) would point at nothing. PATH still finds it in bin/.
      names = readdirSync(bin, { encoding: 'buffer' })
        .map((raw) => ({ raw, name: raw.toString('utf8') }))
        .filter(({ raw, name }) => Buffer.from(name, 'utf8').equals(raw))
        .map(({ name }) => name)
        .sort(compareBytes);
    } catch {
      continue; // no bin directory: nothing to link
    }
    for (const name of names) {
      const target = join(bin, name);
      const prev = farm.get(name);
      if (!prev) {
        farm.set(name, { target, root });
      } else if (!ignoreCollisions && resolved(prev.target) !== resolved(target)) {
        throw new NixociError(
          'CUSTOMISE',
          `bin/${name} is provided by two packages: ${storePathName(prev.root)} (${prev.target}) and ${storePathName(root)} (${target})`,
          { hint: 'drop one of the packages, or pass --ignore-collisions to keep the first one' },
        );
      }
    }
  }
  return new Map([...farm].map(([n, v]) => [n, v.target]));
}

function resolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function rootBins(roots: readonly StorePath[]): string[] {
  return roots.map((r) => `${r}/bin`).filter((b) => isDir(b));
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The first `<store path>/<rel>` that exists, searching the roots first, then the rest bytewise. */
function findInClosure(closure: Closure, ...rels: string[]): string | undefined {
  const rest = [...closure.paths.keys()].filter((p) => !closure.roots.includes(p)).sort(compareBytes);
  for (const p of [...closure.roots, ...rest]) {
    for (const r of rels) {
      const f = join(p, r);
      try {
        lstatSync(f);
        return f;
      } catch {
        // not in this path
      }
    }
  }
  return undefined;
}

function passwd(user: ImageUser, shell: string): string {
  const lines = [`root:x:0:0:root:/root:${shell}`];
  if (user.name !== 'root' && user.name !== 'nobody')
    lines.push(`${user.name}:x:${user.uid}:${user.gid}:${user.name}:${user.home}:${shell}`);
  lines.push(
    user.name === 'nobody'
      ? `nobody:x:${user.uid}:${user.gid}:nobody:${user.home}:${shell}`
      : 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin',
  );
  return lines.join('\n') + '\n';
}

function group(user: ImageUser): string {
  const lines = ['root:x:0:'];
  if (user.name !== 'root' && user.name !== 'nogroup') lines.push(`${user.name}:x:${user.gid}:`);
  if (user.gid !== 65534 || user.name === 'nogroup') lines.push('nogroup:x:65534:');
  return lines.join('\n') + '\n';
}

const rel = (p: string): string => posix.normalize(p).replace(/^\/+/, '').replace(/\/+$/, '');

function ancestors(p: string): string[] {
  const parts = rel(p).split('/');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

/** Files of `--copy`, read now: text as UTF-8, anything else as base64. Modes: 0755 if executable. */
function copyEntries(c: CopySpec, storeDir: string): ExtraEntry[] {
  // `/.` or `/app/..` names the root as `/` does: the source goes in it under its own name (as the
  // root itself it would be a tar entry with an empty name, which engines refuse or misread).
  const intoDir = c.dest.endsWith('/') || rel(c.dest) === '';
  const dest = intoDir ? posix.join(c.dest, basename(c.src)) : c.dest;
  if (!dest.startsWith('/') || rel(dest).split('/').includes('..')) {
    throw new NixociError(
      'CUSTOMISE',
      `--copy ${c.src}:${c.dest}: the destination must be an absolute path in the image`,
      {
        hint: 'e.g. --copy ./config.toml:/app/config.toml',
      },
    );
  }
  // The store layers hold the store and the directories above it: a copy there would change a store
  // path's files and make its read-only directories 0755 (or, as a file at /nix, hide the store).
  const store = rel(storeDir);
  const at = rel(dest);
  if (at === store || at.startsWith(`${store}/`) || ancestors(storeDir).includes(at)) {
    throw new NixociError(
      'CUSTOMISE',
      `--copy ${c.src}:${c.dest}: /${at} is in or above the Nix store (${storeDir}), which the store layers hold`,
      { hint: `copy to a path outside ${storeDir} (e.g. /app/...), or add the files to a Nix package` },
    );
  }
  const out: ExtraEntry[] = []; // missing parents are added by the tree walker (0755)
  let total = 0;
  // SRC itself is followed when it is a symlink (nix-build's `result`, a link to a shared config):
  // copied as a link it would point at a path the image does not have. Links below it stay links.
  const walk = (src: string, to: string, follow = false): void => {
    let st;
    try {
      st = lstatSync(src);
      if (follow && st.isSymbolicLink()) st = statSync(src);
    } catch (e) {
      const link = follow && lstatSync(src, { throwIfNoEntry: false })?.isSymbolicLink();
      throw new NixociError(
        'CUSTOMISE',
        link
          ? `--copy ${c.src}: ${src} is a symlink to ${readlinkSync(src)}, which cannot be read: ${reason(e)}`
          : `--copy ${c.src}: cannot read ${src}: ${reason(e)}`,
        {
          hint: link
            ? 'point the link at an existing file or directory'
            : 'the source is relative to the current directory',
        },
      );
    }
    if (st.isDirectory()) {
      out.push({ kind: 'dir', path: to, mode: 0o755 });
      const names = readdirSync(src, { encoding: 'buffer' }).map((raw) => utf8Name(c, src, raw, 'file name'));
      for (const name of names.sort(compareBytes)) walk(join(src, name), `${to}/${name}`);
    } else if (st.isFile()) {
      total += st.size;
      if (total > MAX_COPY_BYTES) {
        throw new NixociError('CUSTOMISE', `--copy ${c.src}: more than 64 MiB of files`, {
          hint: 'put large files in a Nix package instead; --copy is for small project files',
        });
      }
      const bytes = readFileSync(src);
      const text = bytes.toString('utf8');
      const mode = st.mode & 0o111 ? 0o755 : 0o644;
      out.push(
        Buffer.from(text, 'utf8').equals(bytes)
          ? { kind: 'file', path: to, mode, content: text }
          : { kind: 'file', path: to, mode, content: bytes.toString('base64'), encoding: 'base64' },
      );
    } else if (st.isSymbolicLink()) {
      const target = readlinkSync(src, { encoding: 'buffer' });
      out.push({ kind: 'symlink', path: to, target: utf8Name(c, src, target, 'symlink target') });
    } else {
      throw new NixociError('CUSTOMISE', `--copy ${c.src}: ${src} is ${specialKind(st)}`, {
        hint: 'only files, directories and symlinks can be copied into an image',
      });
    }
  };
  walk(c.src, at, true);
  return out;
}

/**
 * A name read from the project as text. The layer's entries are text, so a name that is not UTF-8
 * would be copied with U+FFFD in place of its bytes (a file --copy then cannot find, a symlink to
 * nowhere): an error says which one instead.
 */
function utf8Name(c: CopySpec, src: string, raw: Buffer, what: string): string {
  const name = raw.toString('utf8');
  if (Buffer.from(name, 'utf8').equals(raw)) return name;
  // From the raw bytes: `name` holds U+FFFD where they are not UTF-8, and the message shows \xNN.
  const shown = Buffer.concat([Buffer.from(what === 'file name' ? `${src}/` : `${src} -> `), raw]);
  throw new NixociError('CUSTOMISE', `--copy ${c.src}: ${printable(shown)}: the ${what} is not valid UTF-8`, {
    hint: 'rename it, or put the files in a Nix package (store paths keep names as bytes)',
  });
}

/**
 * One entry per path: a directory made on purpose (owned, 1777) stays as first given, while a
 * later file or symlink (a --copy) replaces what was there. The tree walker sorts them anyway.
 */
function dedupe(entries: readonly ExtraEntry[]): ExtraEntry[] {
  const byPath = new Map<string, ExtraEntry>();
  for (const e of entries) {
    const prev = byPath.get(e.path);
    if (prev && prev.kind === 'dir' && e.kind === 'dir') continue;
    // A directory and a file at one path, or a file with something below it, make a tar that no
    // engine unpacks ("not a directory"): only a --copy can cause it.
    if (prev && (prev.kind === 'dir') !== (e.kind === 'dir'))
      throw clash(`/${e.path}`, 'a directory and a file');
    byPath.set(e.path, e);
  }
  for (const path of byPath.keys())
    for (const a of ancestors(path))
      if (byPath.has(a) && byPath.get(a)!.kind !== 'dir')
        throw clash(`/${a}`, `a ${byPath.get(a)!.kind} with /${path} below it`);
  return [...byPath.values()];
}

function clash(path: string, what: string): NixociError {
  return new NixociError('CUSTOMISE', `--copy: ${path} would be ${what} in the customisation layer`, {
    hint: 'copy into a directory with a trailing slash (--copy file.txt:/etc/), or to a path of its own',
  });
}
