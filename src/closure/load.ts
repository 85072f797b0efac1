import { lstatSync, readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { NixociError, quote, reason } from '../core/errors.js';
import type { Closure, PathInfo } from './closure.js';
import {
  graphEntriesSchema,
  hashString,
  pathInfoObjectSchema,
  pathInfoV2Schema,
  plainPathsSchema,
  wrappedGraphSchema,
  type GraphEntry,
} from './graph-schema.js';
import { normaliseNarHash } from './nar-hash.js';
import { NIX_FEATURES, runNix, type NixRunOptions } from './nix.js';
import { parseStorePath, storeDirFromEnv, type StorePath } from './store-path.js';

export interface LoadOptions {
  readonly storeDir?: string;
  /** Check that every store path exists on disk (default true). */
  readonly checkExists?: boolean;
}

const MAX_GRAPH_BYTES = 256 << 20;

/** Reads a closure graph file (any of the accepted shapes); `where` in errors is the file name. */
export async function loadGraphFile(
  file: string,
  options: LoadOptions & NixRunOptions = {},
): Promise<Closure> {
  return parseGraph(readGraphJson(file), file, options);
}

/**
 * The graph file's JSON. Its text is not kept once parsed: for a closure of 60,000 paths it is a
 * 30 MB string, which would otherwise stay alive while the closure is built from the JSON.
 */
function readGraphJson(file: string): unknown {
  let text: string;
  try {
    // stat, not lstat: `result` symlinks are the usual way to name the file. A device or FIFO
    // would be read forever (/dev/zero) or block (a pipe nobody writes to).
    const st = statSync(file);
    if (!st.isFile()) {
      throw new NixociError('GRAPH_READ', `${file}: not a regular file`, {
        hint: 'pass the JSON file written by nix/closure-graph.nix or `nix path-info --json --recursive`',
      });
    }
    if (st.size > MAX_GRAPH_BYTES) {
      throw new NixociError('GRAPH_READ', `${file}: graph file is ${st.size} bytes, larger than 256 MiB`, {
        hint: 'pass the closure graph of the image, not something else',
      });
    }
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof NixociError) throw e;
    throw new NixociError('GRAPH_READ', `cannot read graph file ${file}: ${reason(e)}`, {
      hint: 'pass an existing file written by nix/closure-graph.nix or `nix path-info --json --recursive`',
      cause: e,
    });
  }
  // Checked before parsing: JSON.parse of 100 MB of nested brackets takes ~30 s and 5 GB.
  if (nestedDeeperThan(text, MAX_GRAPH_DEPTH)) {
    throw new NixociError(
      'GRAPH_JSON',
      `${file}: nested deeper than ${MAX_GRAPH_DEPTH} levels: not a closure graph`,
      {
        hint: 'the graph file must be JSON as written by exportReferencesGraph or nix path-info --json',
      },
    );
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new NixociError('GRAPH_JSON', `${file}: not valid JSON: ${reason(e)}`, {
      hint: 'the graph file must be JSON as written by exportReferencesGraph or nix path-info --json',
    });
  }
}

/** Every graph format nests a few levels (a derivation's .attrs.json a few more). */
const MAX_GRAPH_DEPTH = 64;

/** Whether JSON text opens more than `max` arrays/objects inside each other (strings skipped). */
function nestedDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Turns parsed graph JSON into a validated Closure. */
export async function parseGraph(
  json: unknown,
  where: string,
  options: LoadOptions & NixRunOptions = {},
): Promise<Closure> {
  const storeDir = options.storeDir ?? storeDirFromEnv();
  // A plain list of store paths: ask Nix for the rest of the graph.
  const plain = plainPathsSchema.safeParse(json);
  if (plain.success && plain.data.length > 0) {
    const paths = plain.data.map((p, i) => parseStorePath(p, `${where}: entry ${i}`, storeDir));
    return closureFromPaths(paths, { ...options, storeDir });
  }
  const { entries, roots } = extractEntries(json, where);
  return buildClosure(entries, roots, where, { ...options, storeDir });
}

