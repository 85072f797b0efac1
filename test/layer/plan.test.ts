import { describe, expect, it } from 'vitest';
import type { Closure, PathInfo } from '../../src/closure/closure.js';
import type { StorePath } from '../../src/closure/store-path.js';
import { orderPaths, planLayers } from '../../src/layer/plan.js';

const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';
function sp(name: string, seed = name): StorePath {
  let h = '';
  let x = 7;
  for (const c of seed) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  for (let i = 0; i < 32; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    h += NIX32[(x >>> 16) % 32];
  }
  return `/nix/store/${h}-${name}` as StorePath;
}

/** glibc ← lib-i ← app; roots: app. Plus `n` leaves that app depends on. */
function closure(n: number, appSeed = 'app'): Closure {
  const glibc = sp('glibc');
  const libs = Array.from({ length: n }, (_, i) => sp(`lib-${i}`));
  const app = sp('app', appSeed);
  const infos: PathInfo[] = [
    { path: glibc, narHash: 'sha256-g', narSize: 100, references: [] },
    ...libs.map((l) => ({ path: l, narHash: `sha256-${l}`, narSize: 10, references: [glibc] })),
    { path: app, narHash: `sha256-${appSeed}`, narSize: 1, references: [glibc, ...libs] },
  ];
  return { storeDir: '/nix/store', roots: [app], paths: new Map(infos.map((i) => [i.path, i])) };
}

