// Scale and resource limits through the built CLI: what a user sees when the process itself runs
// out of something (file descriptors), as opposed to the registry or the store failing.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { cliBin, nixoci } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../registry/fault-proxy.js';
import { FakeStore } from './fake-store.js';

/** The CLI under `prlimit --nofile=N:N` (util-linux), as after `ulimit -n N`. */
function cliWithFileLimit(
  limit: number,
  args: string[],
  extraEnv: NodeJS.ProcessEnv,
): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'prlimit',
      [`--nofile=${limit}:${limit}`, cliBin, ...args],
      { env: { ...process.env, ...extraEnv }, encoding: 'utf8', maxBuffer: 16 << 20 },
      (error, _stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stderr });
      },
    );
  });
}

describe('resource limits', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'nixoci-limits-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe('through a registry', () => {
    let proxy: FaultProxy;
    beforeAll(async () => {
      proxy = await startFaultProxy(testEnv().registry);
    });
    afterAll(async () => proxy.close());

    it('out of file descriptors (ulimit -n): the hint says so, not that the registry is down', async () => {
      const store = new FakeStore(dir);
      for (let i = 0; i < 100; i++) store.add(`p${i}`, (d) => writeFileSync(path.join(d, 'f'), `${i}`));
      const graph = store.graph(path.join(dir, 'g.json'));
      // The registry holds every blob check until the run ends, so that --concurrency 64 keeps 64
      // connections open at once, more than a limit of 32 descriptors allows, however slowly a busy
      // machine opens them (they were answered after 3 s).
      const held: ServerResponse[] = [];
      proxy.fault = (req, res) => {
        if (req.method !== 'HEAD') return false;
        held.push(res);
        return true;
      };
      const r = await cliWithFileLimit(
        32,
        ['push', '--graph', graph, `${proxy.host}/nixoci-test/fd-limit`, '--no-cache', '--concurrency', '64'],
        store.env,
      ).finally(() => {
        for (const res of held) res.destroy();
      });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/EMFILE/);
      expect(r.stderr).toMatch(/^hint: .*out of file descriptors.*ulimit -n.*--concurrency/m);
      expect(r.stderr).not.toMatch(/that it is running/);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    }, 120_000);
  });

  it('--concurrency: the range --help states is the one refused outside', async () => {
    const help = await nixoci(['push', '--help']);
    expect(help.stdout).toMatch(/^ {2}--concurrency N +blobs in flight at once, 1–64 /m);
    for (const n of ['0', '65', '1000']) {
      const r = await nixoci(['push', '--path', '/nix/store/x', '127.0.0.1:1/r', '--concurrency', n]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--concurrency must be an integer from 1 to 64, got "${n}"`);
    }
  });

  it('a layout of 2000 tags, none of them latest: the hint names a few, not all 2000', async () => {
    const layout = path.join(dir, 'many-tags');
    mkdirSync(layout);
    writeFileSync(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    const manifests = Array.from({ length: 2000 }, (_, i) => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${i.toString(16).padStart(64, '0')}`,
      size: 100,
      annotations: { 'org.opencontainers.image.ref.name': `build-${i}` },
    }));
    writeFileSync(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
    const r = await nixoci(['inspect', `oci:${layout}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no image tagged latest');
    const hint = r.stderr.split('\n').find((l) => l.startsWith('hint: '))!;
    expect(hint).toMatch(/^hint: its tags: build-0, build-1, .*, build-9 and 1990 more\b/);
    expect(hint.length).toBeLessThan(400);
  });

  it('NIXOCI_WORKERS out of range: the message gives the range, not "not a number"', async () => {
    const store = new FakeStore(path.join(dir, 'workers'));
    store.add('big', (d) => writeFileSync(path.join(d, 'f'), 'x'));
    const graph = store.graph(path.join(dir, 'workers.json'));
    for (const v of ['1000', '-1', 'two']) {
      const out = `oci:${path.join(dir, 'workers-out')}`;
      const r = await nixoci(['build', '--graph', graph, '--to', out], {
        env: { ...store.env, NIXOCI_WORKERS: v },
      });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`NIXOCI_WORKERS=${v}: not a number of layer worker threads from 0 to 999`);
    }
  });
});