function extractEntries(
  json: unknown,
  where: string,
): { entries: GraphEntry[]; roots: string[] | undefined } {
  const arr = graphEntriesSchema.safeParse(json);
  if (arr.success) return { entries: arr.data, roots: undefined };
  if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
    if ((json as { version?: unknown }).version === 2 && 'info' in json)
      return { entries: v2Entries(json, where), roots: undefined };
    const wrapped = wrappedGraphSchema.safeParse(json);
    if (wrapped.success) {
      // A structured-attrs file: the entries are the one non-empty array-of-entries value in the
      // object. A derivation's whole .attrs.json also holds other lists, empty ones (stdenv's
      // buildInputs, sorted before `closure`) among them.
      const graphs: [string, GraphEntry[]][] = [];
      let empty = false;
      let firstBad: [string, z.ZodError] | undefined;
      for (const [k, v] of Object.entries(json)) {
        if (k === 'roots' || !Array.isArray(v)) continue;
        const inner = graphEntriesSchema.safeParse(v);
        if (inner.success) {
          if (inner.data.length > 0) graphs.push([k, inner.data]);
          else empty = true;
        } else if (v.length > 0 && typeof v[0] === 'object') firstBad ??= [k, inner.error];
      }
      if (graphs.length > 1) {
        throw new NixociError(
          'GRAPH_SHAPE',
          `${where}: holds several closure graphs (${graphs.map(([k]) => k).join(', ')})`,
          { hint: 'export one graph (exportReferencesGraph.closure = [ roots… ]) for the image' },
        );
      }
      if (graphs.length === 1) return { entries: graphs[0]![1], roots: wrapped.data.roots };
      if (firstBad) throw shapeError(where, firstBad[1], firstBad[0]);
      if (empty) return { entries: [], roots: wrapped.data.roots };
    }
    // Nix ≥ 2.33 adds `version` and `storeDir` beside the store paths of its version-1 format.
    const { version, storeDir, ...byPath } = json as Record<string, unknown>;
    const obj = pathInfoObjectSchema.safeParse(
      typeof version === 'number' || typeof storeDir === 'string' ? byPath : json,
    );
    if (obj.success && Object.keys(obj.data).length > 0) {
      const entries: GraphEntry[] = [];
      for (const [path, info] of Object.entries(obj.data)) {
        if (info === null) throw notValid(where, path);
        entries.push({ path, narHash: info.narHash, narSize: info.narSize, references: info.references });
      }
      return { entries, roots: undefined };
    }
    throw shapeError(where, obj.success ? undefined : obj.error);
  }
  throw shapeError(where, arr.error);
}

/** Entries of `nix path-info --json-format 2` output: base names made full paths with its storeDir. */
function v2Entries(json: object, where: string): GraphEntry[] {
  const v2 = pathInfoV2Schema.safeParse(json);
  if (!v2.success) throw shapeError(where, v2.error);
  const full = (p: string): string => (p.startsWith('/') ? p : `${v2.data.storeDir}/${p}`);
  return Object.entries(v2.data.info).map(([base, info]) => {
    if (info === null) throw notValid(where, full(base));
    return {
      path: full(base),
      narHash: hashString(info.narHash),
      narSize: info.narSize,
      references: info.references.map(full),
    };
  });
}

/** path-info's null for a path the store does not hold. */
function notValid(where: string, path: string): NixociError {
  return new NixociError('STORE_PATH_MISSING', `${where}: ${path} is not valid in the Nix store`, {
    hint: 'build or substitute it first (nix-store --realise)',
  });
}

function shapeError(where: string, err: z.ZodError | undefined, key?: string): NixociError {
  const issue = err?.issues[0];
  const at = issue
    ? ` at ${[...(key ? [key] : []), ...issue.path].join('.') || '(top)'}: ${issue.message}`
    : '';
  return new NixociError('GRAPH_SHAPE', `${where}: not a closure graph${at}`, {
    hint: 'expected exportReferencesGraph JSON, `nix path-info --json --recursive` output, or a list of store paths',
  });
}

async function buildClosure(
  entries: readonly GraphEntry[],
  rootsIn: readonly string[] | undefined,
  where: string,
  options: LoadOptions & { storeDir: string },
): Promise<Closure> {
  if (entries.length === 0) {
    throw new NixociError('GRAPH_EMPTY', `${where}: the graph has no store paths`, {
      hint: 'build the closure graph of at least one derivation',
    });
  }
  const paths = new Map<StorePath, PathInfo>();
  entries.forEach((e, i) => {
    const at = `${where}: entry ${i} (${quote(e.path)})`;
    if (e.valid === false) {
      throw new NixociError('STORE_PATH_MISSING', `${at}: not valid in the Nix store`, {
        hint: 'build or substitute it first (nix-store --realise)',
      });
    }
    const path = parseStorePath(e.path, `${where}: entry ${i}`, options.storeDir);
    if (paths.has(path)) {
      throw new NixociError('GRAPH_DUPLICATE', `${at}: listed twice`, {
        hint: 'each store path may appear once',
      });
    }
    const narHash = normaliseNarHash(e.narHash);
    if (!narHash) {
      throw new NixociError('GRAPH_SHAPE', `${at}: narHash ${quote(e.narHash)} is not a sha256 hash`, {
        hint: 'expected SRI (sha256-…) or sha256:<nix32|hex>',
      });
    }
    // exportReferencesGraph lists references as full paths; old path-info too. Self-references are dropped.
    const references = e.references
      .map((r, j) => parseStorePath(r, `${where}: entry ${i} reference ${j}`, options.storeDir))
      .filter((r) => r !== path);
    paths.set(path, { path, narHash, narSize: e.narSize, references: [...new Set(references)].sort() });
  });
  for (const info of paths.values()) {
    const refs = info.references as StorePath[];
    for (let k = 0; k < refs.length; k++) {
      const r = refs[k]!;
      const target = paths.get(r);
      // The referenced entry's own path string, so that each path is held once, not once per
      // reference to it (~25 MB for a closure of 60,000 paths with five references each).
      if (target) refs[k] = target.path;
      else {
        throw new NixociError(
          'GRAPH_DANGLING',
          `${where}: ${info.path} references ${r}, which is not in the graph`,
          {
            hint: 'the graph must be closed: export it with exportReferencesGraph or nix path-info --recursive',
          },
        );
      }
    }
  }
  const cycle = findCycle(paths);
  if (cycle) {
    throw new NixociError('GRAPH_SHAPE', `${where}: references form a cycle: ${cycle.join(' → ')}`, {
      hint: 'Nix store paths can only reference themselves; the graph file was altered or is not from Nix',
    });
  }
  // A root given twice (--path P --path P, or P and a result link to it) is one root: kept where
  // it first came, so that PATH names its bin once and the image does not depend on the repeat.
  const roots = rootsIn
    ? dedupe(
        rootsIn.map((r, i) => {
          const p = parseStorePath(r, `${where}: root ${i}`, options.storeDir);
          if (!paths.has(p)) {
            throw new NixociError('GRAPH_DANGLING', `${where}: root ${p} is not in the graph`, {
              hint: 'the roots must be entries of the graph',
            });
          }
          return p;
        }),
      )
    : inferRoots(paths);
  if (options.checkExists !== false) {
    for (const p of paths.keys()) {
      try {
        lstatSync(p);
      } catch {
        throw new NixociError('STORE_PATH_MISSING', `${where}: ${p} does not exist on disk`, {
          hint: 'realise it first (nix-store --realise PATH) or build the closure on this machine',
        });
      }
    }
  }
  return { storeDir: options.storeDir, roots, paths };
}

