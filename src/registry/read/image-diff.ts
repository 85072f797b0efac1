import type { Digest } from '../../core/digest.js';
import type { ImageLayerInfo } from './image-source.js';

export interface SharedLayer {
  readonly diffId: Digest;
  readonly indexA: number;
  readonly indexB: number;
  readonly sizeA: number;
  readonly sizeB: number;
  readonly storePaths: readonly string[];
}

export interface PathRef {
  readonly path: string;
  /** The layer holding it, and that layer's size (it may hold other paths too). */
  readonly layer: number;
  readonly layerSize: number;
}

export interface ChangedPath {
  /** The store path's name without its hash, e.g. `hello-2.12`; what matches the two sides. */
  readonly name: string;
  readonly from: PathRef;
  readonly to: PathRef;
}

export interface ImageDiff {
  /** Layers with the same diffID in both images (same content, whatever the compression). */
  readonly shared: readonly SharedLayer[];
  readonly onlyA: readonly ImageLayerInfo[];
  readonly onlyB: readonly ImageLayerInfo[];
  readonly storePaths: {
    readonly added: readonly PathRef[];
    readonly removed: readonly PathRef[];
    readonly changed: readonly ChangedPath[];
    readonly unchanged: number;
  };
  readonly sizes: {
    readonly a: number;
    readonly b: number;
    /** B's size of the layers both share: what B reuses from A. */
    readonly shared: number;
    /** A's size of the same layers (it differs when one side compresses them and the other not). */
    readonly sharedA: number;
    readonly onlyA: number;
    readonly onlyB: number;
  };
}

const sum = (ls: readonly { size: number }[]): number => ls.reduce((n, l) => n + l.size, 0);

/** `/nix/store/<hash>-hello-2.12` → `hello-2.12`. */
export const pathName = (p: string): string => p.slice(p.lastIndexOf('/') + 34);

/**
 * What differs between two images, layer by layer (matched by diffID, so a gzip and an
 * uncompressed copy of one layer match) and store path by store path (matched by name without
 * hash: a path whose hash changed is `changed`, not removed and added).
 */
export function diffImages(a: readonly ImageLayerInfo[], b: readonly ImageLayerInfo[]): ImageDiff {
  const unusedA = new Map<Digest, ImageLayerInfo[]>();
  for (const l of a) unusedA.set(l.diffId, [...(unusedA.get(l.diffId) ?? []), l]);
  const shared: SharedLayer[] = [];
  const onlyB: ImageLayerInfo[] = [];
  for (const lb of b) {
    const la = unusedA.get(lb.diffId)?.shift();
    if (!la) onlyB.push(lb);
    else
      shared.push({
        diffId: lb.diffId,
        indexA: la.index,
        indexB: lb.index,
        sizeA: la.size,
        sizeB: lb.size,
        storePaths: lb.storePaths.length > 0 ? lb.storePaths : la.storePaths,
      });
  }
  const sharedA = new Set(shared.map((s) => s.indexA));
  const onlyA = a.filter((l) => !sharedA.has(l.index));

  const pathsA = pathRefs(a);
  const pathsB = pathRefs(b);
  const removed = [...pathsA.values()].filter((r) => !pathsB.has(r.path));
  const added = [...pathsB.values()].filter((r) => !pathsA.has(r.path));
  const changed: ChangedPath[] = [];
  const byName = (refs: PathRef[]): Map<string, PathRef[]> => {
    const m = new Map<string, PathRef[]>();
    for (const r of refs) m.set(pathName(r.path), [...(m.get(pathName(r.path)) ?? []), r]);
    return m;
  };
  const removedByName = byName(removed);
  const addedByName = byName(added);
  for (const [name, rs] of removedByName) {
    const as = addedByName.get(name);
    // Only a one-for-one replacement is a change; two versions in and one out stay add/remove.
    if (rs.length === 1 && as?.length === 1) changed.push({ name, from: rs[0]!, to: as[0]! });
  }
  const changedPaths = new Set(changed.flatMap((c) => [c.from.path, c.to.path]));
  return {
    shared,
    onlyA,
    onlyB,
    storePaths: {
      added: added.filter((r) => !changedPaths.has(r.path)),
      removed: removed.filter((r) => !changedPaths.has(r.path)),
      changed: changed.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0)),
      unchanged: [...pathsB.keys()].filter((p) => pathsA.has(p)).length,
    },
    sizes: {
      a: sum(a),
      b: sum(b),
      shared: shared.reduce((n, s) => n + s.sizeB, 0),
      sharedA: shared.reduce((n, s) => n + s.sizeA, 0),
      onlyA: sum(onlyA),
      onlyB: sum(onlyB),
    },
  };
}

function pathRefs(layers: readonly ImageLayerInfo[]): Map<string, PathRef> {
  const m = new Map<string, PathRef>();
  for (const l of layers)
    for (const path of l.storePaths)
      if (!m.has(path)) m.set(path, { path, layer: l.index, layerSize: l.size });
  return m;
}
