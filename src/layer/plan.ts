import type { Closure, PathInfo } from '../closure/closure.js';
import { compareBytes, storePathName, type StorePath } from '../closure/store-path.js';

export const PLAN_VERSION = 1;
export const DEFAULT_MAX_LAYERS = 100;

/** A synthetic entry of the customisation layer (paths relative to `/`, no leading slash). */
export type ExtraEntry =
  | {
      readonly kind: 'dir';
      readonly path: string;
      readonly mode: number;
      readonly uid?: number;
      readonly gid?: number;
    }
  | {
      readonly kind: 'file';
      readonly path: string;
      readonly mode: number;
      /** UTF-8 text, or base64 when `encoding` says so (binary files copied from the project). */
      readonly content: string;
      readonly encoding?: 'base64';
      readonly uid?: number;
      readonly gid?: number;
    }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string };

export interface PlannedLayer {
  /** Sorted bytewise. */
  readonly storePaths: readonly StorePath[];
  /** narHash of each store path, aligned with `storePaths`. */
  readonly narHashes: readonly string[];
  readonly narSize: number;
  /** Entries not from the store (customisation layer); content is UTF-8 text. */
  readonly extra?: readonly ExtraEntry[];
}

export interface LayerPlan {
  readonly version: typeof PLAN_VERSION;
  readonly layers: readonly PlannedLayer[];
}

export interface PlanOptions {
  readonly maxLayers?: number;
  /** Appended as the last layer when given and non-empty. */
  readonly extra?: readonly ExtraEntry[];
}

/**
 * Plans the layers of a closure. Pure: reads no files and no clock.
 *
 * Order: paths that many others depend on (transitively) come first, the roots last, because the
 * engine reuses only an identical prefix of layers and the app changes most often. Ties are broken
 * by the store path's name part and then its hash, so the order does not depend on input order.
 *
 * Beyond the layer budget, the least-depended-on paths keep a layer each and the most-depended-on
 * ones are grouped into buckets chosen by the store path's name (not its hash, which changes on every
 * rebuild): a rebuilt path lands in the same bucket as before, so one changed path changes one
 * bucket and never the grouping of the others.
 */
export function planLayers(closure: Closure, options: PlanOptions = {}): LayerPlan {
  const extra = options.extra && options.extra.length > 0 ? options.extra : undefined;
  const budget = Math.max(1, (options.maxLayers ?? DEFAULT_MAX_LAYERS) - (extra ? 1 : 0));
  const ordered = orderPaths(closure);
  const layers: PlannedLayer[] = [];

  if (ordered.length <= budget) {
    for (const info of ordered) layers.push(layerOf([info]));
  } else {
    // Over budget: the paths with the fewest dependents keep a layer each — they are the ones that
    // change alone (the app, its own libraries), so a rebuild of one re-sends just that path. The
    // most depended-on paths share B buckets (B = a quarter of the budget): when one of those
    // changes, everything that depends on it changes too, so sharing a layer costs little extra.
    const buckets = budget === 1 ? 1 : Math.max(1, Math.floor(budget / 4));
    const singles = budget - buckets;
    const grouped = ordered.slice(0, ordered.length - singles);
    const groups: PathInfo[][] = Array.from({ length: buckets }, () => []);
    for (const info of grouped) groups[bucketOf(info.path, buckets)]!.push(info);
    // Buckets keep their fixed position so a change in one never reorders the others.
    for (const g of groups) if (g.length > 0) layers.push(layerOf(g));
    for (const info of ordered.slice(ordered.length - singles)) layers.push(layerOf([info]));
  }
  if (extra) layers.push({ storePaths: [], narHashes: [], narSize: 0, extra });
  return { version: PLAN_VERSION, layers };
}

function layerOf(infos: readonly PathInfo[]): PlannedLayer {
  const sorted = [...infos].sort((a, b) => compareBytes(a.path, b.path));
  return {
    storePaths: sorted.map((i) => i.path),
    narHashes: sorted.map((i) => i.narHash),
    narSize: sorted.reduce((n, i) => n + i.narSize, 0),
  };
}

function bucketOf(p: StorePath, buckets: number): number {
  // FNV-1a over the name part: cheap, stable across Node versions and machines.
  let h = 0x811c9dc5;
  for (const b of Buffer.from(storePathName(p))) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h % buckets;
}