const dedupe = (roots: readonly StorePath[]): StorePath[] => [...new Set(roots)];

/** A reference cycle between distinct paths (iterative DFS, so a deep graph cannot overflow the stack). */
function findCycle(paths: ReadonlyMap<StorePath, PathInfo>): StorePath[] | undefined {
  const state = new Map<StorePath, 1 | 2>(); // 1 on the current path, 2 done
  for (const start of paths.keys()) {
    if (state.has(start)) continue;
    const stack: { p: StorePath; i: number }[] = [{ p: start, i: 0 }];
    state.set(start, 1);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const refs = paths.get(top.p)!.references;
      if (top.i >= refs.length) {
        state.set(top.p, 2);
        stack.pop();
        continue;
      }
      const r = refs[top.i++]!;
      const s = state.get(r);
      if (s === 1) return [...stack.slice(stack.findIndex((f) => f.p === r)).map((f) => f.p), r];
      if (s === undefined) {
        state.set(r, 1);
        stack.push({ p: r, i: 0 });
      }
    }
  }
  return undefined;
}

/** Paths no other path refers to, in bytewise order. */
function inferRoots(paths: ReadonlyMap<StorePath, PathInfo>): StorePath[] {
  const referenced = new Set<StorePath>();
  for (const i of paths.values()) for (const r of i.references) referenced.add(r);
  const roots = [...paths.keys()].filter((p) => !referenced.has(p)).sort();
  // A cycle without any unreferenced path (impossible for real Nix output): every path is a root.
  return roots.length > 0 ? roots : [...paths.keys()].sort();
}

/** The closure of the given store paths, with the graph from `nix path-info --json --recursive`. */
export async function closureFromPaths(
  roots: readonly StorePath[],
  options: LoadOptions & NixRunOptions = {},
): Promise<Closure> {
  const storeDir = options.storeDir ?? storeDirFromEnv();
  for (const r of roots) {
    try {
      lstatSync(r);
    } catch {
      throw new NixociError('STORE_PATH_MISSING', `${r} does not exist on disk`, {
        hint: 'build it first (nix-build / nix build) or check the path for typos',
      });
    }
  }
  const out = await pathInfoJson(roots, options);
  let json: unknown;
  try {
    json = JSON.parse(out);
  } catch (e) {
    throw new NixociError('NIX_FAILED', `nix path-info printed invalid JSON: ${reason(e)}`, {
      hint: 'check your Nix installation (nix --version)',
    });
  }
  const { entries } = extractEntries(json, 'nix path-info');
  return buildClosure(entries, roots, 'nix path-info', { ...options, storeDir });
}

/**
 * `nix path-info --json --recursive`. Nix 2.33 deprecated `--json` without `--json-format` (it still
 * prints version 1, with a warning) and will refuse it; older Nix does not know the flag. So the
 * plain form goes first, and a Nix that refuses it for want of `--json-format` is asked for
 * version 2, which extractEntries reads too.
 */
async function pathInfoJson(roots: readonly string[], options: NixRunOptions): Promise<string> {
  const args = ['path-info', ...NIX_FEATURES, '--json', '--recursive'];
  try {
    return await runNix([...args, ...roots], options);
  } catch (e) {
    if (!(e instanceof NixociError) || !/json-format/.test(e.message)) throw e;
    return runNix([...args, '--json-format', '2', ...roots], options);
  }
}
