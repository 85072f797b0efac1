// Tar safety, read back from the layers nixoci writes: the fixture closure and a fake store with
// what a hostile store path could hold (setuid files, symlinks out of the store, names with
// newlines and invalid UTF-8, a 9 GiB sparse file). No absolute or `..` name, no hard link, no
// device node, setuid/setgid cleared unless --keep-setuid, symlinks stored and never followed.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadGraphFile } from '../../src/closure/load.js';
import { DigestCache } from '../../src/layer/cache.js';
import { makeLayers } from '../../src/layer/layer.js';
import { planLayers } from '../../src/layer/plan.js';
import { nixoci } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure } from '../helpers/nix.js';
import { uniqueRepo } from '../registry/push-helpers.js';
import { FakeStore } from './fake-store.js';
import { layerTar, parsePax, readTar, tarViolations, type TarInfo } from './robust-helpers.js';

const work = mkdtempSync(path.join(tmpdir(), 'nixoci-tarsafety-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Every layer of the OCI layout at `dir`, uncompressed and parsed. */
function layoutLayers(dir: string): TarInfo[][] {
  const blob = (d: string): Buffer => readFileSync(path.join(dir, 'blobs', 'sha256', d.slice(7)));
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const out: TarInfo[][] = [];
  for (const m of index.manifests) {
    const manifest = JSON.parse(blob(m.digest).toString()) as {
      layers: { digest: string; mediaType: string }[];
    };
    for (const l of manifest.layers) out.push(readTar(layerTar(blob(l.digest), l.mediaType)));
  }
  return out;
}

let checked = 0;
function expectSafe(layers: TarInfo[][], o: { keepSetuid?: boolean } = {}): void {
  for (const entries of layers) {
    checked += entries.length;
    expect(tarViolations(entries, o)).toEqual([]);
  }
}

describe('tar safety', () => {
  it('the fixture closure, gzip and zstd', async () => {
    const fx = await buildFixtureClosure({ tag: 'tarsafety' });
    for (const c of ['gzip', 'zstd', 'none']) {
      const out = path.join(work, `fx-${c}`);
      const r = await nixoci([
        'build',
        '--graph',
        fx.graphFile,
        '--compression',
        c,
        '--to',
        `oci:${out}:t`,
        '--no-cache',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const layers = layoutLayers(out);
      expectSafe(layers);
      // The symlink to /etc/hostname is a symlink entry, its target kept verbatim.
      const all = layers.flat();
      const outside = all.find((e) => e.name.endsWith('/share/hostname-outside-store'))!;
      expect(outside).toMatchObject({ type: '2', linkname: '/etc/hostname', size: 0 });
    }
  });

  it('a hostile store path: setuid, escaping symlinks, odd names; with and without --keep-setuid', async () => {
    const store = new FakeStore(path.join(work, 'hostile'));
    const secret = path.join(work, 'secret-outside-store');
    writeFileSync(secret, 'must never be read into a layer');
    const p = store.add('evil', (d) => {
      writeFileSync(path.join(d, 'suid'), '#!/bin/sh\n');
      chmodSync(path.join(d, 'suid'), 0o6755);
      mkdirSync(path.join(d, 'sgid-dir'));
      chmodSync(path.join(d, 'sgid-dir'), 0o2775);
      symlinkSync(secret, path.join(d, 'abs-link'));
      symlinkSync('../../../../../../etc/passwd', path.join(d, 'dotdot-link'));
      symlinkSync('/', path.join(d, 'root-link'));
      writeFileSync(path.join(d, 'new\nline'), 'n');
      writeFileSync(
        Buffer.concat([Buffer.from(d + '/bad'), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')]),
        'x',
      );
      writeFileSync(Buffer.concat([Buffer.from(d + '/raw-'), Buffer.from([0xc3, 0x28])]), 'invalid utf-8');
      writeFileSync(path.join(d, `${'n'.repeat(200)}`), 'long');
    });
    const graph = store.graph(path.join(work, 'hostile.json'));
    for (const keep of [false, true]) {
      const out = path.join(work, `hostile-${keep}`);
      const r = await nixoci(
        ['build', '--graph', graph, '--to', `oci:${out}:t`, '--no-cache', ...(keep ? ['--keep-setuid'] : [])],
        {
          env: store.env,
        },
      );
      expect(r.code, r.stderr).toBe(0);
      const layers = layoutLayers(out);
      expectSafe(layers, { keepSetuid: keep });
      const all = layers.flat();
      const rel = p.slice(1);
      const byName = (n: string): TarInfo => {
        const e = all.find((x) => x.name === `${rel}/${n}` || x.name === `${rel}/${n}/`);
        if (!e) throw new Error(`no entry ${n} among ${all.map((x) => JSON.stringify(x.name)).join(' ')}`);
        return e;
      };
      expect(byName('suid').mode).toBe(keep ? 0o6755 : 0o755);
      expect(byName('sgid-dir').mode).toBe(keep ? 0o2775 : 0o775);
      expect(byName('abs-link')).toMatchObject({ type: '2', linkname: secret, size: 0 });
      expect(byName('dotdot-link')).toMatchObject({ type: '2', linkname: '../../../../../../etc/passwd' });
      expect(byName('root-link')).toMatchObject({ type: '2', linkname: '/' });
      expect(byName('new\nline')).toMatchObject({ type: '0', size: 1 });
      // Raw bytes survive (latin1 view of the names).
      expect(all.some((e) => e.name === `${rel}/raw-\u00c3(`)).toBe(true);
      expect(all.some((e) => e.name === `${rel}/bad\u00ff\u00fe.bin`)).toBe(true);
      // The secret outside the store was never read into any layer.
      const dir = path.join(out, 'blobs', 'sha256');
      for (const f of readdirSync(dir))
        expect(readFileSync(path.join(dir, f)).includes('must never be read')).toBe(false);
    }
  }, 120_000);

  it('--keep-setuid gives its own layer whatever the digest cache or the tag hold from a run without it', async () => {
    // The narHash (the cache key and the annotations) is the same with and without the flag, the
    // tar's modes are not: neither a warm cache nor the tag's annotations may stand in for it.
    const store = new FakeStore(path.join(work, 'keep'));
    store.add('suid', (d) => {
      writeFileSync(path.join(d, 'suid'), '#!/bin/sh\n');
      chmodSync(path.join(d, 'suid'), 0o4755);
    });
    const graph = store.graph(path.join(work, 'keep.json'));
    const cache = path.join(work, 'keep-cache');
    const ref = `docker://${testEnv().registry}/${uniqueRepo('keep-setuid')}`;
    const digestOf = async (args: string[]): Promise<string> => {
      const r = await nixoci([...args, '--json'], { env: store.env });
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { manifestDigest: string }).manifestDigest;
    };
    const kept = await digestOf(['push', '--graph', graph, `${ref}:fresh`, '--no-cache', '--keep-setuid']);
    const cleared = await digestOf(['push', '--graph', graph, `${ref}:a`, '--cache-dir', cache]);
    expect(cleared).not.toBe(kept);
    // a warm cache written without the flag, then the tag's annotations
    expect(
      await digestOf(['push', '--graph', graph, `${ref}:b`, '--cache-dir', cache, '--keep-setuid']),
    ).toBe(kept);
    expect(await digestOf(['push', '--graph', graph, `${ref}:a`, '--no-cache', '--keep-setuid'])).toBe(kept);
    // and the cache written with it does not leak into a run without it
    expect(await digestOf(['push', '--graph', graph, `${ref}:c`, '--cache-dir', cache])).toBe(cleared);
  });

  it('a 9 GiB sparse file: PAX size record, and the layer streams', async () => {
    const store = new FakeStore(path.join(work, 'big'));
    store.add('sparse', (d) => execFileSync('truncate', ['-s', '9G', path.join(d, 'huge')]));
    const closure = await loadGraphFile(store.graph(path.join(work, 'big.json')), { storeDir: store.dir });
    const [layer] = makeLayers(planLayers(closure), {
      compression: 'none',
      cache: new DigestCache(null),
      stats: { bytesRead: 0 },
      storeDir: store.dir,
    });
    expect(layer!.tarSize()).toBeGreaterThan(9 * 2 ** 30);
    const { stream, digests } = layer!.open();
    digests.catch(() => undefined);
    const want = 64 << 20;
    const chunks: Buffer[] = [];
    let n = 0;
    const started = Date.now();
    for await (const c of stream as AsyncIterable<Buffer>) {
      chunks.push(c);
      n += c.length;
      if (n >= want) break;
    }
    stream.destroy();
    const head = Buffer.concat(chunks);
    const entries = readTar(head.subarray(0, 16 << 10), 8);
    const huge = entries.find((e) => e.name.endsWith('/huge'))!;
    expect(huge.size).toBe(9 * 2 ** 30);
    expectSafe([entries]);
    // The PAX record carries the size; the ustar field cannot hold 9 GiB in octal.
    const rec = /(\d+) size=9663676416\n/.exec(head.subarray(0, 16 << 10).toString('latin1'));
    expect(rec).not.toBeNull();
    expect(parsePax(Buffer.from(rec![0], 'latin1')).size).toBe('9663676416');
    console.log(
      `[robustness] tar safety: 9 GiB sparse file: first ${n >> 20} MiB streamed in ${Date.now() - started} ms, PAX size ok; entries checked=${checked}`,
    );
  });
});
