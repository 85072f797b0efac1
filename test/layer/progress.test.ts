// Progress events of a layer (src/layer/layer.ts) as the CLI's bars show them: bytes of the tar
// counted against a total that is the tar's size, for a layer tarred on the calling thread.
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Closure } from '../../src/closure/closure.js';
import { loadGraphFile } from '../../src/closure/load.js';
import { DigestCache } from '../../src/layer/cache.js';
import { makeLayers, type LayerProgress } from '../../src/layer/layer.js';
import { planLayers } from '../../src/layer/plan.js';
import { buildFixtureClosure } from '../helpers/nix.js';

let closure: Closure;

beforeAll(async () => {
  closure = await loadGraphFile((await buildFixtureClosure({ tag: 'layer-progress' })).graphFile);
}, 600_000);

const discard = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

describe('layer progress', () => {
  it("counts a layer's tar bytes against its tar's size, not its NAR size", async () => {
    const events: LayerProgress[] = [];
    const layers = makeLayers(planLayers(closure), {
      compression: 'none',
      cache: new DigestCache(null),
      stats: { bytesRead: 0 },
      storeDir: closure.storeDir,
      onProgress: (e) => events.push(e),
    });
    for (const layer of layers) {
      const d = await layer.writeTo(discard());
      const mine = events.filter((e) => e.layer === layer);
      const counted = mine.filter((e) => e.phase === 'bytes').reduce((n, e) => n + e.bytes, 0);
      expect(counted, layer.planned.storePaths.join(' ')).toBe(d.tarSize);
      // the small layers' tar (headers, padding) is several times their NAR: 4.0 KiB of 800 B
      for (const e of mine) expect(e.total, layer.planned.storePaths.join(' ')).toBe(d.tarSize);
    }
  });
});
