import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { NixociError, reason } from '../core/errors.js';
import { HASH_PART } from '../closure/store-path.js';
import { printableBytes } from '../core/escape-controls.js';
import type { PlannedLayer } from './plan.js';
import type { TarEntry } from './tar-header.js';

/**
 * A tar entry and where its content comes from: bytes held in memory, or else the store file at
 * `/` + name (not kept as a second Buffer: a layer of 100k files holds 100k entries at once).
 */
export interface SourcedEntry extends TarEntry {
  readonly content?: Buffer;
}

export interface TreeOptions {
  readonly storeDir: string;
  /** Keep setuid/setgid bits (cleared by default: a store path should never grant privileges). */
  readonly keepSetuid?: boolean;
}

const SLASH = 0x2f;
const SLASH_BYTES = Buffer.from('/');

/** The absolute path of a store entry's file. */
export const sourceOf = (e: TarEntry): Buffer => Buffer.concat([SLASH_BYTES, e.name]);

/**
 * Lists every entry of a planned layer, sorted bytewise by name, parents first. Reads metadata only
 * (lstat, readdir, readlink), never file contents. Names are kept as raw bytes so that file names
 * that are not valid UTF-8 survive unchanged.
 */
export function collectEntries(layer: PlannedLayer, options: TreeOptions): SourcedEntry[] {
  // Store entries have unique names, none a parent's (those are the store dir's components) and none
  // the customisation layer's (which holds no store paths): they need no map keyed by name, which
  // for a layer of 100k files would hold 100k more strings at the peak.
  const walked: SourcedEntry[] = [];
  const entries = new Map<string, SourcedEntry>();
  const add = (e: SourcedEntry): void => {
    entries.set(e.name.toString('latin1'), e);
  };
  const addParents = (name: Buffer): void => {
    for (let i = name.indexOf(SLASH); i > 0; i = name.indexOf(SLASH, i + 1)) {
      const parent = name.subarray(0, i);
      if (!entries.has(parent.toString('latin1'))) add({ name: parent, type: 'dir', mode: 0o755, size: 0 });
    }
  };

  for (const p of layer.storePaths) {
    const abs = Buffer.from(p);
    addParents(abs.subarray(1));
    walk(abs, options, (e) => walked.push(e));
  }
  for (const x of layer.extra ?? []) {
    const name = Buffer.from(x.path.replace(/^\/+/, '').replace(/\/+$/, ''));
    addParents(name);
    const owner =
      x.kind === 'symlink' ? {} : { ...(x.uid ? { uid: x.uid } : {}), ...(x.gid ? { gid: x.gid } : {}) };
    if (x.kind === 'dir') add({ name, type: 'dir', mode: x.mode, size: 0, ...owner });
    else if (x.kind === 'symlink')
      add({ name, type: 'symlink', mode: 0o777, size: 0, linkTarget: Buffer.from(x.target) });
    else {
      const content = Buffer.from(x.content, x.encoding ?? 'utf8');
      add({ name, type: 'file', mode: x.mode, size: content.length, content, ...owner });
    }
  }
  for (const e of entries.values()) walked.push(e);
  return walked.sort((a, b) => Buffer.compare(a.name, b.name));
}

/** Walks `abs`; each entry's name is a view of its absolute path without the leading `/`. */
function walk(abs: Buffer, options: TreeOptions, add: (e: SourcedEntry) => void): void {
  const name = abs.subarray(1);
  let st: Stats;
  try {
    st = lstatSync(abs);
  } catch (e) {
    throw storeReadError(abs, e);
  }
  const mode = permissions(st.mode, options);
  if (st.isSymbolicLink()) {
    let target: Buffer;
    try {
      target = readlinkSync(abs, { encoding: 'buffer' });
    } catch (e) {
      throw storeReadError(abs, e);
    }
    add({ name, type: 'symlink', mode: 0o777, size: 0, linkTarget: target });
  } else if (st.isFile()) {
    add({ name, type: 'file', mode, size: st.size });
  } else if (st.isDirectory()) {
    add({ name, type: 'dir', mode, size: 0 });
    let children: Buffer[];
    try {
      children = readdirSync(abs, { encoding: 'buffer' });
    } catch (e) {
      throw storeReadError(abs, e);
    }
    for (const c of children) walk(Buffer.concat([abs, SLASH_BYTES, c]), options, add);
  } else {
    throw new NixociError('STORE_READ', `cannot put ${printable(abs)} in a layer: it is ${specialKind(st)}`, {
      hint: 'store paths hold only files, directories and symlinks; rebuild the path without it',
    });
  }
}

/** What a file that is neither a file, a directory nor a symlink is, for messages. */
export function specialKind(st: Stats): string {
  return st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a device node';
}

function permissions(mode: number, options: TreeOptions): number {
  const bits = mode & 0o7777;
  return options.keepSetuid ? bits : bits & ~0o6000;
}

export function storeReadError(abs: Buffer, e: unknown): NixociError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return notReadable(abs, e);
  return new NixociError('STORE_READ', `cannot read ${printable(abs)}: ${reason(e)}`, {
    hint: 'check that the store path is realised and readable (nix-store --verify-path)',
    cause: e,
  });
}

/** A store path of the store directory: its name is 32 nix32 characters, a dash and a name. */
const STORE_PATH = new RegExp(`^(.*?/${HASH_PART}-[^/]+)`);

/**
 * Permission denied in the store: Nix keeps every store file world-readable, so a file or
 * directory only its owner may read was changed by hand (or copied in with its mode), and
 * "is the path realised?" is the wrong question. Names the file, its mode and owner, and the path.
 */
function notReadable(abs: Buffer, e: unknown): NixociError {
  const file = printable(abs);
  const storePath = STORE_PATH.exec(file)?.[1];
  let what = '';
  try {
    const st = lstatSync(abs);
    const owner = st.uid === 0 ? 'root' : `uid ${st.uid}`;
    what = ` (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner ${owner})`;
  } catch {
    // a directory above it this user may not search: the path alone says enough
  }
  const path = storePath ? `store path ${storePath}` : 'store path';
  return new NixociError('STORE_READ', `cannot read ${file}${what}: permission denied`, {
    hint: `the ${path} is not readable by this user (Nix keeps store files readable by all): run nixoci as a user that can read it, or restore its permissions (nix-store --repair-path)`,
    cause: e,
  });
}

/** A path for messages: invalid UTF-8 and control characters are escaped, never printed raw. */
export const printable = (b: Buffer): string => printableBytes(b);