/** Store paths from most to least depended-on (counting transitive dependents), roots last. */
export function orderPaths(closure: Closure): PathInfo[] {
  const infos = [...closure.paths.values()];
  const index = new Map<StorePath, number>(infos.map((info, i) => [info.path, i]));
  const refs = infos.map((info) => info.references.flatMap((r) => index.get(r) ?? []));
  const dependents = countDependents(refs);
  const roots = new Set(closure.roots);
  const names = infos.map((info) => storePathName(info.path));
  const order = infos.map((_, i) => i);
  order.sort((a, b) => {
    const ra = roots.has(infos[a]!.path) ? 1 : 0;
    const rb = roots.has(infos[b]!.path) ? 1 : 0;
    if (ra !== rb) return ra - rb;
    const da = dependents[a]!;
    const db = dependents[b]!;
    if (da !== db) return db - da;
    return compareBytes(names[a]!, names[b]!) || compareBytes(infos[a]!.path, infos[b]!.path);
  });
  return order.map((i) => infos[i]!);
}

/**
 * How many other paths reach each path over references (its transitive dependents). A walk from
 * every path costs paths × reachable (~50 s for 20,000 paths); instead each strongly connected
 * component (one path, but a graph given as JSON may have cycles) gets the set of paths that reach
 * it as a bitset, made from its dependents' sets in topological order: at most references × paths
 * / 32 word operations. Bits are numbered in that order, so a set holds no bit past its own
 * component's, and only the words up to it are copied and counted. A set is dropped once passed
 * on (a chain holds two at a time). The set holds the component's own paths too: each of them
 * counts the others, never itself.
 */
function countDependents(refs: readonly (readonly number[])[]): Uint32Array {
  const n = refs.length;
  const words = (n + 31) >>> 5;
  const { comp, count } = components(refs);
  const members: number[][] = Array.from({ length: count }, () => []);
  for (let v = 0; v < n; v++) members[comp[v]!]!.push(v);
  const reachedBy: (Int32Array | undefined)[] = new Array<Int32Array | undefined>(count);
  const dependents = new Uint32Array(n);
  let bit = 0;
  // components() numbers a component after every one it references: highest first is dependents first.
  for (let c = count - 1; c >= 0; c--) {
    const set = reachedBy[c] ?? new Int32Array(words);
    reachedBy[c] = undefined;
    for (const _ of members[c]!) {
      set[bit >>> 5] = set[bit >>> 5]! | (1 << (bit & 31));
      bit++;
    }
    const used = ((bit - 1) >>> 5) + 1;
    const reached = popcount(set, used) - 1;
    for (const v of members[c]!) {
      dependents[v] = reached;
      for (const r of refs[v]!) {
        const rc = comp[r]!;
        if (rc === c) continue;
        const into = (reachedBy[rc] ??= new Int32Array(words));
        for (let w = 0; w < used; w++) into[w] = into[w]! | set[w]!;
      }
    }
  }
  return dependents;
}

/**
 * Tarjan's strongly connected components, without recursion (a chain of 20,000 paths would
 * overflow the stack): each path's component number, numbered so that a component comes after
 * every component it references.
 */
function components(refs: readonly (readonly number[])[]): { comp: Int32Array; count: number } {
  const n = refs.length;
  const order = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const comp = new Int32Array(n).fill(-1);
  const next = new Int32Array(n); // the next reference of each path on the walk to look at
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const walk: number[] = [];
  let seen = 0;
  let count = 0;
  for (let start = 0; start < n; start++) {
    if (order[start] !== -1) continue;
    walk.push(start);
    order[start] = low[start] = seen++;
    stack.push(start);
    onStack[start] = 1;
    while (walk.length > 0) {
      const v = walk[walk.length - 1]!;
      const vr = refs[v]!;
      if (next[v]! < vr.length) {
        const r = vr[next[v]!++]!;
        if (order[r] === -1) {
          order[r] = low[r] = seen++;
          stack.push(r);
          onStack[r] = 1;
          walk.push(r);
        } else if (onStack[r]) low[v] = Math.min(low[v]!, order[r]!);
        continue;
      }
      walk.pop();
      const parent = walk[walk.length - 1];
      if (parent !== undefined) low[parent] = Math.min(low[parent]!, low[v]!);
      if (low[v] === order[v]) {
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          comp[w] = count;
        } while (w !== v);
        count++;
      }
    }
  }
  return { comp, count };
}

/** Set bits of each 16-bit number. */
const BITS16 = (() => {
  const t = new Uint8Array(1 << 16);
  for (let i = 1; i < t.length; i++) t[i] = (i & 1) + t[i >>> 1]!;
  return t;
})();

/** Set bits in the first `used` words of `set`. */
function popcount(set: Int32Array, used: number): number {
  let bits = 0;
  for (let w = 0; w < used; w++) {
    const x = set[w]!;
    bits += BITS16[x & 0xffff]! + BITS16[x >>> 16]!;
  }
  return bits;
}