describe('planLayers', () => {
  it('gives one layer per path, most-depended-on first, roots last', () => {
    const c = closure(3);
    const plan = planLayers(c);
    expect(plan.version).toBe(1);
    expect(plan.layers.map((l) => l.storePaths.length)).toEqual([1, 1, 1, 1, 1]);
    expect(plan.layers[0]!.storePaths[0]).toMatch(/-glibc$/);
    expect(plan.layers.at(-1)!.storePaths[0]).toMatch(/-app$/);
    expect(plan.layers.slice(1, 4).map((l) => l.storePaths[0]!.replace(/.*-lib/, 'lib'))).toEqual([
      'lib-0',
      'lib-1',
      'lib-2',
    ]);
  });

  it('does not depend on the order of the input', () => {
    const c = closure(20);
    const reversed: Closure = { ...c, paths: new Map([...c.paths].reverse()) };
    expect(planLayers(reversed, { maxLayers: 8 })).toEqual(planLayers(c, { maxLayers: 8 }));
  });

  it('respects the layer budget and keeps every path exactly once', () => {
    const c = closure(300);
    const plan = planLayers(c, { maxLayers: 100 });
    expect(plan.layers.length).toBeLessThanOrEqual(100);
    const all = plan.layers.flatMap((l) => l.storePaths);
    expect(new Set(all).size).toBe(c.paths.size);
    expect(all.length).toBe(c.paths.size);
  });

  it('changes only the layer of a rebuilt path when over budget', () => {
    const before = planLayers(closure(300, 'app-v1'), { maxLayers: 100 });
    const after = planLayers(closure(300, 'app-v2'), { maxLayers: 100 });
    expect(after.layers.length).toBe(before.layers.length);
    const changed = after.layers.filter((l, i) => JSON.stringify(l) !== JSON.stringify(before.layers[i]));
    expect(changed.length).toBe(1);
    // the app changes alone, so it has a layer of its own: a rebuild re-sends just the app
    expect(changed[0]!.storePaths).toHaveLength(1);
    expect(changed[0]!.storePaths[0]).toMatch(/-app$/);
  });

  it('appends the customisation layer last, within the budget', () => {
    const plan = planLayers(closure(10), {
      maxLayers: 5,
      extra: [{ kind: 'dir', path: 'tmp', mode: 0o1777 }],
    });
    expect(plan.layers.length).toBeLessThanOrEqual(5);
    expect(plan.layers.at(-1)!.extra).toHaveLength(1);
    expect(plan.layers.at(-1)!.storePaths).toEqual([]);
  });

  it('puts everything in one layer with a budget of 1', () => {
    const plan = planLayers(closure(5), { maxLayers: 1 });
    expect(plan.layers).toHaveLength(1);
    expect(plan.layers[0]!.storePaths).toHaveLength(7);
  });

  describe('a densely referencing closure (every path references 50 earlier ones)', () => {
    /** `n` paths, path i referencing 50 of paths 0…i-1 (seeded), plus itself; the last is the root. */
    function dense(n: number, seed = 1): Closure {
      let x = seed;
      const rnd = (k: number): number => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return (x >>> 8) % k;
      };
      const paths = Array.from({ length: n }, (_, i) => sp(`p-${i % 97}`, `s${i}`));
      const infos: PathInfo[] = paths.map((path, i) => {
        const refs = new Set<StorePath>([path]);
        for (let k = 0; k < Math.min(i, 50); k++) refs.add(paths[rnd(i)]!);
        return { path, narHash: `sha256-${i}`, narSize: 10, references: [...refs] };
      });
      return {
        storeDir: '/nix/store',
        roots: [paths.at(-1)!],
        paths: new Map(infos.map((i) => [i.path, i])),
      };
    }

    /** The order by definition: count every path's transitive dependents with plain sets. */
    function orderBySets(c: Closure): StorePath[] {
      const count = new Map<StorePath, number>([...c.paths.keys()].map((p) => [p, 0]));
      for (const p of c.paths.keys()) {
        const seen = new Set<StorePath>([p]);
        const stack = [...c.paths.get(p)!.references];
        while (stack.length > 0) {
          const r = stack.pop()!;
          if (seen.has(r)) continue;
          seen.add(r);
          count.set(r, count.get(r)! + 1);
          stack.push(...c.paths.get(r)!.references);
        }
      }
      const name = (p: string): string => p.slice(p.indexOf('-') + 1);
      return [...c.paths.keys()].sort(
        (a, b) =>
          Number(c.roots.includes(a)) - Number(c.roots.includes(b)) ||
          count.get(b)! - count.get(a)! ||
          Buffer.compare(Buffer.from(name(a)), Buffer.from(name(b))) ||
          Buffer.compare(Buffer.from(a), Buffer.from(b)),
      );
    }

    it('orders by transitive dependents, as counted by definition', () => {
      for (const seed of [1, 2, 3]) {
        const c = dense(400, seed);
        expect(orderPaths(c).map((i) => i.path)).toEqual(orderBySets(c));
      }
    });

    it('plans 4000 of them, every path in one layer (no timing asserted: the bench measures speed)', () => {
      const c = dense(4000);
      const plan = planLayers(c);
      const placed = plan.layers.flatMap((l) => l.storePaths);
      expect(placed).toHaveLength(4000);
      expect(new Set(placed).size).toBe(4000);
    }, 120_000);
  });

  describe('big closures: dependents counted with bitsets', () => {
    /**
     * The walk orderPaths used before the bitsets (commit 55145c3), kept as the reference: from
     * each path over its references, counting each path reached once per walk.
     */
    function orderByWalks(c: Closure): StorePath[] {
      const infos = [...c.paths.values()];
      const index = new Map<StorePath, number>(infos.map((info, i) => [info.path, i]));
      const refs = infos.map((info) => info.references.flatMap((r) => index.get(r) ?? []));
      const dependents = new Uint32Array(infos.length);
      const reachedBy = new Int32Array(infos.length).fill(-1);
      const stack: number[] = [];
      for (let p = 0; p < infos.length; p++) {
        reachedBy[p] = p;
        stack.push(p);
        while (stack.length > 0) {
          for (const r of refs[stack.pop()!]!) {
            if (reachedBy[r] === p) continue;
            reachedBy[r] = p;
            dependents[r]!++;
            stack.push(r);
          }
        }
      }
      const name = (p: string): Buffer => Buffer.from(p.slice(p.indexOf('-') + 1));
      const order = infos.map((_, i) => i);
      order.sort(
        (a, b) =>
          Number(c.roots.includes(infos[a]!.path)) - Number(c.roots.includes(infos[b]!.path)) ||
          dependents[b]! - dependents[a]! ||
          Buffer.compare(name(infos[a]!.path), name(infos[b]!.path)) ||
          Buffer.compare(Buffer.from(infos[a]!.path), Buffer.from(infos[b]!.path)),
      );
      return order.map((i) => infos[i]!.path);
    }

    /**
     * `n` paths with seeded random references: mostly to earlier paths (a DAG, as Nix makes), some
     * to later ones (cycles, which a graph file may hold), to themselves, twice, and to paths
     * outside the closure; a few roots.
     */
    function randomGraph(n: number, seed: number, backEdges: boolean): Closure {
      let x = seed;
      const rnd = (k: number): number => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return (x >>> 8) % k;
      };
      const paths = Array.from({ length: n }, (_, i) => sp(`g-${rnd(n)}`, `${seed}-${i}`));
      const infos: PathInfo[] = paths.map((path, i) => {
        const refs: StorePath[] = [];
        if (rnd(2) === 0) refs.push(path);
        for (let k = rnd(6); k > 0 && i > 0; k--) refs.push(paths[rnd(i)]!);
        if (refs.length > 0 && rnd(4) === 0) refs.push(refs[0]!);
        if (backEdges && rnd(8) === 0) refs.push(paths[rnd(n)]!);
        if (rnd(10) === 0) refs.push(sp('outside', `${seed}-out-${i}`));
        return { path, narHash: `sha256-${i}`, narSize: 1, references: refs };
      });
      const roots = [paths[n - 1]!, paths[rnd(n)]!];
      return { storeDir: '/nix/store', roots, paths: new Map(infos.map((i) => [i.path, i])) };
    }

    it('gives exactly the order of the walks, on random graphs with and without cycles', () => {
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        for (const n of [1, 2, 33, 300]) {
          for (const backEdges of [false, true]) {
            const c = randomGraph(n, seed, backEdges);
            expect(orderPaths(c).map((i) => i.path)).toEqual(orderByWalks(c));
          }
        }
      }
    });

    it('plans a chain of 20,000 paths and a graph of 20,000 (no timing asserted: see docs/performance.md)', () => {
      const paths = Array.from({ length: 20_000 }, (_, i) => sp(`c-${i}`));
      // each path references the one before it and itself; the last is the root
      const chain: Closure = {
        storeDir: '/nix/store',
        roots: [paths.at(-1)!],
        paths: new Map(
          paths.map((path, i) => [
            path,
            { path, narHash: `sha256-${i}`, narSize: 1, references: i > 0 ? [path, paths[i - 1]!] : [path] },
          ]),
        ),
      };
      const ordered = orderPaths(chain).map((i) => i.path);
      // the first path has every other one as a dependent: most depended-on first, the root last
      expect(ordered.every((p, i) => p === paths[i])).toBe(true);
      expect(planLayers(chain).layers.flatMap((l) => l.storePaths)).toHaveLength(20_000);
      const graph = planLayers(randomGraph(20_000, 9, true));
      expect(new Set(graph.layers.flatMap((l) => l.storePaths)).size).toBe(20_000);
    }, 120_000);
  });
});
